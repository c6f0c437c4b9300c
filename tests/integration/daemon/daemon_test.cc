// End-to-end tests of tesserad through the real `tessera` CLI (fixture:
// daemon_fixture.h).

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

TEST_F(DaemonTest, LifecycleThroughCli) {
  StartDaemon();
  CliResult ls = Cli({"ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_THAT(ls.out, HasSubstr("NAME"));
  EXPECT_THAT(ls.out, HasSubstr("MEMORY"));
  EXPECT_EQ(StateOf("dt-work"), "halted");

  CliResult start = Cli({"start", "dt-work"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  EXPECT_EQ(StateOf("dt-work"), "running");
  EXPECT_EQ(StateOf("dt-net"), "running") << "the netvm starts first";

  CliResult run =
      Cli({"run", "dt-work", "--", "sh", "-c", "cat; echo err >&2; exit 3"}, "from-stdin\n");
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_EQ(run.out, "from-stdin\n");
  EXPECT_EQ(run.err, "err\n");
  CliResult host = Cli({"run", "dt-work", "hostname"});
  EXPECT_EQ(host.out, "dt-work\n");
  EXPECT_EQ(Cli({"run", "dt-work", "no-such-command"}).exit_code, 127);

  // run starts a halted qube first.
  CliResult vault = Cli({"run", "dt-vault", "true"});
  EXPECT_EQ(vault.exit_code, 0) << vault.err;
  EXPECT_EQ(StateOf("dt-vault"), "running");

  CliResult stop = Cli({"stop", "dt-work"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(StateOf("dt-work"), "halted");
  ExpectNoLeftovers("dt-work");
  CliResult again = Cli({"stop", "dt-work"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_THAT(again.out, HasSubstr("dt-work is already halted"));

  CliResult unknown = Cli({"start", "dt-wrok"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no such qube: dt-wrok (did you mean dt-work?)"));

  EXPECT_EQ(Cli({"kill", "dt-vault"}).exit_code, 0);
  EXPECT_EQ(Cli({"restart", "dt-net"}).exit_code, 0);
  EXPECT_EQ(StateOf("dt-net"), "running");

  CliResult logs = Cli({"logs", "dt-work"});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("starting"));
  EXPECT_THAT(logs.out, HasSubstr("halted"));
  EXPECT_THAT(logs.out, HasSubstr("qube.run"));

  CliResult prefs = Cli({"prefs", "dt-work", "memory"});
  EXPECT_EQ(prefs.out, "512\n");
  CliResult set = Cli({"prefs", "dt-work", "memory", "1024"});
  EXPECT_EQ(set.exit_code, 1);
  EXPECT_THAT(set.err, HasSubstr("tessera apply"));

  std::string audit = AuditText();
  EXPECT_THAT(audit, HasSubstr("\"method\":\"qube.start\""));
  EXPECT_THAT(audit, HasSubstr("\"kind\":\"lifecycle\""));

  EXPECT_EQ(Cli({"stop", "--all"}).exit_code, 0);
  for (const char* q : {"dt-net", "dt-work", "dt-vault"}) ExpectNoLeftovers(q);
}

TEST_F(DaemonTest, DisposableRunIsDestroyed) {
  StartDaemon();
  CliResult r = Cli({"run", "--dispvm", "--", "sh", "-c", "hostname; echo x > /home/user/f"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("disp"));
  ExpectNoDisposables();
  CliResult named = Cli({"run", "--dispvm=dt-dvm", "sh", "-c", "exit 5"});
  EXPECT_EQ(named.exit_code, 5);
  ExpectNoDisposables();
  CliResult bad = Cli({"run", "--dispvm=dt-work", "true"});
  EXPECT_EQ(bad.exit_code, 125);
  EXPECT_THAT(bad.err, HasSubstr("not a disposable template"));
  EXPECT_THAT(AuditText(), HasSubstr("\"state\":\"destroyed\""));
}

TEST_F(DaemonTest, PreloadedDisposableIsUsedAndReplaced) {
  std::string text = kSystem;
  text +=
      "\n[qubes.dt-pdvm]\nclass = \"disposable-template\"\ntemplate = \"dt-base\"\n"
      "netvm = \"none\"\nfeatures = { \"preload-dispvm-max\" = \"1\" }\n";
  ASSERT_TRUE(WriteFileAtomic(config_, text));
  StartDaemon({"--no-autostart"});
  auto preloaded = [&] {
    for (int i = 0; i < 250; ++i) {
      for (const auto& [name, q] : List()) {
        if (name.rfind("disp", 0) == 0 && q.value("state", "") == "running") return name;
      }
      std::this_thread::sleep_for(20ms);
    }
    return std::string();
  };
  std::string first = preloaded();
  ASSERT_FALSE(first.empty()) << "a disposable is preloaded";
  CliResult r = Cli({"run", "--dispvm=dt-pdvm", "hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, first + "\n") << "the preloaded disposable ran the command";
  std::string second;
  for (int i = 0; i < 250 && (second.empty() || second == first); ++i) {
    second = preloaded();
    if (second == first) std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(second, first) << "used disposable destroyed, a new one preloaded";
  for (int i = 0; i < 250 && Exists(layout_.QubeDir(first)); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(Exists(layout_.QubeDir(first))) << "used disposable destroyed";
  // Stopping everything leaves nothing running: the pool does not refill
  // behind `kill --all`, until a disposable is asked for again.
  ASSERT_EQ(Cli({"kill", "--all"}).exit_code, 0);
  std::this_thread::sleep_for(300ms);
  for (const auto& [name, q] : List()) EXPECT_EQ(q.value("state", ""), "halted") << name;
  ASSERT_EQ(Cli({"run", "--dispvm=dt-pdvm", "true"}).exit_code, 0);
  second = preloaded();
  ASSERT_FALSE(second.empty()) << "the pool refills once disposables are wanted again";
  // A restart destroys preloaded disposables (they are re-made).
  KillDaemon(SIGKILL);
  StartDaemon({"--no-autostart"});
  EXPECT_FALSE(Exists(layout_.QubeDir(second)));
  EXPECT_FALSE(Exists(layout_.ScratchDir(second)));
}

// Issue 10: `apply` changing or removing a disposable template left its
// preloaded disposables with the old settings and kept handing them out.
TEST_F(DaemonTest, ApplyReplacesOrStopsPreloadedDisposables) {
  auto with_pdvm = [&](int memory) {
    return std::string(kSystem) +
           "\n[qubes.dt-pdvm]\nclass = \"disposable-template\"\ntemplate = \"dt-base\"\n"
           "netvm = \"none\"\nmemory = " +
           std::to_string(memory) + "\nfeatures = { \"preload-dispvm-max\" = \"2\" }\n";
  };
  ASSERT_TRUE(WriteFileAtomic(config_, with_pdvm(256)));
  StartDaemon({"--no-autostart"});
  // The running preloaded disposables once there are `n` of them, none of `not_in`.
  auto preloaded = [&](size_t n, const std::vector<std::string>& not_in) {
    std::vector<std::string> names;
    for (int i = 0; i < 500; ++i) {
      names.clear();
      for (const auto& [name, q] : List()) {
        if (name.rfind("disp", 0) == 0 && q.value("state", "") == "running" &&
            std::count(not_in.begin(), not_in.end(), name) == 0) {
          names.push_back(name);
        }
      }
      if (names.size() == n) break;
      std::this_thread::sleep_for(20ms);
    }
    return names;
  };
  // The limit the host's cgroup really holds (`ls` shows the template's value).
  auto memory_limit_mib = [&](const std::string& qube) -> long long {
    char real[PATH_MAX];
    if (::realpath(layout_.runtime_dir.c_str(), real) == nullptr) return -1;
    std::string dir = "tessera/" + cell::InstanceTag(real) + "/" + qube;
    for (const std::string& file : {"/sys/fs/cgroup/memory/" + dir + "/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/" + dir + "/memory.max"}) {
      if (auto text = ReadFile(file, 64)) return std::atoll(text->c_str()) >> 20;
    }
    return -1;
  };
  std::vector<std::string> old = preloaded(2, {});
  ASSERT_EQ(old.size(), 2u);
  EXPECT_EQ(memory_limit_mib(old[0]), 256);

  std::string next = root_ + "/next.toml";
  ASSERT_TRUE(WriteFileAtomic(next, with_pdvm(320)));
  CliResult dry = Cli({"apply", next, "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out,
              HasSubstr("~ preloaded disposables of dt-pdvm: 2 replaced (memory changed)"));
  CliResult yes = Cli({"apply", next, "--yes"});
  EXPECT_EQ(yes.exit_code, 0) << yes.out << yes.err;
  EXPECT_THAT(yes.out, HasSubstr("stop " + old[0] + ": ok"));
  EXPECT_THAT(yes.out, HasSubstr("stop " + old[1] + ": ok"));
  std::vector<std::string> fresh = preloaded(2, old);
  ASSERT_EQ(fresh.size(), 2u) << "the pool is refilled from the new description";
  for (const auto& name : old) EXPECT_FALSE(Exists(layout_.QubeDir(name))) << name;
  for (const auto& name : fresh) EXPECT_EQ(memory_limit_mib(name), 320) << name;
  CliResult r = Cli({"run", "--dispvm=dt-pdvm", "hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(fresh, ::testing::Contains(r.out.substr(0, r.out.find('\n'))))
      << "a disposable taken after the apply is one made with the new settings";

  // Removing the template stops them (the one taken above is being replaced).
  std::vector<std::string> pool = preloaded(2, {});
  ASSERT_EQ(pool.size(), 2u);
  ASSERT_TRUE(WriteFileAtomic(next, kSystem));
  CliResult removed = Cli({"apply", next, "--yes"});
  EXPECT_EQ(removed.exit_code, 0) << removed.out << removed.err;
  EXPECT_THAT(removed.out, HasSubstr("- qube dt-pdvm"));
  EXPECT_THAT(removed.out,
              HasSubstr("~ preloaded disposables of dt-pdvm: 2 stopped (template removed)"));
  ExpectNoDisposables();
}

TEST_F(DaemonTest, ApplyShowsDiffAndCarriesItOut) {
  StartDaemon();
  ASSERT_EQ(Cli({"start", "dt-work"}).exit_code, 0);
  int old_pid = List()["dt-work"].value("pid", 0);

  std::string bad = root_ + "/bad.toml";
  ASSERT_TRUE(WriteFileAtomic(bad, "[qubes.x]\nclass = \"app\"\ntemplate = \"nope\"\n"));
  CliResult invalid = Cli({"apply", bad, "--yes"});
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_THAT(invalid.err, HasSubstr("bad.toml"));
  EXPECT_THAT(invalid.err, HasSubstr("nothing was changed"));
  EXPECT_EQ(List()["dt-work"].value("pid", 0), old_pid);

  std::string next_text = kSystem;
  next_text.replace(next_text.find("memory = 512"), 12, "memory = 600");
  next_text.replace(next_text.find("label = \"blue\""), 14, "label = \"green\"");
  next_text +=
      "\n[qubes.dt-new]\nclass = \"app\"\ntemplate = \"dt-base\"\nnetvm = \"none\"\n"
      "autostart = true\n";
  next_text.replace(next_text.find("[qubes.dt-vault]"), 16, "[qubes.dt-gone]");
  std::string next = root_ + "/next.toml";
  ASSERT_TRUE(WriteFileAtomic(next, next_text));

  CliResult dry = Cli({"apply", next, "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("+ qube dt-new (autostart: will be started)"));
  EXPECT_THAT(dry.out, HasSubstr("- qube dt-vault"));
  EXPECT_THAT(dry.out, HasSubstr("~ qube dt-work (running: will be restarted)"));
  EXPECT_THAT(dry.out, HasSubstr("memory: 512 -> 600  [restart]"));
  EXPECT_THAT(dry.out, HasSubstr("label: blue -> green"));
  EXPECT_EQ(StateOf("dt-new"), "absent");

  CliResult no_tty = Cli({"apply", next});
  EXPECT_EQ(no_tty.exit_code, 1);
  EXPECT_THAT(no_tty.out, HasSubstr("Nothing was changed"));
  EXPECT_EQ(StateOf("dt-new"), "absent");

  CliResult yes = Cli({"apply", next, "--yes"});
  EXPECT_EQ(yes.exit_code, 0) << yes.out << yes.err;
  auto l = List();
  EXPECT_EQ(l["dt-new"].value("state", ""), "running");
  EXPECT_EQ(l["dt-work"].value("state", ""), "running");
  EXPECT_NE(l["dt-work"].value("pid", 0), old_pid) << "restarted for the memory change";
  EXPECT_EQ(l["dt-work"].value("memory", 0), 600);
  EXPECT_EQ(l.count("dt-vault"), 0u);
  EXPECT_THAT(Cli({"apply", next, "--dry-run"}).out, HasSubstr("No changes"));
  EXPECT_EQ(Cli({"stop", "--all"}).exit_code, 0);
}

TEST_F(DaemonTest, ClearErrorsAndSingleInstance) {
  CliResult none = Cli({"ls"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("tesserad is not running"));
  EXPECT_THAT(none.err, HasSubstr("tessera daemon"));
  StartDaemon({"--no-autostart"});
  CliResult second = Cli({"--config", config_, "daemon"});
  EXPECT_EQ(second.exit_code, 3);
  EXPECT_THAT(second.err, HasSubstr("already running"));
  // Same state directory, other runtime directory: still refused (it would
  // fight the running daemon over state.json and the private volumes).
  std::string other_run = root_ + "/run2";
  ::setenv("TESSERA_RUNTIME_DIR", other_run.c_str(), 1);
  CliResult shared_state = Cli({"--config", config_, "daemon"});
  ::setenv("TESSERA_RUNTIME_DIR", layout_.runtime_dir.c_str(), 1);
  EXPECT_EQ(shared_state.exit_code, 3) << shared_state.err;
  EXPECT_THAT(shared_state.err, HasSubstr("for state directory"));
  // The running daemon is unaffected.
  EXPECT_EQ(Cli({"ls"}).exit_code, 0);
}

// Ctrl-C in the daemon's terminal signals its whole process group; the qubes
// are not part of it and survive, to be re-adopted by the next daemon.
TEST_F(DaemonTest, CtrlCOnTheDaemonLeavesQubesRunning) {
  StartDaemon({"--no-autostart"});
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  pid_t group = daemon_pid_;
  ASSERT_EQ(::killpg(group, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(daemon_pid_, &status, 0), daemon_pid_);
  daemon_pid_ = -1;
  StartDaemon({"--no-autostart"});
  EXPECT_EQ(StateOf("dt-vault"), "running");
  EXPECT_EQ(Cli({"run", "dt-vault", "echo", "alive"}).out, "alive\n");
  EXPECT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
}

// A disposable's work ends when its caller goes away: killing the CLI in the
// middle of a long command destroys the disposable.
TEST_F(DaemonTest, DisposableGoesWhenItsCallerGoesAway) {
  StartDaemon({"--no-autostart"});
  pid_t cli = SpawnCli({"run", "--dispvm", "--", "sleep", "60"});
  ASSERT_GE(cli, 0);
  bool running = false;
  for (int i = 0; i < 250 && !running; ++i) {
    for (const auto& [name, q] : List()) {
      if (name.rfind("disp", 0) == 0 && q.value("state", "") == "running") running = true;
    }
    if (!running) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(running) << "the disposable never ran";
  ::kill(cli, SIGKILL);
  ::waitpid(cli, nullptr, 0);
  ExpectNoDisposables();
  EXPECT_THAT(AuditText(), HasSubstr("\"destroyed\""));
}

TEST_F(DaemonTest, NonAdminIsRefusedAndAudited) {
  StartDaemon({"--admin-group", "tessera-test-no-such-group"});
  EXPECT_EQ(CallAs(65534, 65534, {}, "qube.start", {{"qube", "dt-work"}}), "permission_denied");
  EXPECT_EQ(StateOf("dt-work"), "halted");
  std::string audit = AuditText();
  EXPECT_THAT(audit, HasSubstr("\"result\":\"denied\""));
  EXPECT_THAT(audit, HasSubstr("\"uid\":65534"));
  EXPECT_THAT(audit, HasSubstr("\"method\":\"qube.start\""));
}

// Members of the admin group (primary or supplementary, via SO_PEERGROUPS)
// are served like root.
TEST_F(DaemonTest, AdminGroupMembersAreServed) {
  StartDaemon({"--admin-group", "nogroup"});
  const gid_t nogroup = 65534;
  EXPECT_EQ(CallAs(65534, nogroup, {}, "qube.list", json::object()), "ok") << "primary group";
  EXPECT_EQ(CallAs(65534, 12345, {nogroup}, "qube.list", json::object()), "ok")
      << "supplementary group";
  EXPECT_EQ(CallAs(65534, 12345, {}, "qube.list", json::object()), "permission_denied")
      << "in neither";
  std::string audit = AuditText();
  size_t denied = 0;
  for (size_t p = 0; (p = audit.find("\"result\":\"denied\"", p)) != std::string::npos; ++p) {
    ++denied;
  }
  EXPECT_EQ(denied, 1u) << "only the non-member";
}

TEST_F(DaemonTest, AutostartQubesStartWithTheDaemonUnlessTurnedOff) {
  std::string system = kSystem;
  std::string vault = "[qubes.dt-vault]\nclass = \"app\"\n";
  system.replace(system.find(vault), vault.size(), vault + "autostart = true\n");
  ASSERT_TRUE(WriteFileAtomic(config_, system));

  StartDaemon({"--no-autostart"});
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(StateOf("dt-vault"), "halted") << "--no-autostart";
  KillDaemon(SIGTERM);

  StartDaemon();
  EXPECT_TRUE(WaitForState("dt-vault", "running", 20s));
  EXPECT_EQ(StateOf("dt-work"), "halted") << "only autostart qubes";
  CliResult run = Cli({"run", "dt-vault", "hostname"});
  EXPECT_EQ(run.out, "dt-vault\n") << run.err;
}

// A disposable made by `start --dispvm` goes after its template's
// idle_timeout without a running command, but never during one.
TEST_F(DaemonTest, IdleDisposableIsDestroyedAfterItsTimeout) {
  std::string system = kSystem;
  std::string dvm = "[qubes.dt-dvm]\nclass = \"disposable-template\"\n";
  // 2 s: the `run` below must reach it before that even on a loaded ASan
  // run (1 s was not always enough for the CLI to start).
  system.replace(system.find(dvm), dvm.size(), dvm + "idle_timeout = 2\n");
  ASSERT_TRUE(WriteFileAtomic(config_, system));
  StartDaemon();

  CliResult start = Cli({"start", "--dispvm=dt-dvm"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  std::string name = start.out.substr(0, start.out.find('\n'));
  ASSERT_THAT(name, ::testing::StartsWith("disp"));
  // A command longer than the timeout keeps it alive...
  CliResult busy = Cli({"run", name, "--", "sh", "-c", "sleep 4; echo still-here"});
  EXPECT_EQ(busy.exit_code, 0) << busy.err;
  EXPECT_EQ(busy.out, "still-here\n");
  // ...and once idle it goes by itself, leaving nothing.
  ExpectNoDisposables();
  EXPECT_THAT(AuditText(), HasSubstr("\"action\":\"idle_timeout\""));
}

// `tessera events` follows the stream line by line (also into a pipe), and a
// qube whose cell dies on its own is marked failed with the reason.
TEST_F(DaemonTest, EventsFollowLifecycleAndADeadCellIsFailedWithAReason) {
  StartDaemon();
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  pid_t events = ::fork();
  ASSERT_GE(events, 0);
  if (events == 0) {
    ::dup2(out[1], 1);
    std::string cli = TESSERA_CLI;
    std::vector<char*> argv = {cli.data(), const_cast<char*>("events"), nullptr};
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  // Read lines until one names dt-vault in `state`, within a bound.
  std::string seen;
  auto wait_line = [&](const std::string& state) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::istringstream lines(seen);
      for (std::string line; std::getline(lines, line);) {
        if (line.find("dt-vault") != std::string::npos && line.find(state) != std::string::npos) {
          return true;
        }
      }
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 200) > 0) {
        char buf[4096];
        ssize_t n = ::read(out[0], buf, sizeof(buf));
        if (n <= 0) return false;
        seen.append(buf, static_cast<size_t>(n));
      }
    }
    return false;
  };
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  EXPECT_TRUE(wait_line("running")) << seen;

  // The cell's init dies behind the daemon's back.
  json vault = List()["dt-vault"];
  ASSERT_TRUE(vault.contains("pid")) << vault.dump();
  pid_t init = vault["pid"].get<pid_t>();
  ASSERT_EQ(::kill(init, SIGKILL), 0);
  EXPECT_TRUE(wait_line("failed")) << seen;
  EXPECT_THAT(seen, HasSubstr("cell exited unexpectedly"));
  json failed = List()["dt-vault"];
  EXPECT_EQ(failed.value("state", ""), "failed");
  EXPECT_EQ(failed.value("reason", ""), "cell exited unexpectedly");
  ExpectNoLeftovers("dt-vault");
  // A failed qube starts again.
  CliResult again = Cli({"run", "dt-vault", "true"});
  EXPECT_EQ(again.exit_code, 0) << again.err;

  ::kill(events, SIGTERM);
  ::waitpid(events, nullptr, 0);
  ::close(out[0]);
}

// Under systemd (Type=notify) the daemon says READY=1 once it serves and
// STOPPING=1 on the way out; the protocol is a datagram on $NOTIFY_SOCKET,
// tested here with a socket of our own (no systemd on this machine).
TEST_F(DaemonTest, ReadinessAndStoppingAreNotified) {
  std::string path = root_ + "/notify.sock";
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval timeout{20, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  StartDaemon();
  ::unsetenv("NOTIFY_SOCKET");
  auto next = [&] {
    char buf[512];
    ssize_t n = ::recv(sock.get(), buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("(nothing)");
  };
  EXPECT_EQ(next(), "READY=1");
  KillDaemon(SIGTERM);
  EXPECT_EQ(next(), "STOPPING=1");
}

// SIGKILL of the daemon in the middle of start, run, stop and disposable
// teardown; after each restart the host must be consistent.
TEST_F(DaemonTest, CrashRecovery) {
  StartDaemon({"--no-autostart"});
  ASSERT_EQ(Cli({"run", "dt-vault", "sh", "-c", "echo keep > /home/user/marker"}).exit_code, 0);
  ASSERT_TRUE(VolumeHas("dt-vault", "home/user/marker"));

  // 1. During start (dt-work, whose netvm dt-net starts first).
  KillDaemonWhen("dt-work", "starting", [&] { Cli({"start", "dt-work"}); });
  StartDaemon({"--no-autostart"});
  {
    auto l = List();
    EXPECT_EQ(l["dt-vault"].value("state", ""), "running") << "re-adopted";
    EXPECT_NE(l["dt-work"].value("state", ""), "starting");
    if (l["dt-work"].value("state", "") != "running") ExpectNoLeftovers("dt-work");
    CliResult r = Cli({"run", "dt-vault", "cat", "/home/user/marker"});
    EXPECT_EQ(r.out, "keep\n") << "re-adopted qube usable: " << r.err;
  }

  // 2. During run.
  {
    std::thread runner([&] { Cli({"run", "dt-vault", "sleep", "2"}); });
    std::this_thread::sleep_for(300ms);
    KillDaemon(SIGKILL);
    runner.join();
    StartDaemon({"--no-autostart"});
    EXPECT_EQ(StateOf("dt-vault"), "running");
    EXPECT_EQ(Cli({"run", "dt-vault", "true"}).exit_code, 0);
  }

  // 3. During stop.
  KillDaemonWhen("dt-vault", "stopping", [&] { Cli({"stop", "dt-vault"}); });
  StartDaemon({"--no-autostart"});
  EXPECT_EQ(StateOf("dt-vault"), "halted");
  ExpectNoLeftovers("dt-vault");
  EXPECT_TRUE(VolumeHas("dt-vault", "home/user/marker")) << "private volume kept";

  // 4. During disposable teardown, and during a disposable's command.
  KillDaemonWhen("disp", "stopping", [&] { Cli({"run", "--dispvm", "true"}); });
  StartDaemon({"--no-autostart"});
  ExpectNoDisposables();
  KillDaemonWhen("disp", "running", [&] { Cli({"run", "--dispvm", "sleep", "1"}); });
  StartDaemon({"--no-autostart"});
  ExpectNoDisposables();

  // Everything still works, and stops cleanly.
  EXPECT_EQ(Cli({"run", "dt-vault", "cat", "/home/user/marker"}).out, "keep\n");
  EXPECT_EQ(Cli({"stop", "--all"}).exit_code, 0);
  for (const char* q : {"dt-net", "dt-work", "dt-vault"}) ExpectNoLeftovers(q);
  EXPECT_TRUE(VolumeHas("dt-vault", "home/user/marker"));
  EXPECT_THAT(AuditText(), HasSubstr("\"kind\":\"recovery\""));
}

}  // namespace
}  // namespace tessera::daemon_testing
