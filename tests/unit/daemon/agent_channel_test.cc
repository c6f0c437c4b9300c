// The daemon's end of an agent channel, against a fake agent on a socket
// pair: sessions routed to their sinks, hostile agents breaking only their
// own channel, credit enforced, frame floods slowed to the rate limit.

#include <sys/socket.h>

#include <map>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/agent_channel.h"
#include "unit/daemon/loop_support.h"
#include "wire/socket_io.h"

namespace tessera::daemon {
namespace {

using testing::RunUntil;
using ::testing::HasSubstr;
using wire::FrameType;

struct Recorder : AgentChannel::Sink {
  std::string out;
  int exit = -1;
  int error_code = 0;
  std::string lost;
  uint64_t stdin_credit = 0;
  bool started = false;
  void OnStarted(uint32_t) override { started = true; }
  void OnData(uint8_t, std::string data) override { out += data; }
  void OnEof(uint8_t) override {}
  void OnStdinCredit(uint32_t n) override { stdin_credit += n; }
  void OnExit(int status) override { exit = status; }
  void OnError(int code, std::string) override { error_code = code; }
  void OnLost(std::string reason) override { lost = reason; }
  bool done() const { return exit >= 0 || error_code != 0 || !lost.empty(); }
};

class AgentChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    channel_.reset();  // before its loop (a second SetUp in one test)
    for (auto& w : writers_) w.join();
    writers_.clear();
    agent_decoder_ = wire::FrameDecoder(wire::DecoderRules::AgentSide());
    loop_ = *EventLoop::Create();
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    agent_.reset(fds[1]);
    auto ch = AgentChannel::Create(*loop_, "work", UniqueFd(fds[0]), limits_,
                                   [this](std::string why) { broken_ = why; });
    ASSERT_TRUE(ch);
    channel_ = std::move(*ch);
  }
  void TearDown() override {
    channel_.reset();
    agent_.reset();
    for (auto& w : writers_) w.join();
  }
  // Frames too large for the socket buffer: written by a thread while the
  // loop reads (ends when the daemon side closes).
  void AgentSendsInBackground(std::string bytes) {
    writers_.emplace_back([fd = agent_.get(), bytes = std::move(bytes)] {
      (void)wire::SendAll(fd, bytes);
    });
  }

  // The fake agent's side.
  void AgentSends(FrameType type, uint32_t session, uint8_t stream, std::string_view payload) {
    ASSERT_TRUE(wire::WriteFrame(agent_.get(), type, session, stream, payload));
  }
  wire::Frame AgentReceives() {
    wire::Frame frame;
    bool got = false;
    RunUntil(*loop_, [&] {
      auto f = agent_decoder_.Next();
      if (f && *f) {
        frame = std::move(**f);
        got = true;
        return true;
      }
      (void)wire::RecvInto(agent_.get(), &agent_decoder_);
      return false;
    });
    EXPECT_TRUE(got);
    return frame;
  }
  uint32_t OpenSession(Recorder* sink) {
    wire::OpenMessage m;
    m.argv = {"true"};
    auto id = channel_->Open(m, {}, sink);
    EXPECT_TRUE(id);
    wire::Frame open = AgentReceives();
    EXPECT_EQ(open.type, FrameType::kOpen);
    EXPECT_EQ(open.session, *id);
    return *id;
  }

  AgentChannel::Limits limits_;
  std::unique_ptr<EventLoop> loop_;
  UniqueFd agent_;
  wire::FrameDecoder agent_decoder_{wire::DecoderRules::AgentSide()};
  std::unique_ptr<AgentChannel> channel_;
  std::string broken_;
  std::vector<std::thread> writers_;
};

