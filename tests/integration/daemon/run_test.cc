// `tessera run` as daily use needs it, end to end through a real daemon and
// real cells: the caller's terminal never enters a qube, signals reach the
// command, the default user, shell syntax, environment and working
// directory, and clear reasons (OOM, the qube stopping) instead of codes.

#include <pty.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

using ::testing::Not;

// A host pseudo-terminal standing for the user's terminal.
struct HostPty {
  UniqueFd master;
  UniqueFd slave;
};

HostPty OpenHostPty(unsigned short rows = 33, unsigned short cols = 99) {
  int m = -1;
  int s = -1;
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  EXPECT_EQ(::openpty(&m, &s, nullptr, nullptr, &ws), 0);
  ::fcntl(m, F_SETFD, FD_CLOEXEC);
  ::fcntl(s, F_SETFD, FD_CLOEXEC);
  return {UniqueFd(m), UniqueFd(s)};
}

struct PtyResult {
  int exit_code = -1;
  std::string output;  // what reached the terminal
};

class RunTest : public DaemonTest {
 protected:
  // The CLI with the pty as its controlling terminal and stdin/stdout/stderr,
  // as from an interactive shell; `typed` is written to the terminal once the
  // command printed `after` ("" = at once).
  PtyResult RunOnPty(HostPty& pty, std::vector<std::string> args, const std::string& typed = "",
                     const std::string& after = "", std::map<std::string, std::string> env = {}) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setsid();
      ::ioctl(pty.slave.get(), TIOCSCTTY, 0);
      for (auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      ExecCli(std::move(args), pty.slave.get(), pty.slave.get(), pty.slave.get());
    }
    PtyResult r;
    bool typed_yet = typed.empty();
    auto deadline = std::chrono::steady_clock::now() + 60s;
    int status = 0;
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{pty.master.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) > 0 && (p.revents & POLLIN) != 0) {
        char buf[4096];
        ssize_t n = ::read(pty.master.get(), buf, sizeof(buf));
        if (n > 0) r.output.append(buf, static_cast<size_t>(n));
      } else if (exited) {
        break;  // exited and drained
      }
      if (!typed_yet && r.output.find(after) != std::string::npos) {
        EXPECT_EQ(::write(pty.master.get(), typed.data(), typed.size()),
                  static_cast<ssize_t>(typed.size()));
        typed_yet = true;
      }
      if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) exited = true;
    }
    if (!exited) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << "the CLI did not end; terminal output: " << r.output;
    }
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }

  // A background CLI with pipes; its stdout is read until `marker` appears.
  struct Background {
    pid_t pid = -1;
    UniqueFd out;
    UniqueFd err;
    std::string seen;
  };
  Background SpawnWithPipes(std::vector<std::string> args) {
    int out[2], err[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      int null_fd = ::open("/dev/null", O_RDONLY);
      ExecCli(std::move(args), null_fd, out[1], err[1]);
    }
    ::close(out[1]);
    ::close(err[1]);
    return {pid, UniqueFd(out[0]), UniqueFd(err[0]), ""};
  }
  bool WaitForOutput(Background& b, const std::string& marker) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (b.seen.find(marker) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd p{b.out.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[1024];
      ssize_t n = ::read(b.out.get(), buf, sizeof(buf));
      if (n <= 0) break;
      b.seen.append(buf, static_cast<size_t>(n));
    }
    return b.seen.find(marker) != std::string::npos;
  }
  // Its exit code, after the rest of its output.
  int Finish(Background& b, std::string* err = nullptr) {
    b.seen += ReadAllFd(b.out.get());
    std::string e = ReadAllFd(b.err.get());
    if (err != nullptr) *err = e;
    int status = 0;
    ::waitpid(b.pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // How many processes named `comm` run in `qube`.
  int CountInQube(const std::string& qube, const std::string& comm) {
    CliResult r = Cli({"run", "-u", "root", qube, "--", "sh", "-c",
                       "n=0; for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = " + comm +
                           " ] && [ \"$(cut -d' ' -f3 $p/stat)\" != Z ] && n=$((n+1)); done; "
                           "echo $n"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::atoi(r.out.c_str());
  }

  // The hardening probe, copied into the qube's home (it is static).
  void InstallProbe(const std::string& qube) {
    auto binary = ReadFile(std::string(TESSERA_BINARY_DIR) + "/tessera-hardening-probe");
    ASSERT_TRUE(binary) << binary.error().ToString();
    CliResult r = Cli({"run", qube, "--", "sh", "-c", "cat > probe && chmod 755 probe"}, *binary);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // Bytes waiting in the input queue of the user's terminal (nobody read them).
  static std::string PendingInput(HostPty& pty) {
    termios t{};
    ::tcgetattr(pty.slave.get(), &t);
    ::cfmakeraw(&t);
    ::tcsetattr(pty.slave.get(), TCSANOW, &t);
    int flags = ::fcntl(pty.slave.get(), F_GETFL);
    ::fcntl(pty.slave.get(), F_SETFL, flags | O_NONBLOCK);
    std::string in;
    char buf[256];
    ssize_t n;
    while ((n = ::read(pty.slave.get(), buf, sizeof(buf))) > 0)
      in.append(buf, static_cast<size_t>(n));
    ::fcntl(pty.slave.get(), F_SETFL, flags);
    return in;
  }
};

TEST_F(RunTest, CommandsRunAsTheDefaultUserInItsHome) {
  StartDaemon();
  CliResult id = Cli({"run", "dt-work", "--", "id", "-u"});
  EXPECT_EQ(id.exit_code, 0) << id.err;
  EXPECT_EQ(id.out, "1000\n");
  // --user before the qube parses (it used to be "argument not expected").
  CliResult named = Cli({"run", "--user", "user", "dt-work", "--", "id"});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  EXPECT_THAT(named.out, HasSubstr("uid=1000(user)"));
  CliResult root = Cli({"run", "-u", "root", "dt-work", "id", "-u"});
  EXPECT_EQ(root.out, "0\n") << root.err;
  CliResult home = Cli({"run", "dt-work", "--", "sh", "-c", "pwd; echo $HOME $USER $LOGNAME"});
  EXPECT_EQ(home.out, "/home/user\n/home/user user user\n") << home.err;
  CliResult bad = Cli({"run", "--user", "Bad User", "dt-work", "id"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--user must be a user name or UID[:GID]"));
}

TEST_F(RunTest, OneArgumentWithShellSyntaxRunsThroughSh) {
  StartDaemon();
  CliResult shell = Cli({"run", "dt-work", "echo hi; id -un"});
  EXPECT_EQ(shell.exit_code, 0) << shell.err;
  EXPECT_EQ(shell.out, "hi\nuser\n");
  // Several arguments are executed as they are: no shell sees the ';'.
  CliResult direct = Cli({"run", "dt-work", "echo", "a;", "$HOME"});
  EXPECT_EQ(direct.out, "a; $HOME\n");
  CliResult help = Cli({"run", "--help"});
  EXPECT_THAT(help.out, HasSubstr("/bin/sh -c"));
}

TEST_F(RunTest, EnvironmentAndWorkingDirectory) {
  StartDaemon();
  ::setenv("LANG", "C.UTF-8", 1);
  ::setenv("LC_TIME", "C", 1);
  CliResult r = Cli({"run", "--env", "FOO=bar baz", "--cwd=/tmp", "dt-work", "--", "sh", "-c",
                     "echo \"$FOO|$LANG|$LC_TIME|$TERM\"; pwd"});
  ::unsetenv("LANG");
  ::unsetenv("LC_TIME");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // No terminal: TERM=dumb, so programs send no escape sequences.
  EXPECT_EQ(r.out, "bar baz|C.UTF-8|C|dumb\n/tmp\n");
  EXPECT_EQ(Cli({"run", "--cwd", "relative", "dt-work", "true"}).exit_code, 2);
  EXPECT_EQ(Cli({"run", "--env", "NOEQUALS", "dt-work", "true"}).exit_code, 2);
  CliResult missing = Cli({"run", "--cwd", "/no/such/dir", "dt-work", "true"});
  EXPECT_EQ(missing.exit_code, 125);
  EXPECT_THAT(missing.err, HasSubstr("chdir /no/such/dir"));
}

TEST_F(RunTest, DispvmWithASpaceSaysHowToNameTheTemplate) {
  StartDaemon();
  CliResult r = Cli({"run", "--dispvm", "dt-dvm", "--", "echo", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("did you mean: tessera run --dispvm=dt-dvm -- echo x"));
  EXPECT_EQ(r.err.back(), '\n');
  CliResult ok = Cli({"run", "--dispvm=dt-dvm", "--", "echo", "x"});
  EXPECT_EQ(ok.out, "x\n") << ok.err;
}

TEST_F(RunTest, NoTerminalOfTheCallerEntersTheQube) {
  StartDaemon();
  InstallProbe("dt-work");
  HostPty pty = OpenHostPty();
  // -T: the terminal is relayed, never passed; no descriptor in the qube is
  // a terminal, so TIOCSTI (typing into it) and TIOCSCTTY (taking it) fail.
  PtyResult r = RunOnPty(pty, {"run", "-T", "dt-work", "--", "sh", "-c",
                               "for f in 0 1 2; do [ -t $f ] && echo fd$f-is-a-tty; done; "
                               "./probe tiocsti 0 'id\n'; ./probe tiocsti 1 'id\n'; "
                               "./probe tiocsctty 0; echo end"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("-is-a-tty")));
  EXPECT_THAT(r.output, HasSubstr("errno=25\r\nerrno=25\r\nerrno=25\r\nend"));
  EXPECT_EQ(PendingInput(pty), "") << "the qube typed into the caller's terminal";

  // Interactive: the command's terminal is a pty of the qube's own; what it
  // types there stays there.
  HostPty pty2 = OpenHostPty();
  // (Kernels with dev.tty.legacy_tiocsti=0 refuse TIOCSTI to everyone.)
  PtyResult i = RunOnPty(pty2, {"run", "dt-work", "--", "sh", "-c",
                                "if ./probe tiocsti 0 'x\n' >/dev/null; then read l; echo got=$l; "
                                "else echo no-tiocsti; fi"});
  EXPECT_EQ(i.exit_code, 0) << i.output;
  EXPECT_TRUE(i.output.find("got=x") != std::string::npos ||
              i.output.find("no-tiocsti") != std::string::npos)
      << i.output;
  EXPECT_EQ(PendingInput(pty2), "");
}

TEST_F(RunTest, EscapeSequencesToATerminalAreFiltered) {
  StartDaemon();
  const std::string print = "printf '\\033]52;c;aGk=\\007A\\033[2JB\\r\\233C\\n'";
  HostPty pty = OpenHostPty();
  PtyResult r = RunOnPty(pty, {"run", "-T", "dt-work", print});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\x07'), std::string::npos) << r.output;
  EXPECT_THAT(r.output, HasSubstr("_]52;c;aGk=_A_[2JB__C"));
  // As qvm-run: the filter can be turned off.
  HostPty pty2 = OpenHostPty();
  PtyResult raw = RunOnPty(pty2, {"run", "-T", "--no-filter-escape-chars", "dt-work", print});
  EXPECT_THAT(raw.output, HasSubstr("\x1b]52;c;aGk=\x07"));
  // Output to a pipe or file is data: never touched.
  CliResult piped = Cli({"run", "dt-work", print});
  EXPECT_EQ(piped.out,
            "\x1b]52;c;aGk=\x07"
            "A\x1b[2JB\r\x9b"
            "C\n");
}

TEST_F(RunTest, NothingTheCommandLeftBehindReadsTheCallersTerminal) {
  StartDaemon();
  EXPECT_EQ(Cli({"start", "dt-work"}).exit_code, 0);
  HostPty pty = OpenHostPty();
  // The attack of the issue: a process left behind waits, then reads what
  // the user types at the host prompt next.
  PtyResult r = RunOnPty(pty, {"run", "-T", "dt-work", "--", "sh", "-c",
                               "exec 3<&0; (sleep 1; read l <&3; echo \"got:$l\" > /tmp/stolen) & "
                               "echo left"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(::write(pty.master.get(), "secret\n", 7), 7);
  std::this_thread::sleep_for(2500ms);
  CliResult stolen = Cli({"run", "dt-work", "cat /tmp/stolen 2>/dev/null; echo checked"});
  EXPECT_EQ(stolen.out, "checked\n");
  EXPECT_THAT(PendingInput(pty), HasSubstr("secret"));
  // With passed descriptors (a pipe) the leftover is ended with the command.
  CliResult bg = Cli({"run", "dt-work", "--", "sh", "-c", "sleep 300 & echo $!"});
  EXPECT_EQ(bg.exit_code, 0) << bg.err;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(CountInQube("dt-work", "sleep"), 0);
}

TEST_F(RunTest, InteractiveRunsGetAPtyAndTheTerminalIsRestored) {
  StartDaemon();
  HostPty pty = OpenHostPty(33, 99);
  termios before{};
  ASSERT_EQ(::tcgetattr(pty.slave.get(), &before), 0);
  PtyResult r = RunOnPty(pty,
                         {"run", "dt-work", "--", "sh", "-c",
                          "tty; stty size; echo term=$TERM; stty -echo raw; echo done"},
                         "", "", {{"TERM", "xterm-test"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/dev/pts/"));
  EXPECT_THAT(r.output, HasSubstr("33 99"));
  EXPECT_THAT(r.output, HasSubstr("term=xterm-test"));
  EXPECT_THAT(r.output, HasSubstr("done"));
  termios after{};
  ASSERT_EQ(::tcgetattr(pty.slave.get(), &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag) << "echo/canonical mode not restored";
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);
  // Ctrl-C typed on the terminal is the qube terminal's interrupt.
  HostPty pty2 = OpenHostPty();
  PtyResult c = RunOnPty(pty2, {"run", "dt-work", "--", "sh", "-c", "echo ready; exec sleep 55"},
                         "\x03", "ready");
  EXPECT_EQ(c.exit_code, 130) << c.output;
  // -t forces a terminal without one here; -T none with one.
  CliResult forced = Cli({"run", "-t", "dt-work", "tty"});
  EXPECT_THAT(forced.out, HasSubstr("/dev/pts/")) << forced.err;
  EXPECT_EQ(CountInQube("dt-work", "sleep"), 0);
}

TEST_F(RunTest, SignalsReachTheCommand) {
  StartDaemon();
  EXPECT_EQ(Cli({"start", "dt-work"}).exit_code, 0);
  Background trap = SpawnWithPipes({"run", "dt-work", "--", "sh", "-c",
                                    "trap 'echo got-int; exit 7' INT; echo ready; "
                                    "while :; do sleep 1; done"});
  ASSERT_TRUE(WaitForOutput(trap, "ready")) << trap.seen;
  ::kill(trap.pid, SIGINT);
  EXPECT_EQ(Finish(trap), 7);
  EXPECT_THAT(trap.seen, HasSubstr("got-int"));

  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    // The signal goes once `sleep` itself runs: a shell that printed "ready"
    // but has not exec'd yet may ignore SIGQUIT, as a local one would.
    Background b = SpawnWithPipes({"run", "dt-work", "--", "sleep", "55"});
    bool running = false;
    for (int i = 0; i < 100 && !running; ++i) {
      running = CountInQube("dt-work", "sleep") == 1;
      if (!running) std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(running) << "signal " << sig << ": sleep never ran";
    ::kill(b.pid, sig);
    std::string err;
    EXPECT_EQ(Finish(b, &err), 128 + sig) << "signal " << sig << ": " << err;
  }
  EXPECT_EQ(CountInQube("dt-work", "sleep"), 0);

  // Killed outright, the CLI takes its command along (a hang-up).
  Background k = SpawnWithPipes({"run", "dt-work", "--", "sh", "-c", "echo ready; exec sleep 55"});
  ASSERT_TRUE(WaitForOutput(k, "ready"));
  ::kill(k.pid, SIGKILL);
  Finish(k);
  int left = 1;
  for (int i = 0; i < 50 && left != 0; ++i) {
    std::this_thread::sleep_for(100ms);
    left = CountInQube("dt-work", "sleep");
  }
  EXPECT_EQ(left, 0);

  // --detach: started, and left to run on. It returns while the command
  // still waits for a file only we create afterwards.
  CliResult d = Cli({"run", "--detach", "dt-work", "--", "sh", "-c",
                     "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo done > /tmp/d"});
  EXPECT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(Cli({"run", "dt-work", "cat /tmp/d 2>/dev/null; touch /tmp/go"}).out, "");
  std::string done;
  for (int i = 0; i < 100 && done.empty(); ++i) {
    std::this_thread::sleep_for(100ms);
    done = Cli({"run", "dt-work", "cat /tmp/d 2>/dev/null || true"}).out;
  }
  EXPECT_EQ(done, "done\n");
  EXPECT_EQ(Cli({"run", "--detach", "--dispvm", "--", "true"}).exit_code, 2);
}

TEST_F(RunTest, StopAndContinueReachTheCommand) {
  StartDaemon();
  // The pid is the command's before and after its exec: the stop may come
  // while it is still the shell.
  Background b =
      SpawnWithPipes({"run", "dt-work", "--", "sh", "-c", "echo ready $$; exec sleep 55"});
  ASSERT_TRUE(WaitForOutput(b, "\n"));
  ASSERT_THAT(b.seen, ::testing::StartsWith("ready "));
  std::string pid = b.seen.substr(6, b.seen.find('\n') - 6);
  auto state_of_sleep = [&] {
    CliResult r = Cli(
        {"run", "-u", "root", "dt-work", "--", "cut", "-d", " ", "-f3", "/proc/" + pid + "/stat"});
    return r.out;
  };
  auto wait_for = [&](const std::string& want) {
    for (int i = 0; i < 100; ++i) {
      if (state_of_sleep() == want) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  // As ^Z: the command stops, then `run` itself (the shell gets the terminal).
  ::kill(b.pid, SIGTSTP);
  int status = 0;
  ASSERT_EQ(::waitpid(b.pid, &status, WUNTRACED), b.pid);
  EXPECT_TRUE(WIFSTOPPED(status));
  EXPECT_TRUE(wait_for("T\n")) << state_of_sleep();
  // As fg: both continue.
  ::kill(b.pid, SIGCONT);
  EXPECT_TRUE(wait_for("S\n")) << state_of_sleep();
  ::kill(b.pid, SIGTERM);
  EXPECT_EQ(Finish(b), 143);
}

TEST_F(RunTest, AnOomKillAndAStoppedQubeSayWhy) {
  StartDaemon();
  // dt-vault has 256 MiB: a shell variable growing past it is OOM-killed.
  CliResult oom = Cli({"run", "dt-vault", "--", "sh", "-c",
                       "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived"});
  EXPECT_EQ(oom.exit_code, 137) << oom.out << oom.err;
  EXPECT_THAT(oom.err, HasSubstr("tessera run: killed: out of memory (limit 256 MiB)\n"));
  CliResult logs = Cli({"logs", "dt-vault"});
  EXPECT_THAT(logs.out, HasSubstr("killed: out of memory (limit 256 MiB)"));

  Background b = SpawnWithPipes({"run", "dt-vault", "--", "sh", "-c", "echo ready; exec sleep 55"});
  ASSERT_TRUE(WaitForOutput(b, "ready"));
  EXPECT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  std::string err;
  EXPECT_EQ(Finish(b, &err), 143);
  EXPECT_EQ(err, "tessera run: qube stopped while the command ran\n");
  EXPECT_THAT(Cli({"logs", "dt-vault"}).out, HasSubstr("qube stopped while the command ran"));
}

}  // namespace
}  // namespace tessera::daemon_testing
