// The agent channel inside a real cell: exec sessions relayed as frames,
// several sessions on one channel, flow control, hang-ups, hostile bytes, and
// the agent out of reach of the qube's root.

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "integration/cell/cell_fixture.h"
#include "wire/agent_protocol.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace tessera::cell::testing {
namespace {

using namespace std::chrono_literals;
using wire::FrameType;

// A channel to a cell's agent spoken frame by frame.
class RawChannel {
 public:
  explicit RawChannel(Cell& cell) {
    auto fd = cell.OpenChannel();
    EXPECT_TRUE(fd) << fd.error().ToString();
    if (fd) fd_ = std::move(*fd);
  }
  int fd() const { return fd_.get(); }
  void Close() { fd_.reset(); }

  void Open(uint32_t session, std::vector<std::string> argv, wire::Stdio out = wire::Stdio::kNull,
            wire::Stdio in = wire::Stdio::kNull) {
    wire::OpenMessage m;
    m.argv = std::move(argv);
    m.stdio[0] = in;
    m.stdio[1] = out;
    m.stdio[2] = wire::Stdio::kNull;
    Send(FrameType::kOpen, session, 0, wire::SerializeOpen(m));
  }
  void Send(FrameType type, uint32_t session, uint8_t stream, std::string_view payload) {
    auto sent = wire::WriteFrame(fd_.get(), type, session, stream, payload);
    EXPECT_TRUE(sent) << sent.error().ToString();
  }
  // The next frame within `timeout`; nullopt on timeout or EOF (eof_ set).
  std::optional<wire::Frame> Next(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto frame = decoder_.Next();
      EXPECT_TRUE(frame) << frame.error().ToString();
      if (!frame) return std::nullopt;
      if (*frame) return std::move(**frame);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      auto r = wire::RecvInto(fd_.get(), &decoder_);
      if (!r || *r == wire::RecvResult::kEof) {
        eof_ = true;
        return std::nullopt;
      }
    }
  }
  bool eof() const { return eof_; }

 private:
  UniqueFd fd_;
  wire::FrameDecoder decoder_{wire::DecoderRules::HostSide()};
  bool eof_ = false;
};

// Waits for the exit frame of `session`, collecting its stdout data.
int WaitExit(RawChannel& ch, uint32_t session, std::string* out = nullptr) {
  for (;;) {
    auto f = ch.Next(10000ms);
    if (!f) return -1;
    if (f->session != session) continue;
    if (f->type == FrameType::kData && out != nullptr) out->append(f->payload);
    if (f->type == FrameType::kData) {
      ch.Send(FrameType::kCredit, session, f->stream,
              wire::EncodeU32(static_cast<uint32_t>(f->payload.size())));
    }
    if (f->type == FrameType::kExit) return static_cast<int>(*wire::DecodeU32(*f));
    if (f->type == FrameType::kError) return 1000;
  }
}

std::string RandomBytes(size_t n) {
  std::mt19937 gen(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen());
  return s;
}