TEST_F(AgentChannelTest, SessionsGetTheirOwnFramesAndEnds) {
  Recorder a, b;
  uint32_t ia = OpenSession(&a);
  uint32_t ib = OpenSession(&b);
  ASSERT_NE(ia, ib);
  AgentSends(FrameType::kStarted, ia, 0, wire::EncodeU32(10));
  AgentSends(FrameType::kData, ib, wire::kStdout, "for b");
  AgentSends(FrameType::kData, ia, wire::kStdout, "for a");
  AgentSends(FrameType::kExit, ia, 0, wire::EncodeU32(3));
  AgentSends(FrameType::kError, ib, 0, wire::SerializeSessionError({127, "cannot run x"}));
  ASSERT_TRUE(RunUntil(*loop_, [&] { return a.done() && b.done(); }));
  EXPECT_TRUE(a.started);
  EXPECT_EQ(a.out, "for a");
  EXPECT_EQ(a.exit, 3);
  EXPECT_EQ(b.out, "for b");
  EXPECT_EQ(b.error_code, 127);
  EXPECT_EQ(channel_->sessions(), 0u);
  EXPECT_TRUE(broken_.empty());
}

TEST_F(AgentChannelTest, DataBeyondTheGrantedCreditBreaksTheChannel) {
  Recorder a;
  uint32_t id = OpenSession(&a);
  std::string chunk(wire::kMaxDataPayload, 'x');
  std::string bytes;
  for (uint32_t sent = 0; sent < wire::kInitialWindow; sent += wire::kMaxDataPayload) {
    bytes += wire::EncodeFrame(FrameType::kData, id, wire::kStdout, chunk);
  }
  bytes += wire::EncodeFrame(FrameType::kData, id, wire::kStdout, "one byte too many");
  AgentSendsInBackground(std::move(bytes));
  ASSERT_TRUE(RunUntil(*loop_, [&] { return a.done(); }));
  EXPECT_THAT(a.lost, HasSubstr("more data than it was granted"));
  EXPECT_EQ(a.out.size(), wire::kInitialWindow);
  ASSERT_TRUE(RunUntil(*loop_, [&] { return !broken_.empty(); }));
}

TEST_F(AgentChannelTest, CreditTheSinkGrantsLetsMoreThrough) {
  Recorder a;
  uint32_t id = OpenSession(&a);
  channel_->Credit(id, wire::kStdout, 10);
  wire::Frame credit = AgentReceives();
  EXPECT_EQ(credit.type, FrameType::kCredit);
  EXPECT_EQ(*wire::DecodeU32(credit), 10u);
  std::string chunk(wire::kMaxDataPayload, 'x');
  std::string bytes;
  for (uint32_t sent = 0; sent < wire::kInitialWindow; sent += wire::kMaxDataPayload) {
    bytes += wire::EncodeFrame(FrameType::kData, id, wire::kStdout, chunk);
  }
  bytes += wire::EncodeFrame(FrameType::kData, id, wire::kStdout, "0123456789");
  bytes += wire::EncodeFrame(FrameType::kExit, id, 0, wire::EncodeU32(0));
  AgentSendsInBackground(std::move(bytes));
  ASSERT_TRUE(RunUntil(*loop_, [&] { return a.done(); }));
  EXPECT_EQ(a.exit, 0) << a.lost;
}

TEST_F(AgentChannelTest, FramesForSessionsNeverOpenedBreakTheChannel) {
  Recorder a;
  OpenSession(&a);
  AgentSends(FrameType::kExit, 999, 0, wire::EncodeU32(0));
  ASSERT_TRUE(RunUntil(*loop_, [&] { return a.done(); }));
  EXPECT_THAT(a.lost, HasSubstr("not open"));
  // Garbage breaks it too (a new channel, a new agent end).
  SetUp();
  Recorder b;
  OpenSession(&b);
  const char junk[] = "\xff\xff\xff\xff junk that fills a header";
  ASSERT_EQ(::write(agent_.get(), junk, sizeof(junk) - 1), static_cast<ssize_t>(sizeof(junk) - 1));
  ASSERT_TRUE(RunUntil(*loop_, [&] { return b.done(); }));
  EXPECT_THAT(b.lost, HasSubstr("agent protocol error"));
}

