// PipeRelay: the streams of a call between cells, spliced pipe to pipe in
// the daemon's loop: every byte arrives and is counted, EOF passes through,
// a full reader holds its writer back without the loop spinning, and a
// reader that goes away ends that direction with EPIPE for its writer.

#include "daemon/pipe_relay.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "agent/fd_io.h"
#include "unit/daemon/loop_support.h"

namespace tessera::daemon {
namespace {

using testing::RunUntil;

// The four pipes of a call and the relay between them: the test plays the
// caller (caller_in.to, caller_out.from) and the command (command_in.from,
// command_out.to).
struct Call {
  PipeRelay::Ends caller_in = *MakeRelayPipe();
  PipeRelay::Ends command_in = *MakeRelayPipe();
  PipeRelay::Ends command_out = *MakeRelayPipe();
  PipeRelay::Ends caller_out = *MakeRelayPipe();
  bool out_done = false;
  std::unique_ptr<PipeRelay> relay;

  explicit Call(EventLoop& loop) {
    relay = *PipeRelay::Start(loop, {std::move(caller_in.from), std::move(command_in.to)},
                              {std::move(command_out.from), std::move(caller_out.to)},
                              [this] { out_done = true; });
  }
};

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131u) >> 3);
  return s;
}

// Reads `fd` to its end on a thread, then sets `*ended`.
std::thread ReadAll(int fd, std::string* out, std::atomic<bool>* ended) {
  return std::thread([fd, out, ended] {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      out->append(buf, static_cast<size_t>(n));
    }
    *ended = true;
  });
}

TEST(PipeRelay, CarriesBothWaysCountsEveryByteAndPassesTheEnd) {
  auto loop = *EventLoop::Create();
  Call call(*loop);
  std::string in = Pattern(8u << 20);
  std::string out = Pattern(5u << 20);
  std::string got_in;
  std::string got_out;
  std::atomic<bool> in_ended{false};
  std::atomic<bool> out_ended{false};
  std::thread command_reads = ReadAll(call.command_in.from.get(), &got_in, &in_ended);
  std::thread caller_reads = ReadAll(call.caller_out.from.get(), &got_out, &out_ended);
  std::thread caller_writes([&] {
    ASSERT_TRUE(agent::WriteFull(call.caller_in.to.get(), in.data(), in.size()));
    call.caller_in.to.reset();
  });
  std::thread command_writes([&] {
    ASSERT_TRUE(agent::WriteFull(call.command_out.to.get(), out.data(), out.size()));
    call.command_out.to.reset();
  });
  // Both readers reach their end: EOF passed through.
  bool ended = RunUntil(*loop, [&] { return call.out_done && in_ended && out_ended; });
  if (!ended) call.relay.reset();  // unblocks the readers
  caller_writes.join();
  command_writes.join();
  command_reads.join();
  caller_reads.join();
  ASSERT_TRUE(ended);
  EXPECT_TRUE(got_in == in);
  EXPECT_TRUE(got_out == out);
  EXPECT_EQ(call.relay->bytes_in(), in.size());
  EXPECT_EQ(call.relay->bytes_out(), out.size());
}

TEST(PipeRelay, AFullReaderHoldsTheWriterBackWithoutSpinning) {
  auto loop = *EventLoop::Create();
  Call call(*loop);
  ::fcntl(call.command_out.to.get(), F_SETFL, O_NONBLOCK);
  // The caller reads nothing: the command can write only what the two
  // pipes hold, then it is told to wait.
  std::string chunk(65536, 'x');
  size_t written = 0;
  for (int round = 0; round < 200; ++round) {
    ssize_t n = ::write(call.command_out.to.get(), chunk.data(), chunk.size());
    if (n > 0) written += static_cast<size_t>(n);
    loop->RunOnce(std::chrono::milliseconds(1));
  }
  EXPECT_LE(written, 4u * PipeRelay::kPipeSize) << "bounded by the pipes, not the daemon";
  // Waiting for the reader costs no CPU: loop turns meanwhile are idle.
  rusage before{};
  rusage after{};
  ::getrusage(RUSAGE_SELF, &before);
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < end) loop->RunOnce(std::chrono::milliseconds(20));
  ::getrusage(RUSAGE_SELF, &after);
  auto cpu_us = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000L + r.ru_utime.tv_usec +
           r.ru_stime.tv_usec;
  };
  EXPECT_LT(cpu_us(after) - cpu_us(before), 100000) << "the loop spun while the reader was full";
  // The reader comes back: everything written arrives.
  std::string got;
  std::atomic<bool> got_end{false};
  std::thread reader = ReadAll(call.caller_out.from.get(), &got, &got_end);
  call.command_out.to.reset();
  bool ended = RunUntil(*loop, [&] { return call.out_done && got_end; });
  if (!ended) call.relay.reset();
  reader.join();
  ASSERT_TRUE(ended);
  EXPECT_EQ(got.size(), written);
  EXPECT_EQ(call.relay->bytes_out(), written);
}

TEST(PipeRelay, AnExitedCommandsOutputEndsOnceDrainedEvenIfHeldOpen) {
  auto loop = *EventLoop::Create();
  Call call(*loop);
  // The command wrote and exited; something it left behind keeps the pipe
  // open (command_out.to stays open here).
  ASSERT_EQ(::write(call.command_out.to.get(), "last words", 10), 10);
  ASSERT_TRUE(RunUntil(*loop, [&] { return call.relay->bytes_out() == 10; }));
  EXPECT_FALSE(call.out_done);
  call.relay->FinishOutputWhenDrained();
  EXPECT_FALSE(call.out_done) << "never from inside the call";
  ASSERT_TRUE(RunUntil(*loop, [&] { return call.out_done; }));
  EXPECT_EQ(call.relay->out_error(), "");
  std::string got;
  std::atomic<bool> got_end{false};
  std::thread reader = ReadAll(call.caller_out.from.get(), &got, &got_end);
  reader.join();  // the end reached the caller
  EXPECT_EQ(got, "last words");
}

TEST(PipeRelay, AReaderGoneEndsTheDirectionAndItsWriterSeesEpipe) {
  ::signal(SIGPIPE, SIG_IGN);  // as in the daemon
  auto loop = *EventLoop::Create();
  Call call(*loop);
  call.caller_out.from.reset();  // the caller stopped reading
  ::fcntl(call.command_out.to.get(), F_SETFL, O_NONBLOCK);
  ASSERT_EQ(::write(call.command_out.to.get(), "abc", 3), 3);
  ASSERT_TRUE(RunUntil(*loop, [&] { return call.out_done; }));
  errno = 0;
  EXPECT_EQ(::write(call.command_out.to.get(), "abc", 3), -1);
  EXPECT_EQ(errno, EPIPE);
  // The other direction still works.
  ASSERT_EQ(::write(call.caller_in.to.get(), "hi", 2), 2);
  call.caller_in.to.reset();
  std::string got;
  std::atomic<bool> got_end{false};
  std::thread reader = ReadAll(call.command_in.from.get(), &got, &got_end);
  bool ended = RunUntil(*loop, [&] { return got_end.load(); });
  if (!ended) call.relay.reset();
  reader.join();
  ASSERT_TRUE(ended);
  EXPECT_EQ(got, "hi");
}

}  // namespace
}  // namespace tessera::daemon
