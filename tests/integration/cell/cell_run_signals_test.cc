// `tessera cell run` never leaves a cell behind (issue 10): SIGINT, SIGTERM,
// SIGHUP and SIGQUIT stop and clean up; after SIGKILL the cell dies with the
// CLI and the next `cell run` or `cell cleanup` removes what is left. Real
// cells, through the real binary.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "backend/run_claim.h"
#include "cell/cell_record.h"
#include "cell/cgroups.h"
#include "common/fs.h"
#include "integration/cell/cell_fixture.h"

namespace tessera::cell::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name[0] != '.') out.push_back(name);  // lock files are not leftovers
  }
  return out;
}

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

class CellRunSignalsTest : public CellTest {
 protected:
  void SetUp() override {
    CellTest::SetUp();
    if (IsSkipped()) return;
    config_ = tmp_ + "/system.toml";
    ASSERT_TRUE(WriteFileAtomic(
        config_,
        "[qubes.base]\nclass = \"template\"\nsource = \"busybox\"\n"
        "[qubes.work]\nclass = \"app\"\ntemplate = \"base\"\nmemory = 128\n"
        "[qubes.dvm]\nclass = \"disposable-template\"\ntemplate = \"base\"\nmemory = 128\n"));
  }

  void TearDown() override {
    if (cli_ > 0) {
      ::kill(cli_, SIGKILL);
      ::waitpid(cli_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
    // Whatever a failed test left: the fixture cleans cells it started, these
    // were started by the CLI.
    for (const auto& name : Entries(layout_.runtime_dir + "/cells")) started_.push_back(name);
    CellTest::TearDown();
  }

  // Starts `tessera cell run ARGS` in the background, its stdout a pipe.
  void Spawn(std::vector<std::string> args) {
    int pipefd[2];
    ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
    args.insert(args.begin(), {TESSERA_CLI, "--config", config_, "cell", "run"});
    cli_ = ::fork();
    ASSERT_GE(cli_, 0);
    if (cli_ == 0) {
      ::dup2(pipefd[1], 1);
      ::setenv("TESSERA_STATE_DIR", layout_.state_dir.c_str(), 1);
      ::setenv("TESSERA_RUNTIME_DIR", layout_.runtime_dir.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(pipefd[1]);
    out_ = pipefd[0];
  }

  // Reads the CLI's stdout until `text` appears (bounded).
  bool WaitForOutput(const std::string& text) {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (output_.find(text) != std::string::npos) return true;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 200) > 0) {
        char buf[4096];
        ssize_t n = ::read(out_, buf, sizeof(buf));
        if (n <= 0) return false;
        output_.append(buf, static_cast<size_t>(n));
      }
    }
    return false;
  }

  // The CLI's exit status as a shell reports it, or -1 if it did not exit.
  int WaitForExit() {
    for (int i = 0; i < 600; ++i) {
      int status = 0;
      if (::waitpid(cli_, &status, WNOHANG) == cli_) {
        cli_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(50ms);
    }
    return -1;
  }

  // The one cell the CLI runs (its scratch directory's name).
  std::string RunningCell() {
    std::vector<std::string> cells = Entries(layout_.runtime_dir + "/cells");
    EXPECT_EQ(cells.size(), 1u);
    return cells.empty() ? "" : cells[0];
  }

  struct CliRunResult {
    int code = -1;
    std::string text;  // stdout and stderr
  };
  // `tessera cell ARGS` in the foreground.
  CliRunResult RunCell(const std::string& args) {
    std::string cmd = "TESSERA_STATE_DIR=" + layout_.state_dir +
                      " TESSERA_RUNTIME_DIR=" + layout_.runtime_dir + " " + TESSERA_CLI +
                      " --config " + config_ + " cell " + args + " 2>&1";
    CliRunResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.text.append(buf, n);
    int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  // Nothing of `name` is left on the host (a disposable's storage neither).
  void ExpectNothingLeftOf(const std::string& name, bool disposable = true) {
    EXPECT_FALSE(Exists(layout_.ScratchDir(name))) << name;
    if (disposable) {
      EXPECT_FALSE(Exists(layout_.QubeDir(name))) << name << " (its storage)";
    }
    EXPECT_FALSE(Exists(backend::RunClaimDir(layout_) + "/" + name)) << name << " (its claim)";
    auto cgroups = CellCgroups::ForQube(layout_.runtime_dir, name);
    ASSERT_TRUE(cgroups);
    for (const auto& dir : cgroups->dirs()) EXPECT_FALSE(Exists(dir)) << dir;
  }

  std::string config_;
  pid_t cli_ = -1;
  int out_ = -1;
  std::string output_;
};

TEST_F(CellRunSignalsTest, StopSignalsStopTheCellAndCleanUp) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    output_.clear();
    Spawn({"--dispvm", "dvm", "--", "/bin/sh", "-c", "echo started; exec sleep 60"});
    ASSERT_TRUE(WaitForOutput("started\n")) << sigabbrev_np(sig) << ": " << output_;
    const std::string name = RunningCell();
    ASSERT_EQ(::kill(cli_, sig), 0);
    EXPECT_EQ(WaitForExit(), 128 + sig) << sigabbrev_np(sig);
    ::close(out_);
    out_ = -1;
    ExpectNothingLeftOf(name);
  }
}

TEST_F(CellRunSignalsTest, SigkillTakesTheCellAlongAndTheNextRunRemovesTheRest) {
  for (const std::string next : {"cleanup", "run"}) {
    output_.clear();
    Spawn({"--dispvm", "dvm", "--", "/bin/sh", "-c", "echo started; exec sleep 60"});
    ASSERT_TRUE(WaitForOutput("started\n")) << output_;
    const std::string name = RunningCell();
    auto record = ReadCellRecord(layout_.ScratchDir(name) + "/cell.json");
    ASSERT_TRUE(record) << record.error().ToString();
    const pid_t init = record->pid;
    ASSERT_EQ(::kill(cli_, SIGKILL), 0);
    EXPECT_EQ(WaitForExit(), 128 + SIGKILL);
    ::close(out_);
    out_ = -1;

    // The cell dies with the CLI: its init (and so its pid namespace) is
    // gone, and its cgroups hold no process.
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      auto start = StartTime(init);
      gone = !start || *start != record->start_time;
      if (!gone) std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(gone) << "init " << init << " of " << name << " outlived the CLI";
    auto cgroups = CellCgroups::ForQube(layout_.runtime_dir, name);
    ASSERT_TRUE(cgroups);
    for (const auto& dir : cgroups->dirs()) {
      EXPECT_EQ(ReadFile(dir + "/cgroup.procs").value_or(""), "") << dir;
    }
    EXPECT_TRUE(Exists(layout_.ScratchDir(name)));  // left for the next run

    CliRunResult after = RunCell(next == "cleanup" ? "cleanup" : "run work -- /bin/true");
    EXPECT_EQ(after.code, 0) << next << ": " << after.text;
    const std::string& text = after.text;
    EXPECT_THAT(text, HasSubstr("removed what a killed run left of " + name)) << next;
    ExpectNothingLeftOf(name);
  }
  EXPECT_THAT(Entries(layout_.runtime_dir + "/cells"), IsEmpty());
  EXPECT_THAT(Entries(backend::RunClaimDir(layout_)), IsEmpty());
}

// A live run's claim is never swept: `cell cleanup` beside a running
// `cell run` leaves its cell alone.
TEST_F(CellRunSignalsTest, CleanupLeavesLiveRunsAlone) {
  Spawn({"work", "--", "/bin/sh", "-c", "echo started; exec sleep 60"});
  ASSERT_TRUE(WaitForOutput("started\n")) << output_;
  CliRunResult cleanup = RunCell("cleanup");
  EXPECT_EQ(cleanup.code, 0) << cleanup.text;
  EXPECT_THAT(cleanup.text, HasSubstr("nothing left by killed runs"));
  EXPECT_TRUE(Exists(layout_.ScratchDir("work")));
  auto adopted = Cell::Adopt(layout_, "work");
  EXPECT_TRUE(adopted) << adopted.error().ToString();
  ASSERT_EQ(::kill(cli_, SIGTERM), 0);
  EXPECT_EQ(WaitForExit(), 128 + SIGTERM);
  ExpectNothingLeftOf("work", /*disposable=*/false);
}

}  // namespace
}  // namespace tessera::cell::testing