TEST_F(AgentChannelTest, AFloodIsSlowedToTheRateLimit) {
  limits_.frames_per_second = 2000;
  limits_.frame_burst = 100;
  SetUp();
  Recorder a;
  uint32_t id = OpenSession(&a);
  // 3000 one-byte frames at once: far beyond the burst.
  std::string flood;
  for (int i = 0; i < 3000; ++i) flood += wire::EncodeFrame(FrameType::kData, id, wire::kStdout, "x");
  flood += wire::EncodeFrame(FrameType::kExit, id, 0, wire::EncodeU32(0));
  AgentSendsInBackground(std::move(flood));
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil(*loop_, [&] { return a.done(); }));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(a.out.size(), 3000u);
  EXPECT_EQ(a.exit, 0);
  // (3000 - 100) frames at 2000/s: at least about 1.4 s, whatever the machine.
  EXPECT_GT(seconds, 1.2);
}

TEST_F(AgentChannelTest, DestroyingTheChannelEndsItsSessions) {
  Recorder a;
  OpenSession(&a);
  channel_.reset();
  EXPECT_THAT(a.lost, HasSubstr("stopped while the command ran"));
}

// A sink may end the channel from inside its callback (a run that ends stops
// its disposable, which drops the qube's channel) while more frames wait in
// the same read, or while the channel breaks: nothing of it is touched after
// (ASan would see it).
struct Destroyer : Recorder {
  std::unique_ptr<AgentChannel>* channel = nullptr;
  void OnExit(int status) override {
    Recorder::OnExit(status);
    channel->reset();
  }
  void OnLost(std::string reason) override {
    Recorder::OnLost(reason);
    channel->reset();
  }
};

TEST_F(AgentChannelTest, ASinkMayDestroyTheChannelFromItsCallback) {
  Destroyer a;
  Recorder b;
  a.channel = &channel_;
  uint32_t ia = OpenSession(&a);
  uint32_t ib = OpenSession(&b);
  std::string bytes = wire::EncodeFrame(FrameType::kExit, ia, 0, wire::EncodeU32(0)) +
                      wire::EncodeFrame(FrameType::kData, ib, wire::kStdout, "late") +
                      wire::EncodeFrame(FrameType::kExit, ib, 0, wire::EncodeU32(1));
  ASSERT_TRUE(wire::SendAll(agent_.get(), bytes));
  ASSERT_TRUE(RunUntil(*loop_, [&] { return a.exit == 0; }));
  EXPECT_EQ(channel_, nullptr);
  EXPECT_THAT(b.lost, HasSubstr("stopped while the command ran"));

  SetUp();  // again, ended by a break this time
  Destroyer c;
  c.channel = &channel_;
  OpenSession(&c);
  AgentSends(FrameType::kData, 999, wire::kStdout, "no such session");
  ASSERT_TRUE(RunUntil(*loop_, [&] { return !c.lost.empty(); }));
  EXPECT_EQ(channel_, nullptr);
  RunUntil(*loop_, [&] { return !broken_.empty(); });
  EXPECT_THAT(broken_, HasSubstr("not open"));
}

}  // namespace
}  // namespace tessera::daemon