TEST_F(CellTest, RelayedStreamsCarryLargeDataBothWaysAndTheExitStatus) {
  Cell cell = MustStart(Spec("relay"));
  std::string input = RandomBytes(3u << 20);
  UniqueFd in(static_cast<int>(::memfd_create("in", MFD_CLOEXEC)));
  ASSERT_EQ(::write(in.get(), input.data(), input.size()), static_cast<ssize_t>(input.size()));
  ::lseek(in.get(), 0, SEEK_SET);
  UniqueFd out(static_cast<int>(::memfd_create("out", MFD_CLOEXEC)));
  UniqueFd err(static_cast<int>(::memfd_create("err", MFD_CLOEXEC)));
  backend::ExecRequest req;
  req.argv = {"/bin/sh", "-c", "cat; echo done >&2; exit 4"};
  req.stdin_fd = in.get();
  req.stdout_fd = out.get();
  req.stderr_fd = err.get();
  auto code = backend::Exec(cell, req, backend::StreamMode::kRelay, CellBackend::kCapabilities);
  ASSERT_TRUE(code) << code.error().ToString();
  EXPECT_EQ(*code, 4);
  EXPECT_EQ(ReadAll(out.get()), input);
  EXPECT_EQ(ReadAll(err.get()), "done\n");
  // Relayed and passed descriptors give the same results.
  EXPECT_EQ(Run(cell, {"/bin/sh", "-c", "echo a; echo b >&2; exit 3"}, "root",
                backend::StreamMode::kRelay).out, "a\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, SessionsShareOneChannelAndEachGetsItsOwnExit) {
  Cell cell = MustStart(Spec("multi"));
  RawChannel ch(cell);
  ch.Send(FrameType::kHello, 0, 0, wire::SerializeHello({}));
  auto hello = ch.Next();
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, FrameType::kHello);
  ch.Open(7, {"/bin/sh", "-c", "sleep 0.3; exit 1"});
  ch.Open(8, {"/bin/sh", "-c", "exit 2"});
  ch.Open(9, {"/bin/sh", "-c", "exit 3"});
  ch.Open(10, {"/no/such/program"});
  std::map<uint32_t, int> exits;
  std::map<uint32_t, int> errors;
  while (exits.size() + errors.size() < 4) {
    auto f = ch.Next();
    ASSERT_TRUE(f) << "timed out with " << exits.size() << " exits";
    if (f->type == FrameType::kExit) exits[f->session] = static_cast<int>(*wire::DecodeU32(*f));
    if (f->type == FrameType::kError) errors[f->session] = wire::ParseSessionError(f->payload)->code;
  }
  EXPECT_EQ(exits, (std::map<uint32_t, int>{{7, 1}, {8, 2}, {9, 3}}));
  EXPECT_EQ(errors, (std::map<uint32_t, int>{{10, 127}}));
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, OutputStopsAtTheWindowUntilTheHostGrantsCredit) {
  Cell cell = MustStart(Spec("credit"));
  RawChannel ch(cell);
  ch.Open(1, {"/bin/sh", "-c", "head -c 4000000 /dev/zero"}, wire::Stdio::kPipe);
  size_t received = 0;
  // Without credit, the agent sends exactly its initial window and stops.
  for (;;) {
    auto f = ch.Next(received >= wire::kInitialWindow ? 500ms : 5000ms);
    if (!f) break;
    if (f->type == FrameType::kData) received += f->payload.size();
    ASSERT_NE(f->type, FrameType::kExit) << "the command finished without credit";
  }
  EXPECT_EQ(received, wire::kInitialWindow);
  // Credit for 100000 more bytes lets exactly that much through.
  ch.Send(FrameType::kCredit, 1, wire::kStdout, wire::EncodeU32(100000));
  size_t more = 0;
  while (auto f = ch.Next(500ms)) {
    if (f->type == FrameType::kData) more += f->payload.size();
  }
  EXPECT_EQ(more, 100000u);
  std::string rest;
  ch.Send(FrameType::kCredit, 1, wire::kStdout, wire::EncodeU32(4000000));
  EXPECT_EQ(WaitExit(ch, 1, &rest), 0);
  EXPECT_EQ(received + more + rest.size(), 4000000u);
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, SignalFramesReachTheSessionsProcessGroup) {
  Cell cell = MustStart(Spec("signals"));
  RawChannel ch(cell);
  ch.Open(1, {"/bin/sh", "-c", "trap 'echo got; exit 3' USR1; echo ready; while :; do sleep 0.05; done"},
          wire::Stdio::kPipe);
  std::string out;
  while (out.find("ready") == std::string::npos) {
    auto f = ch.Next();
    ASSERT_TRUE(f);
    if (f->type == FrameType::kData) out += f->payload;
  }
  ch.Send(FrameType::kSignal, 1, 0, wire::EncodeU32(SIGUSR1));
  std::string rest;
  EXPECT_EQ(WaitExit(ch, 1, &rest), 3);
  EXPECT_EQ(rest, "got\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, HangUpEndsTheSessionAndWhatItStarted) {
  Cell cell = MustStart(Spec("hangup"));
  RawChannel ch(cell);
  // A background child and one that ignores SIGHUP: both must be gone after
  // the close (the second by SIGKILL after the grace period).
  ch.Open(1, {"/bin/sh", "-c", "sleep 1000 & trap '' HUP; echo $! > /tmp/bg; sleep 1000"});
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(Sh(cell, "kill -0 $(cat /tmp/bg) && echo alive").out, "alive\n");
  ch.Send(FrameType::kClose, 1, 0, {});
  int status = WaitExit(ch, 1);
  EXPECT_EQ(status, 128 + SIGKILL);
  EXPECT_EQ(Sh(cell, "kill -0 $(cat /tmp/bg) 2>/dev/null || echo gone").out, "gone\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, LosingTheChannelHangsUpItsSessions) {
  Cell cell = MustStart(Spec("lost"));
  {
    RawChannel ch(cell);
    ch.Open(1, {"/bin/sh", "-c", "echo $$ > /tmp/pid; exec sleep 1000"});
    std::this_thread::sleep_for(300ms);
  }  // closed: like a daemon or caller that went away
  std::string gone;
  for (int i = 0; i < 50 && gone != "gone\n"; ++i) {
    std::this_thread::sleep_for(100ms);
    gone = Sh(cell, "kill -0 $(cat /tmp/pid) 2>/dev/null || echo gone").out;
  }
  EXPECT_EQ(gone, "gone\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, GarbageEndsOnlyItsOwnChannel) {
  Cell cell = MustStart(Spec("garbage"));
  RawChannel good(cell);
  good.Open(1, {"/bin/sh", "-c", "sleep 0.5; echo done"}, wire::Stdio::kPipe);
  RawChannel bad(cell);
  const char junk[] = "\xff\xff\xff\x7fgarbage and more garbage";
  ASSERT_EQ(::write(bad.fd(), junk, sizeof(junk) - 1), static_cast<ssize_t>(sizeof(junk) - 1));
  EXPECT_FALSE(bad.Next(3000ms));
  EXPECT_TRUE(bad.eof()) << "the agent kept a channel that sent garbage";
  std::string out;
  EXPECT_EQ(WaitExit(good, 1, &out), 0);
  EXPECT_EQ(out, "done\n");
  EXPECT_EQ(Sh(cell, "echo fine").out, "fine\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, QubeRootCannotReachTheAgent) {
  Cell cell = MustStart(Spec("reach"));
  // Before this was fixed, the qube's root could attach to PID 1, read its
  // memory and take its control socket, then see the host's next exec
  // request and forge exit codes.
  EXPECT_EQ(Run(cell, {"/probe", "ptrace", "1"}).out, "errno=1\n");
  EXPECT_EQ(Run(cell, {"/probe", "vm-readv", "1"}).out, "errno=1\n");
  EXPECT_EQ(Run(cell, {"/probe", "pidfd-getfd", "1", "3"}).out, "errno=1\n");
  EXPECT_EQ(Run(cell, {"/probe", "open", "/proc/1/mem"}).out, "errno=13\n");
  EXPECT_EQ(Run(cell, {"/probe", "open", "/proc/1/environ"}).out, "errno=13\n");
  // The same calls on its own processes still work (debuggers in qubes).
  EXPECT_EQ(Sh(cell, "sleep 100 & /probe ptrace $!; kill $!").out, "ok\n");
  // Only the host stops a qube: SIGTERM to PID 1 from inside is ignored.
  EXPECT_EQ(Sh(cell, "kill -TERM 1; sleep 0.3; echo alive").out, "alive\n");
  EXPECT_TRUE(cell.Running());
  // Commands still run as the qube's root, in the qube's own namespaces.
  EXPECT_EQ(Sh(cell, "id -u; hostname").out, "0\nreach\n");
  ASSERT_TRUE(cell.Stop());
}

}  // namespace
}  // namespace tessera::cell::testing
