#include "common/spawn.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>

namespace tessera {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// The value of a "Name:\tvalue" line of /proc/<pid>/status text.
std::string StatusField(const std::string& status, const std::string& name) {
  std::istringstream lines(status);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      size_t start = line.find_first_not_of(" \t", name.size() + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  }
  return "<missing>";
}

TEST(RunProcessTest, ChildStartsWithEmptySignalMaskAndDefaultDispositions) {
  // As in the daemon: a thread blocks SIGTERM/SIGINT; SIGHUP is ignored
  // process-wide (restored below).
  struct sigaction ignore {};
  struct sigaction old_hup {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGHUP, &ignore, &old_hup), 0);
  Result<ProcessResult> run = Err(Error("not run"));
  std::thread spawner([&] {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    ProcessOptions options;
    options.argv = {"/bin/cat", "/proc/self/status"};
    options.out = Output::kCapture;
    run = RunProcess(options);
  });
  spawner.join();
  ::sigaction(SIGHUP, &old_hup, nullptr);
  ASSERT_TRUE(run) << run.error().ToString();
  ASSERT_TRUE(run->Succeeded()) << run->Describe("cat");
  EXPECT_EQ(StatusField(run->out, "SigBlk"), "0000000000000000");
  // glibc's posix_spawn leaves its two internal signals (32, 33) ignored in
  // every child; no program can use them (SIGRTMIN is 34). Nothing else may be.
  uint64_t ignored = std::stoull(StatusField(run->out, "SigIgn"), nullptr, 16);
  EXPECT_EQ(ignored & ~uint64_t{0x180000000}, 0u) << StatusField(run->out, "SigIgn");
}

TEST(RunProcessTest, CapturesStdoutAndStderrSeparately) {
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", "echo out; echo err >&2; echo more"};
  options.out = Output::kCapture;
  options.err = Output::kCapture;
  ProcessResult r = *RunProcess(options);
  EXPECT_TRUE(r.Succeeded());
  EXPECT_EQ(r.out, "out\nmore\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(RunProcessTest, BothStreamsLargerThanAPipeDoNotDeadlock) {
  ProcessOptions options;
  // 1 MiB on each stream, interleaved: a reader of one stream only would hang.
  options.argv = {"/bin/sh", "-c",
                  "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2; echo done"};
  options.out = Output::kCapture;
  options.err = Output::kCapture;
  options.timeout = 20s;
  ProcessResult r = *RunProcess(options);
  EXPECT_TRUE(r.Succeeded()) << r.Describe("sh");
  EXPECT_EQ(r.out.size(), (1u << 20) + 5);
  EXPECT_EQ(r.err.size(), 1u << 20);
}

TEST(RunProcessTest, OutputLimitKillsTheChild) {
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", "exec cat /dev/zero"};
  options.out = Output::kCapture;
  options.max_capture_bytes = 100000;
  ProcessResult r = *RunProcess(options);
  EXPECT_TRUE(r.output_limit_exceeded);
  EXPECT_FALSE(r.Succeeded());
  EXPECT_LE(r.out.size(), 100000u);
}

TEST(RunProcessTest, TimeoutKillsTheChildAndItsGroup) {
  auto start = std::chrono::steady_clock::now();
  ProcessOptions options;
  // The grandchild keeps stdout open: only killing the group ends it.
  options.argv = {"/bin/sh", "-c", "sleep 30 & sleep 30"};
  options.out = Output::kCapture;
  options.timeout = 300ms;
  options.group = ProcessGroup::kOwn;
  ProcessResult r = *RunProcess(options);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.term_signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_THAT(r.Describe("sh"), HasSubstr("timed out"));
}

TEST(RunProcessTest, TimeoutWithoutCapturedOutput) {
  ProcessOptions options;
  options.argv = {"/bin/sleep", "30"};
  options.timeout = 200ms;
  auto start = std::chrono::steady_clock::now();
  ProcessResult r = *RunProcess(options);
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(RunProcessTest, ReportsExitStatusAndSignal) {
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", "exit 3"};
  ProcessResult r = *RunProcess(options);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.Describe("sh"), "sh exited with status 3");
  options.argv = {"/bin/sh", "-c", "kill -TERM $$"};
  r = *RunProcess(options);
  EXPECT_EQ(r.term_signal, SIGTERM);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.Describe("sh"), "sh killed by signal 15");
}

TEST(RunProcessTest, OnlyStandardFdsReachTheChildAndStdinIsDevNull) {
  int leaked = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaked, 3);
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c",
                  "test -e /proc/$$/fd/" + std::to_string(leaked) +
                      " && echo leaked; readlink /proc/$$/fd/0"};
  options.out = Output::kCapture;
  ProcessResult r = *RunProcess(options);
  ::close(leaked);
  EXPECT_EQ(r.out, "/dev/null\n");
}

TEST(RunProcessTest, EnvironmentAndPathSearch) {
  ProcessOptions options;
  options.argv = {"sh", "-c", "echo \"$ONLY\"; echo \"${HOME:-unset}\""};
  options.env = std::vector<std::string>{"ONLY=this", "PATH=/usr/bin:/bin"};
  options.out = Output::kCapture;
  options.search_path = SearchPath::kYes;
  ProcessResult r = *RunProcess(options);
  EXPECT_EQ(r.out, "this\nunset\n");
  // Without the search "sh" is a path relative to the working directory.
  options.search_path = SearchPath::kNo;
  auto missing = RunProcess(options);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().errno_value(), ENOENT);
  EXPECT_THAT(missing.error().message(), HasSubstr("spawn sh"));
}

TEST(RunProcessTest, DiscardedOutput) {
  ProcessOptions options;
  // In a pipeline the shell's own fd 1 stays as it was (dash applies a plain
  // command's redirections in the shell itself).
  options.argv = {"/bin/sh", "-c", "echo hidden; readlink /proc/$$/fd/1 | cat >&2"};
  options.out = Output::kDiscard;
  options.err = Output::kCapture;
  ProcessResult r = *RunProcess(options);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "/dev/null\n");
}

}  // namespace
}  // namespace tessera