namespace tessera::daemon {
namespace {

struct CallRecorder : AgentChannel::CallHandler {
  std::vector<std::pair<uint32_t, wire::CallMessage>> calls;
  std::vector<std::pair<uint32_t, FrameType>> frames;
  int lost = 0;
  void OnCall(uint32_t id, wire::CallMessage call) override { calls.emplace_back(id, call); }
  void OnCallFrame(uint32_t id, wire::Frame& frame) override {
    frames.emplace_back(id, frame.type);
  }
  void OnCallsLost() override { ++lost; }
};

constexpr uint32_t kCall = wire::kCallSessionBit | 7;

TEST_F(AgentChannelTest, CallsGoToTheHandlerThatTookThem) {
  CallRecorder calls;
  channel_->TakeCalls(&calls);
  wire::Frame hello = AgentReceives();
  EXPECT_EQ(hello.type, FrameType::kHello);
  EXPECT_EQ(wire::ParseHello(hello.payload)->version, wire::kCallChannelVersion);
  AgentSends(FrameType::kCall, kCall, 0, R"({"target":"personal","service":"test.X"})");
  AgentSends(FrameType::kData, kCall, wire::kStdin, "in");
  AgentSends(FrameType::kClose, kCall, 0, "");
  ASSERT_TRUE(RunUntil(*loop_, [&] { return calls.frames.size() == 2; }));
  ASSERT_EQ(calls.calls.size(), 1u);
  EXPECT_EQ(calls.calls[0].first, kCall);
  EXPECT_EQ(calls.calls[0].second.target, "personal");
  EXPECT_EQ(calls.frames[0].second, FrameType::kData);
  EXPECT_EQ(calls.frames[1].second, FrameType::kClose);
  // The answer goes back under the call's id and ends it; later frames of
  // that id crossed the end and are ignored.
  channel_->SendCallFrame(kCall, FrameType::kExit, 0, wire::EncodeU32(0));
  wire::Frame exit = AgentReceives();
  EXPECT_EQ(exit.type, FrameType::kExit);
  EXPECT_EQ(exit.session, kCall);
  EXPECT_EQ(channel_->calls(), 0u);
  AgentSends(FrameType::kData, kCall, wire::kStdin, "late");
  loop_->RunOnce(std::chrono::milliseconds(50));
  EXPECT_EQ(calls.frames.size(), 2u);
  EXPECT_TRUE(broken_.empty());
  channel_.reset();
  EXPECT_EQ(calls.lost, 1) << "a closed channel ends its calls";
}

TEST_F(AgentChannelTest, ACallNobodyTakesIsAnsweredAtOnce) {
  AgentSends(FrameType::kCall, kCall, 0, R"({"service":"test.X"})");
  wire::Frame error = AgentReceives();
  EXPECT_EQ(error.type, FrameType::kError);
  EXPECT_EQ(error.session, kCall);
  EXPECT_EQ(wire::ParseSessionError(error.payload)->code, 125);
  EXPECT_TRUE(broken_.empty());
}

TEST_F(AgentChannelTest, CallFramesThatBreakTheRulesBreakTheChannel) {
  CallRecorder calls;
  struct Case {
    FrameType type;
    uint32_t session;
    std::string payload;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           // A call id without the call bit.
           {FrameType::kCall, 7, R"({"service":"a"})", "outside a call"},
           // A call that says who calls.
           {FrameType::kCall, kCall, R"({"service":"a","source":"dom0"})", "bad call"},
           {FrameType::kClose, 3, "", "outside a call"},  // close is only for calls
       }) {
    SetUp();
    broken_.clear();
    channel_->TakeCalls(&calls);
    AgentSends(c.type, c.session, 0, c.payload);
    ASSERT_TRUE(RunUntil(*loop_, [&] { return !broken_.empty(); })) << c.payload;
    EXPECT_THAT(broken_, HasSubstr(c.why));
  }
  EXPECT_TRUE(calls.calls.empty());
  // A caller's output stream.
  SetUp();
  broken_.clear();
  channel_->TakeCalls(&calls);
  AgentSends(FrameType::kCall, kCall, 0, R"({"service":"a"})");
  AgentSends(FrameType::kData, kCall, wire::kStdout, "x");
  ASSERT_TRUE(RunUntil(*loop_, [&] { return !broken_.empty(); }));
  EXPECT_THAT(broken_, HasSubstr("output stream"));
}

}  // namespace
}  // namespace tessera::daemon
