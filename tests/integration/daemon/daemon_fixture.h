#pragma once
// The fixture of tesserad's end-to-end tests: a real daemon (spawned by the
// test with private state and runtime directories, killed by pid at the end)
// managing real cells, driven through the real `tessera` CLI.

#include <fcntl.h>
#include <glob.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cell/cell.h"
#include "cell/cgroups.h"
#include "common/fs.h"
#include "common/unique_fd.h"
#include "integration/mounts_below.h"
#include "storage/ext4_image.h"
#include "storage/idmap_internal.h"
#include "storage/private_volume.h"
#include "storage/storage.h"
#include "wire/admin_client.h"

namespace tessera::daemon_testing {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Qube names are prefixed so leftover checks (cgroups) cannot confuse them
// with cells of other tests running at the same time.
constexpr const char* kSystem = R"(
default_dispvm = "dt-dvm"

[qubes.dt-base]
class = "template"
source = "busybox"

[qubes.dt-net]
class = "app"
template = "dt-base"
provides_network = true
memory = 256

[qubes.dt-work]
class = "app"
template = "dt-base"
netvm = "dt-net"
label = "blue"
memory = 512

[qubes.dt-vault]
class = "app"
template = "dt-base"
netvm = "none"
memory = 256

[qubes.dt-dvm]
class = "disposable-template"
template = "dt-base"
netvm = "none"
memory = 256
)";

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string ReadAllFd(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

inline std::vector<std::string> Glob(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return out;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "tesserad needs root";
    // A CLI that exits before reading all its input must fail the test, not
    // kill the test binary (and leave its daemon behind).
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/tessera-daemon-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    // The authorisation test connects as `nobody`: the path must be traversable.
    ASSERT_EQ(::chmod(root_.c_str(), 0755), 0);
    layout_.state_dir = root_ + "/state";
    layout_.runtime_dir = root_ + "/run";
    config_ = root_ + "/system.toml";
    ASSERT_TRUE(WriteFileAtomic(config_, kSystem));
    ::setenv("TESSERA_STATE_DIR", layout_.state_dir.c_str(), 1);
    ::setenv("TESSERA_RUNTIME_DIR", layout_.runtime_dir.c_str(), 1);
  }

  void TearDown() override {
    if (root_.empty()) return;
    KillDaemon(SIGKILL);
    // Whatever the test left: kill cells, remove cgroups and scratch.
    for (const auto& dir : Glob(layout_.runtime_dir + "/cells/*")) {
      std::string name = dir.substr(dir.rfind('/') + 1);
      auto s = cell::Cell::Cleanup(layout_, name);
      EXPECT_TRUE(s) << name << ": " << s.error().ToString();
    }
    // Volume images a failed test left mounted go before the tree does.
    ::tessera::testing::UnmountBelow(root_);
    std::string cmd = "rm -rf --one-file-system '" + root_ + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    // Its ranges in the host registry are stale now: drop them.
    (void)storage::internal::PruneIdRegistry(std::string(storage::kHostIdRegistryDir));
  }

  void StartDaemon(std::vector<std::string> extra = {}) {
    ASSERT_EQ(daemon_pid_, -1);
    std::string log = root_ + "/daemon.log";
    const size_t log_before = ReadFile(log).value_or("").size();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Its own process group, like a job started from a shell.
      ::setpgid(0, 0);
      if (!daemon_netns_.empty()) {
        // The daemon's "host" network is a namespace the test made.
        int ns = ::open(daemon_netns_.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) ::_exit(126);
      }
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      if (activation_fd_ >= 0) {
        // As systemd passes tesserad.socket: fd 3, LISTEN_FDS, LISTEN_PID.
        if (::dup2(activation_fd_, 3) != 3 || ::fcntl(3, F_SETFD, 0) != 0) ::_exit(125);
        ::setenv("LISTEN_FDS", "1", 1);
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
      }
      std::vector<std::string> args = {TESSERA_CLI, "--config",        config_,
                                       "daemon",    "--stop-grace-ms", "1000"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    daemon_pid_ = pid;
    for (int i = 0; i < 300; ++i) {
      // An activated socket accepts connections before the daemon runs: wait
      // for the daemon's word instead.
      if (activation_fd_ >= 0
              ? ReadFile(log).value_or("").find("tesserad ready", log_before) != std::string::npos
              : static_cast<bool>(
                    wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock"))) {
        return;
      }
      int status;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        daemon_pid_ = -1;
        FAIL() << "daemon exited: " << ReadFile(log).value_or("");
      }
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "daemon did not come up: " << ReadFile(log).value_or("");
  }

  // A listening socket the daemon gets by socket activation (-1: none).
  int activation_fd_ = -1;

  void KillDaemon(int sig) {
    if (daemon_pid_ <= 0) return;
    ::kill(daemon_pid_, sig);
    int status;
    ::waitpid(daemon_pid_, &status, 0);
    daemon_pid_ = -1;
  }

  // In a forked child: `fds` become stdin/stdout/stderr, then the CLI runs.
  [[noreturn]] static void ExecCli(std::vector<std::string> args, int in, int out, int err) {
    // As a shell starts a foreground job: default signal handling, nothing
    // blocked (a test run from a background job inherits SIGINT and SIGQUIT
    // ignored, and `run` rightly forwards no signal its caller ignores).
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    args.insert(args.begin(), TESSERA_CLI);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }

  // Starts the CLI in the background with /dev/null as stdio; returns its pid.
  pid_t SpawnCli(std::vector<std::string> args) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int null_fd = ::open("/dev/null", O_RDWR);
      ExecCli(std::move(args), null_fd, null_fd, null_fd);
    }
    return pid;
  }

  CliResult Cli(std::vector<std::string> args, const std::string& input = "") {
    int in[2], out[2], err[2];
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) ExecCli(std::move(args), in[0], out[1], err[1]);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    // Input is fed while output is read: a command echoing more than a pipe
    // holds would otherwise stall both sides.
    std::thread feeder([fd = in[1], &input] {
      size_t done = 0;
      while (done < input.size()) {
        ssize_t n = ::write(fd, input.data() + done, input.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // the CLI stopped reading (EPIPE): it is its result that counts
        done += static_cast<size_t>(n);
      }
      ::close(fd);
    });
    CliResult r;
    std::string err_text;
    std::thread t([&] { err_text = ReadAllFd(err[0]); });
    r.out = ReadAllFd(out[0]);
    t.join();
    feeder.join();
    r.err = err_text;
    ::close(out[0]);
    ::close(err[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }

  std::map<std::string, json> List() {
    CliResult r = Cli({"ls", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, json> out;
    json doc = json::parse(r.out, nullptr, false);
    if (!doc.is_array()) return out;
    for (auto& q : doc) out[q["name"].get<std::string>()] = q;
    return out;
  }
  std::string StateOf(const std::string& qube) {
    auto l = List();
    return l.count(qube) ? l[qube].value("state", "?") : "absent";
  }

  struct CallOutcome {
    std::string code;     // "ok", the error code, or what failed
    std::string message;  // the error message, if any
  };
  // Calls `method` on the admin socket from a child running as `uid`/`gid`
  // with supplementary `groups`.
  CallOutcome CallAsWithMessage(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                                const std::string& method, const json& params) {
    int pipefd[2];
    EXPECT_EQ(::pipe(pipefd), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(pipefd[0]);
      std::string text;
      if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 ||
          ::setuid(uid) != 0) {
        text = "cannot drop privileges";
      } else if (auto client = wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock");
                 !client) {
        text = "cannot connect";
      } else {
        auto reply = client->Call(method, params);
        text = !reply ? "transport" : reply->ok ? "ok" : reply->code + "\n" + reply->message;
      }
      (void)!::write(pipefd[1], text.data(), text.size());
      _exit(0);
    }
    ::close(pipefd[1]);
    std::string text = ReadAllFd(pipefd[0]);
    ::close(pipefd[0]);
    ::waitpid(pid, nullptr, 0);
    size_t nl = text.find('\n');
    if (nl == std::string::npos) return {text, ""};
    return {text.substr(0, nl), text.substr(nl + 1)};
  }
  // The same, when only the outcome's code matters.
  std::string CallAs(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                     const std::string& method, const json& params) {
    return CallAsWithMessage(uid, gid, groups, method, params).code;
  }

  // Waits (bounded) until `qube` is in `state`; true if it got there.
  bool WaitForState(const std::string& qube, const std::string& state,
                    std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (StateOf(qube) == state) return true;
      std::this_thread::sleep_for(50ms);
    }
    return StateOf(qube) == state;
  }

  // Installs an executable service in the qube's /usr/local (its private
  // volume: it stays across restarts).
  void Install(const std::string& qube, const std::string& service, const std::string& script) {
    std::string path = "/usr/local/etc/qubes-rpc/" + service;
    CliResult r =
        Cli({"run", "-u", "root", qube, "--", "/bin/sh", "-c",
             "mkdir -p /usr/local/etc/qubes-rpc && cat > " + path + " && chmod 755 " + path},
            script);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // The audit lines of calls of `service`.
  std::vector<json> CallLines(const std::string& service) {
    std::vector<json> out;
    std::istringstream in(AuditText());
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.value("kind", "") == "rpc" && j.value("service", "") == service) {
        out.push_back(j);
      }
    }
    return out;
  }

  std::string AuditText() { return ReadFile(layout_.state_dir + "/audit/audit.log").value_or(""); }

  // Nothing of a halted qube is left on the host. Only this daemon's cgroup
  // instance counts: other tests run daemons with the same qube names.
  void ExpectNoLeftovers(const std::string& qube) {
    EXPECT_FALSE(Exists(layout_.ScratchDir(qube))) << qube;
    char real[PATH_MAX];
    ASSERT_NE(::realpath(layout_.runtime_dir.c_str(), real), nullptr);
    std::string tag = cell::InstanceTag(real);
    EXPECT_THAT(Glob("/sys/fs/cgroup/*/tessera/" + tag + "/" + qube), ::testing::IsEmpty()) << qube;
    EXPECT_THAT(Glob("/sys/fs/cgroup/tessera/" + tag + "/" + qube), ::testing::IsEmpty()) << qube;
    // A halted qube's volume image is not mounted (nor its loop device bound).
    EXPECT_FALSE(storage::IsMountRoot(layout_.PrivateVolume(qube)).value_or(true)) << qube;
    if (storage::HasPrivateImage(layout_, qube)) {
      EXPECT_FALSE(storage::LoopDeviceOf(layout_.QubeDir(qube) + "/private.img")
                       .value_or(std::optional<std::string>("?")))
          << qube;
    }
  }
  // True when `rel` exists in the qube's private volume, its image mounted
  // for the look if the qube is halted.
  bool VolumeHas(const std::string& qube, const std::string& rel) {
    bool found = false;
    auto looked = storage::WithPrivateVolume(layout_, qube, [&]() -> Status {
      found = Exists(layout_.PrivateVolume(qube) + "/" + rel);
      return Ok();
    });
    EXPECT_TRUE(looked) << looked.error().ToString();
    return found;
  }
  // Disposables are torn down right after their command's exit code is sent,
  // so wait (bounded) for the teardown to finish: its files go on a worker
  // first, its entry in `ls` when the loop hears of it.
  void ExpectNoDisposables() {
    auto listed = [&] {
      for (const auto& [name, q] : List()) {
        if (name.rfind("disp", 0) == 0) return true;
      }
      return false;
    };
    for (int i = 0; i < 250; ++i) {
      bool any = !Glob(layout_.runtime_dir + "/cells/disp*").empty() ||
                 !Glob(layout_.state_dir + "/qubes/disp*").empty() || listed();
      if (!any) break;
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_THAT(Glob(layout_.runtime_dir + "/cells/disp*"), ::testing::IsEmpty());
    EXPECT_THAT(Glob(layout_.state_dir + "/qubes/disp*"), ::testing::IsEmpty());
    for (const auto& [name, q] : List())
      EXPECT_THAT(name, ::testing::Not(::testing::StartsWith("disp")));
  }

  // Subscribes and waits for `state` of a qube matching `prefix`, then kills
  // the daemon with SIGKILL right away.
  void KillDaemonWhen(const std::string& prefix, const std::string& state,
                      std::function<void()> trigger) {
    auto client = wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock");
    ASSERT_TRUE(client);
    auto sub = client->Call("events.subscribe", json::object());
    ASSERT_TRUE(sub && sub->ok);
    std::thread t(trigger);
    bool seen = false;
    for (int i = 0; i < 200 && !seen; ++i) {
      auto ev = client->NextEvent();
      if (!ev) break;
      if (ev->value("qube", "").rfind(prefix, 0) == 0 && ev->value("state", "") == state) {
        seen = true;
      }
    }
    KillDaemon(SIGKILL);
    t.join();
    ASSERT_TRUE(seen) << "never saw " << prefix << " " << state;
  }

  std::string root_;
  std::string config_;
  storage::Layout layout_;
  pid_t daemon_pid_ = -1;
  std::string daemon_netns_;  // a netns file: the daemon runs in it (network tests)
};

}  // namespace tessera::daemon_testing
