// Inter-qube RPC from the host (`tessera call`), end to end through a real
// daemon, real cells and real policy files: allow, deny, redirect,
// autostart=no, @dispvm, missing services, argument rules, exit codes,
// stderr and EOF, the QREXEC_* environment, 64 MiB both ways, policy reloads
// (a broken edit keeps the last good policy), and the audit line per call.

#include <iostream>

#include "integration/daemon/daemon_fixture.h"
#include "wire/agent_protocol.h"
#include "wire/filecopy.h"
#include "wire/socket_io.h"

namespace tessera::daemon_testing {
namespace {

using ::testing::Not;

constexpr const char* kPolicy = R"(# tests
test.Echo      *  *  dt-work   allow
test.Echo      *  *  dt-vault  deny
test.Err       *  *  dt-work   allow
test.Env       *  *  dt-work   allow
test.Root      *  *  dt-work   allow user=root
test.Missing   *  *  dt-work   allow
test.Where     *  *  dt-vault  allow target=dt-work
test.NoStart   *  *  dt-vault  allow autostart=no
test.Disp      *  *  @dispvm   allow
test.Ask       *  *  dt-work   ask
test.Choose    *  dt-vault  @anyvm   ask default_target=dt-work
test.Sock      *  *  dt-work   allow
test.Fast      *  dt-vault  dt-work   allow
test.Late      *  *  dt-work   deny
test.Q         *  dt-vault  dt-work   allow
test.Q         *  dt-vault  @dispvm   allow
test.Q         *  dt-work   dt-vault  deny
test.Slow      *  dt-vault  dt-work   allow
test.Slow      *  dt-net    dt-work   allow
qubes.Filecopy *  dt-vault  dt-work   allow
qubes.GetDate  *  dt-vault  @adminvm  allow
test.Host      *  dt-vault  @adminvm  allow
qubes.WaitForSession  *  *  dt-work  allow
qubes.Filecopy *  dt-vault  @default  allow target=dt-work
)";

class RpcTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (IsSkipped()) return;
    policy_dir_ = root_ + "/policy.d";
    ASSERT_TRUE(MakeDirs(policy_dir_, 0755));
    ASSERT_TRUE(WriteFileAtomic(policy_dir_ + "/50-test.policy", kPolicy));
    std::string system = "policy_dir = \"" + policy_dir_ + "\"\n" + kSystem;
    ASSERT_TRUE(WriteFileAtomic(config_, system));
  }

  std::string policy_dir_;
};

TEST_F(RpcTest, AllowedCallRunsTheServiceWithItsStreamsAndStatus) {
  StartDaemon();
  Install("dt-work", "test.Echo", "#!/bin/sh\ncat\necho done >&2\n");
  Install("dt-work", "test.Err", "#!/bin/sh\necho oops >&2\nexit 3\n");
  CliResult r = Cli({"call", "dt-work", "test.Echo"}, "hello\nworld\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello\nworld\n");  // EOF of stdin reached cat: it ended
  EXPECT_EQ(r.err, "done\n");
  r = Cli({"call", "dt-work", "test.Err"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "oops\n");
  auto lines = CallLines("test.Echo");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["source"], "dom0");
  EXPECT_EQ(lines[0]["requested_target"], "dt-work");
  EXPECT_EQ(lines[0]["target"], "dt-work");
  EXPECT_EQ(lines[0]["decision"], "allow");
  EXPECT_THAT(lines[0]["rule"].get<std::string>(), HasSubstr("50-test.policy:2"));
  EXPECT_EQ(lines[0]["exit_status"], 0);
  EXPECT_EQ(lines[0]["bytes_in"], 12);
  EXPECT_EQ(lines[0]["bytes_out"], 17);  // 12 of stdout, 5 of stderr
  EXPECT_TRUE(lines[0]["duration_ms"].is_number());
}

TEST_F(RpcTest, ServiceGetsItsArgumentEnvironmentAndUser) {
  StartDaemon();
  const char* script =
      "#!/bin/sh\n"
      "echo \"argv1=$1 remote=$QREXEC_REMOTE_DOMAIN full=$QREXEC_SERVICE_FULL_NAME "
      "arg=${QREXEC_SERVICE_ARGUMENT-unset} target=$QREXEC_REQUESTED_TARGET uid=$(id -u)\"\n";
  Install("dt-work", "test.Env", script);
  Install("dt-work", "test.Root", script);
  CliResult r = Cli({"call", "dt-work", "test.Env+some.arg"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "argv1=some.arg remote=dom0 full=test.Env+some.arg arg=some.arg target=dt-work "
            "uid=1000\n");
  r = Cli({"call", "dt-work", "test.Env"});
  EXPECT_EQ(r.out, "argv1= remote=dom0 full=test.Env arg=unset target=dt-work uid=1000\n");
  r = Cli({"call", "dt-work", "test.Root"});
  EXPECT_THAT(r.out, HasSubstr("uid=0\n")) << "user=root in the rule";
  // SERVICE+ARG is looked up before SERVICE.
  Install("dt-work", "test.Env+special", "#!/bin/sh\necho specific\n");
  r = Cli({"call", "dt-work", "test.Env+special"});
  EXPECT_EQ(r.out, "specific\n");
}

TEST_F(RpcTest, DeniedCallsSayOnlyRefusedAndStartNothing) {
  StartDaemon();
  CliResult r = Cli({"call", "dt-vault", "test.Echo"});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_EQ(r.err, "tessera call: Request refused\n");
  // No rule at all: denied as well.
  r = Cli({"call", "dt-vault", "test.Unknown"});
  EXPECT_EQ(r.exit_code, 126);
  // autostart=no and the target halted.
  r = Cli({"call", "dt-vault", "test.NoStart"});
  EXPECT_EQ(r.exit_code, 126);
  // ask: no prompt to ask, never allowed.
  r = Cli({"call", "dt-work", "test.Ask"});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_EQ(StateOf("dt-vault"), "halted");
  EXPECT_EQ(StateOf("dt-work"), "halted");
  auto lines = CallLines("test.Echo");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["decision"], "deny");
  EXPECT_THAT(lines[0]["reason"].get<std::string>(), HasSubstr("50-test.policy:3"));
  EXPECT_EQ(lines[0]["exit_status"], 126);
  ASSERT_EQ(CallLines("test.Ask").size(), 1u);
  EXPECT_EQ(CallLines("test.Ask")[0]["decision"], "ask");
}

TEST_F(RpcTest, InvalidRequestsAreRefusedBeforeThePolicy) {
  StartDaemon();
  for (const char* bad :
       {"test.Echo+a/b", "test/Echo", "*", "test.Echo+..", "", "test.Echo+a b", "test.Echo\n"}) {
    CliResult r = Cli({"call", "dt-work", bad});
    EXPECT_EQ(r.exit_code, 126) << bad << ": " << r.err;
  }
  CliResult r = Cli({"call", "@tag:x", "test.Echo"});
  EXPECT_EQ(r.exit_code, 126) << "not a target a caller may name";
  r = Cli({"call", "dt-work", std::string(300, 'a')});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_EQ(StateOf("dt-work"), "halted");
  EXPECT_THAT(AuditText(), HasSubstr("invalid request: service 'test/Echo' contains invalid"));
}

TEST_F(RpcTest, MissingServiceIs127AndUsrLocalServicesPersist) {
  StartDaemon();
  CliResult r = Cli({"call", "dt-work", "test.Missing"});
  EXPECT_EQ(r.exit_code, 127) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no such service"));
  Install("dt-work", "test.Echo", "#!/bin/sh\necho persisted\n");
  ASSERT_EQ(Cli({"stop", "dt-work"}).exit_code, 0);
  // Started again by the call (autostart), the service is still there.
  r = Cli({"call", "dt-work", "test.Echo"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "persisted\n");
  EXPECT_TRUE(VolumeHas("dt-work", "usrlocal/etc/qubes-rpc/test.Echo"));
  // Not executable: a failure (125), never the "refused" 126.
  ASSERT_EQ(Cli({"run", "-u", "root", "dt-work", "--", "chmod", "644",
                 "/usr/local/etc/qubes-rpc/test.Echo"})
                .exit_code,
            0);
  r = Cli({"call", "dt-work", "test.Echo"});
  EXPECT_EQ(r.exit_code, 125) << r.err;
}

TEST_F(RpcTest, RedirectAndDisposableTargets) {
  StartDaemon();
  Install("dt-work", "test.Where", "#!/bin/sh\necho in-work\n");
  CliResult r = Cli({"call", "dt-vault", "test.Where"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "in-work\n");
  EXPECT_EQ(StateOf("dt-vault"), "halted") << "target= sent the call elsewhere";
  // A disposable of the default disposable template runs the service and is
  // gone when the call ends; the service comes from the template's /usr/local.
  Install("dt-dvm", "test.Disp",
          "#!/bin/sh\necho \"disposable $QREXEC_REQUESTED_TARGET\"\nls /home/user\n");
  ASSERT_EQ(Cli({"stop", "dt-dvm"}).exit_code, 0);
  r = Cli({"call", "@dispvm", "test.Disp"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "disposable @dispvm\n");
  auto lines = CallLines("test.Disp");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0]["target"].get<std::string>(), ::testing::StartsWith("disp"));
  EXPECT_EQ(lines[0]["requested_target"], "@dispvm");
  ExpectNoDisposables();
}

TEST_F(RpcTest, SixtyFourMiBBothWaysAtOnce) {
  StartDaemon();
  Install("dt-work", "test.Echo", "#!/bin/sh\nexec cat\n");
  std::string data(64u << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919u) >> 5);
  CliResult r = Cli({"call", "dt-work", "test.Echo"}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.size(), data.size());
  EXPECT_TRUE(r.out == data);
  auto lines = CallLines("test.Echo");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["bytes_in"], data.size());
  EXPECT_EQ(lines[0]["bytes_out"], data.size());
}

TEST_F(RpcTest, PolicyEditsApplyToTheNextCallAndABrokenEditKeepsTheLastGood) {
  StartDaemon();
  Install("dt-work", "test.Late", "#!/bin/sh\necho late\n");
  EXPECT_EQ(Cli({"call", "dt-work", "test.Late"}).exit_code, 126);
  auto client = wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock");
  ASSERT_TRUE(client);
  auto sub = client->Call("events.subscribe", json::object());
  ASSERT_TRUE(sub && sub->ok);
  auto wait_policy_event = [&]() -> json {
    for (int i = 0; i < 100; ++i) {
      auto ev = client->NextEvent();
      if (!ev) break;
      if (ev->value("event", "") == "policy") return *ev;
    }
    return json();
  };
  std::string edited = kPolicy;
  edited.replace(edited.find("test.Late      *  *  dt-work   deny"), 35,
                 "test.Late      *  *  dt-work   allow");
  ASSERT_TRUE(WriteFileAtomic(policy_dir_ + "/50-test.policy", edited));
  json ev = wait_policy_event();
  EXPECT_EQ(ev.value("ok", false), true) << ev.dump();
  CliResult r = Cli({"call", "dt-work", "test.Late"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "late\n");
  // A broken file: reported, and the last good policy stays in force.
  ASSERT_TRUE(WriteFileAtomic(policy_dir_ + "/60-broken.policy", "test.X * * dt-work maybe\n"));
  ev = wait_policy_event();
  EXPECT_EQ(ev.value("ok", true), false) << ev.dump();
  EXPECT_THAT(ev.dump(), HasSubstr("60-broken.policy:1"));
  r = Cli({"call", "dt-work", "test.Late"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(AuditText(), HasSubstr("\"action\":\"reload_failed\""));
  auto info = wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock");
  ASSERT_TRUE(info);
  auto reply = info->Call("daemon.info", json::object());
  ASSERT_TRUE(reply && reply->ok);
  EXPECT_EQ(reply->result["policy"]["loaded"], true);
  EXPECT_THAT(reply->result["policy"]["errors"].dump(), HasSubstr("60-broken.policy:1"));
}

TEST_F(RpcTest, AnAdminMayCallAsAQubeAndTheAuditSaysSo) {
  StartDaemon();
  Install("dt-work", "test.Env", "#!/bin/sh\necho \"from $QREXEC_REMOTE_DOMAIN\"\n");
  CliResult r = Cli({"call", "--source", "dt-vault", "dt-work", "test.Env"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "from dt-vault\n");
  auto lines = CallLines("test.Env");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["source"], "dt-vault");
  EXPECT_EQ(lines[0]["impersonated_by"], 0);
  r = Cli({"call", "--source", "no-such", "dt-work", "test.Env"});
  EXPECT_EQ(r.exit_code, 125);
  EXPECT_EQ(Cli({"call", "dt-work"}).exit_code, 2);
  EXPECT_EQ(Cli({"call", "--timeout", "x", "dt-work", "test.Env"}).exit_code, 2);
}

// Calls from inside a qube: tessera-call (and qrexec-client-vm) through the
// qube's agent and the daemon to the service in another qube.
TEST_F(RpcTest, AQubeCallsAServiceInAnotherQube) {
  StartDaemon();
  Install("dt-work", "test.Q",
          "#!/bin/sh\necho \"from $QREXEC_REMOTE_DOMAIN for $QREXEC_REQUESTED_TARGET\"\n"
          "cat\necho err >&2\nexit 5\n");
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q"}, "payload\n");
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_EQ(r.out, "from dt-vault for dt-work\npayload\n");
  EXPECT_EQ(r.err, "err\n");
  auto lines = CallLines("test.Q");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["source"], "dt-vault") << "the source is the channel's qube";
  EXPECT_EQ(lines[0]["target"], "dt-work");
  EXPECT_EQ(lines[0]["bytes_in"], 8);
  // Qubes' name, and a denied call: only "Request refused", 126.
  r = Cli({"run", "dt-work", "--", "qrexec-client-vm", "dt-vault", "test.Q"});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_EQ(r.err, "qrexec-client-vm: Request refused\n");
  EXPECT_EQ(CallLines("test.Q").back()["source"], "dt-work");
  // A local program: its stdin is the service's stdout, its stdout the
  // service's stdin.
  r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q", "/bin/sh", "-c",
           "read greeting; echo \"local read: $greeting\" >&2; echo back"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_THAT(r.err, HasSubstr("local read: from dt-vault for dt-work"));
  // A service that ends without reading its input: the caller, still
  // sending, gets the service's status, never "no status" (repeated: it is
  // a race between its writes and the call's end).
  Install("dt-work", "test.Fast", "#!/bin/sh\nexit 7\n");
  r = Cli(
      {"run", "dt-vault", "--", "/bin/sh", "-c",
       "i=0; while [ $i -lt 20 ]; do head -c 1000000 /dev/zero | tessera-call dt-work test.Fast; "
       "echo -n $?; i=$((i+1)); done"});
  EXPECT_EQ(r.out, std::string(20, '7')) << r.err;
  // A disposable for the caller: its default_dispvm (the system's here).
  Install("dt-dvm", "test.Q", "#!/bin/sh\necho disposable\n");
  ASSERT_EQ(Cli({"stop", "dt-dvm"}).exit_code, 0);
  r = Cli({"run", "dt-vault", "--", "tessera-call", "@dispvm", "test.Q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "disposable\n");
  ExpectNoDisposables();
}

TEST_F(RpcTest, SixtyFourMiBBetweenQubesBothWaysAtOnce) {
  StartDaemon();
  Install("dt-work", "test.Q", "#!/bin/sh\nexec cat\n");
  std::string data(64u << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  // --relay: the bytes cross this test's pipe, the caller's agent, the
  // daemon, the target's agent and back.
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q"}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.size(), data.size());
  EXPECT_TRUE(r.out == data);
  // Between cells the streams go pipe to pipe past the daemon, which still
  // counts every byte.
  auto lines = CallLines("test.Q");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["bytes_in"], data.size());
  EXPECT_EQ(lines[0]["bytes_out"], data.size());
  // A reader that goes away: the service writing on gets EPIPE and ends,
  // as it would writing into a pipe.
  Install("dt-work", "test.Slow", "#!/bin/sh\nexec cat /dev/zero\n");
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
           "tessera-call dt-work test.Slow | head -c 100000 | wc -c"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "100000\n");
  lines = CallLines("test.Slow");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["exit_status"], 141) << "128 + SIGPIPE";
}

TEST_F(RpcTest, PipedStreamsEndAsTheServiceDoes) {
  StartDaemon();
  // A service that leaves a process holding its stdout: the call ends when
  // the service does (as a framed call does), with all it wrote.
  Install("dt-work", "test.Q", "#!/bin/sh\necho before\n(sleep 30 &)\necho after\n");
  auto begun = std::chrono::steady_clock::now();
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "before\nafter\n");
  EXPECT_LT(std::chrono::steady_clock::now() - begun, std::chrono::seconds(20))
      << "the background process held the call";
  // Started with stdin closed: /dev/null stands in, the call works.
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c", "tessera-call dt-work test.Q <&-"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "before\nafter\n");
  // Output that cannot be written (a full disk): the call fails, never 0.
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
           "test -c /dev/full || { echo no-dev-full; exit 0; }; "
           "tessera-call dt-work test.Q > /dev/full; echo \"status $?\""});
  if (r.out != "no-dev-full\n") {
    EXPECT_EQ(r.out, "status 125\n") << r.err;
    EXPECT_THAT(r.err, HasSubstr("passing on the output of the service"));
  } else {
    std::cout << "[  SKIP    ] /dev/full is not in the qube: the full-disk case is not run\n";
  }
}

// The agent's socket seen from the host (the test's way in as a hostile
// program of the qube).
std::string AgentSocketOf(const json& qube) {
  return "/proc/" + std::to_string(qube.value("pid", 0)) + "/root/run/tessera/agent.sock";
}

UniqueFd ConnectTo(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  return fd;
}

// True when the peer closed the connection (within a few seconds).
bool ClosedByPeer(int fd) {
  pollfd p{fd, POLLIN, 0};
  for (int i = 0; i < 50; ++i) {
    if (::poll(&p, 1, 100) > 0) {
      char buf[256];
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
    }
  }
  return false;
}

TEST_F(RpcTest, AHostileCallerLosesOnlyItsOwnConnection) {
  StartDaemon();
  Install("dt-work", "test.Q", "#!/bin/sh\necho ok\n");
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  std::string sock = AgentSocketOf(List()["dt-vault"]);
  // Garbage.
  UniqueFd garbage = ConnectTo(sock);
  ASSERT_TRUE(garbage) << sock;
  ASSERT_EQ(::write(garbage.get(), "GET / HTTP/1.0\r\n\r\n", 18), 18);
  EXPECT_TRUE(ClosedByPeer(garbage.get()));
  // A call that names its own source: refused by the agent's strict reader.
  UniqueFd liar = ConnectTo(sock);
  ASSERT_TRUE(wire::WriteFrame(liar.get(), wire::FrameType::kCall, 1, 0,
                               R"({"target":"dt-work","service":"test.Q","source":"dom0"})"));
  EXPECT_TRUE(ClosedByPeer(liar.get()));
  // An oversized frame header.
  UniqueFd big = ConnectTo(sock);
  std::string header = wire::EncodeFrame(wire::FrameType::kCall, 1, 0, "{}");
  header[0] = header[1] = header[2] = '\xff';
  ASSERT_EQ(::write(big.get(), header.data(), header.size()), static_cast<ssize_t>(header.size()));
  EXPECT_TRUE(ClosedByPeer(big.get()));
  // Stdin before the host granted any.
  UniqueFd eager = ConnectTo(sock);
  ASSERT_TRUE(wire::WriteFrame(eager.get(), wire::FrameType::kCall, 1, 0,
                               R"({"target":"dt-work","service":"test.Slow"})"));
  ASSERT_TRUE(wire::WriteFrame(eager.get(), wire::FrameType::kData, 1, 0, "early"));
  EXPECT_TRUE(ClosedByPeer(eager.get()));
  // Nothing of it reached the daemon as a call from anyone else, and the
  // qube's calls still work.
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
  for (const json& line : CallLines("test.Q")) EXPECT_EQ(line["source"], "dt-vault");
  EXPECT_EQ(StateOf("dt-vault"), "running");
}

// Daemon memory (VmRSS, KiB).
long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

TEST_F(RpcTest, AFloodOfCallsSlowsOnlyTheQubeThatMakesIt) {
  StartDaemon();
  Install("dt-work", "test.Slow", "#!/bin/sh\nsleep 0.2\necho done\n");
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  ASSERT_EQ(Cli({"start", "dt-net"}).exit_code, 0);
  long rss_before = RssKiB(daemon_pid_);
  // 1,000 calls at once from dt-vault: 64 run, the rest wait their turn.
  pid_t flood = SpawnCli({"run", "dt-vault", "--", "/bin/sh", "-c",
                          "i=0; while [ $i -lt 1000 ]; do tessera-call dt-work test.Slow "
                          ">/dev/null 2>&1 & i=$((i+1)); done; wait"});
  ASSERT_GT(flood, 0);
  std::this_thread::sleep_for(1s);
  // Another qube's call goes through meanwhile, without waiting for the flood.
  auto begun = std::chrono::steady_clock::now();
  CliResult r = Cli({"run", "dt-net", "--", "tessera-call", "dt-work", "test.Slow"});
  auto took = std::chrono::steady_clock::now() - begun;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "done\n");
  EXPECT_LT(took, 10s) << "waited behind the flood";
  long rss_during = RssKiB(daemon_pid_);
  int status = 0;
  ASSERT_EQ(::waitpid(flood, &status, 0), flood);
  size_t vault_calls = 0;
  for (const json& line : CallLines("test.Slow")) {
    if (line["source"] == "dt-vault") ++vault_calls;
  }
  EXPECT_EQ(vault_calls, 1000u) << "every call of the flood completed, in turn";
  std::cout << "daemon VmRSS before " << rss_before << " KiB, during the flood " << rss_during
            << " KiB\n";
  EXPECT_LT(rss_during - rss_before, 64 * 1024) << "daemon memory bounded";
}

TEST_F(RpcTest, DenialsRaiseEventsRateLimitedPerQube) {
  StartDaemon();
  ASSERT_EQ(Cli({"start", "dt-work"}).exit_code, 0);
  auto client = wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock");
  ASSERT_TRUE(client);
  auto sub = client->Call("events.subscribe", json::object());
  ASSERT_TRUE(sub && sub->ok);
  auto begun = std::chrono::steady_clock::now();
  CliResult r = Cli({"run", "dt-work", "--", "/bin/sh", "-c",
                     "i=0; while [ $i -lt 100 ]; do tessera-call dt-vault test.Q 2>/dev/null; "
                     "i=$((i+1)); done; tessera-call dt-vault test.Q"});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begun).count();
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_EQ(r.err, "tessera-call: Request refused\n");
  // One more after a pause: its event carries the count of those not sent.
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(Cli({"call", "--source", "dt-work", "dt-vault", "test.Q"}).exit_code, 126);
  int events = 0;
  uint64_t suppressed = 0;
  for (int i = 0; i < 300 && static_cast<uint64_t>(events) + suppressed < 102; ++i) {
    std::optional<json> ev;
    if (auto buffered = client->BufferedFrame(); buffered && *buffered) {
      ev = json::parse((*buffered)->payload, nullptr, false);
    } else {
      pollfd p{client->fd(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      auto next = client->NextEvent();
      if (!next) break;
      ev = *next;
    }
    if (ev->value("event", "") != "rpc_denied") continue;
    EXPECT_EQ(ev->value("source", ""), "dt-work");
    EXPECT_EQ(ev->value("service", ""), "test.Q");
    ++events;
    suppressed += ev->value("suppressed", uint64_t{0});
  }
  seconds += 1.1;
  EXPECT_GE(events, 1);
  EXPECT_LE(events, 5 + static_cast<int>(seconds) + 1) << "rate-limited: 1/s, bursts of 5";
  EXPECT_GT(suppressed, 0u) << "the rest are counted";
  EXPECT_EQ(static_cast<uint64_t>(events) + suppressed, 102u) << "each denial once";
}

TEST_F(RpcTest, KillingTheDaemonDuringACallLeavesNoDisposable) {
  StartDaemon();
  Install("dt-dvm", "test.Disp", "#!/bin/sh\nsleep 30\n");
  ASSERT_EQ(Cli({"stop", "dt-dvm"}).exit_code, 0);
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  // The service marks that it runs: the daemon is killed with the call
  // truly in flight, not while the caller is still starting.
  Install("dt-work", "test.Q", "#!/bin/sh\ntouch /home/user/q-started\nsleep 30\n");
  CliResult from_host;
  CliResult from_qube;
  KillDaemonWhen("disp", "running", [&] { from_host = Cli({"call", "@dispvm", "test.Disp"}); });
  EXPECT_EQ(from_host.exit_code, 125) << "the caller learns the call failed";
  StartDaemon({"--no-autostart"});
  ExpectNoDisposables();
  // A qube's call in flight: its caller gets 125 too, and the qube's calls
  // work again with the new daemon.
  std::thread caller([&] {
    from_qube = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q"});
  });
  bool started = false;
  for (int i = 0; i < 300 && !started; ++i) {
    int pid = List()["dt-work"].value("pid", 0);
    std::string marker = "/proc/" + std::to_string(pid) + "/root/home/user/q-started";
    started = pid > 0 && ::access(marker.c_str(), F_OK) == 0;
    if (!started) std::this_thread::sleep_for(50ms);
  }
  KillDaemon(SIGKILL);
  caller.join();
  ASSERT_TRUE(started) << "the service never ran: " << from_qube.err;
  EXPECT_EQ(from_qube.exit_code, 125) << from_qube.err;
  StartDaemon({"--no-autostart"});
  Install("dt-work", "test.Q", "#!/bin/sh\necho again\n");
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "again\n");
}

// A service that is a Unix socket: the descriptor line first, then the
// caller's stdin (its end half-closes the socket), the service's answer
// back, status 0 when it closes. The listener is this test, bound through
// the running qube's root into its /usr/local.
TEST_F(RpcTest, ASocketServiceGetsTheDescriptorLineThenTheStreams) {
  StartDaemon();
  Install("dt-work", "test.Placeholder", "#!/bin/sh\n");  // makes the directory
  std::string dir = "/proc/" + std::to_string(List()["dt-work"].value("pid", 0)) +
                    "/root/usr/local/etc/qubes-rpc";
  std::string path = dir + "/test.Sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
  ASSERT_EQ(::chmod(path.c_str(), 0777), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  std::string received;
  std::thread service([&] {
    pollfd p{listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) return;
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char buf[4096];
    ssize_t n;
    while ((n = ::read(conn.get(), buf, sizeof(buf))) > 0)
      received.append(buf, static_cast<size_t>(n));
    // The caller's EOF arrived (half-close): answer, then close.
    std::string answer = "got " + std::to_string(received.size()) + " bytes\n";
    (void)!::write(conn.get(), answer.data(), answer.size());
  });
  CliResult r = Cli({"call", "dt-work", "test.Sock+arg1"}, "hello");
  service.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(received, std::string("test.Sock+arg1 dom0\0hello", 25));
  EXPECT_EQ(r.out, "got 25 bytes\n");
  ::unlink(path.c_str());
}

// The stubs Qubes users' scripts expect: qubes.GetDate from dom0 (the
// daemon answers), qubes.WaitForSession in every qube.
TEST_F(RpcTest, GetDateFromDom0AndWaitForSession) {
  StartDaemon();
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "@adminvm", "qubes.GetDate"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out,
              ::testing::MatchesRegex("20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-9:]{8}\\+00:00\n"));
  // Any other service of dom0: not there (127), not a failure.
  r = Cli({"run", "dt-vault", "--", "tessera-call", "dom0", "test.Host"});
  EXPECT_EQ(r.exit_code, 127) << r.err;
  r = Cli({"call", "dt-work", "qubes.WaitForSession"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(CallLines("qubes.GetDate").at(0)["target"], "dom0");
}

// qubes.Filecopy between qubes: tessera-copy, qvm-copy, qvm-move.
TEST_F(RpcTest, FilecopyCopiesATreeWithModesTimesAndLinks) {
  StartDaemon();
  CliResult r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
                     "mkdir -p tree/sub && printf hello > tree/a && chmod 4755 tree/a && "
                     "printf data > tree/sub/b && chmod 640 tree/sub/b && ln -s sub/b tree/l && "
                     "touch -t 202001020304.05 tree/a tree/sub/b && "
                     "tessera-copy --to dt-work tree && echo copied"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "copied\n");
  r = Cli({"run", "dt-work", "--", "/bin/sh", "-c",
           "cd QubesIncoming/dt-vault/tree && cat a sub/b && echo && "
           "stat -c '%n %a %Y' a sub/b && readlink l && ls -a | tr '\\n' ' '"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "hellodata\n"
            "a 755 1577934245\n"  // setuid dropped; the mtime kept
            "sub/b 640 1577934245\n"
            "sub/b\n"
            ". .. a l sub ");
  // qvm-move: @default, which the policy sends to dt-work; the source goes.
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
           "printf moved > m.txt && qvm-move m.txt && test ! -e m.txt && echo gone"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "gone\n");
  EXPECT_EQ(Cli({"run", "dt-work", "cat", "QubesIncoming/dt-vault/m.txt"}).out, "moved");
  // Nothing is replaced; a FIFO is not sent at all.
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
           "printf again > m.txt && qvm-copy-to-vm dt-work m.txt"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("exists already"));
  EXPECT_EQ(Cli({"run", "dt-work", "cat", "QubesIncoming/dt-vault/m.txt"}).out, "moved");
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c", "mkfifo f && tessera-copy --to dt-work f"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("not a regular file, directory or symlink"));
  auto lines = CallLines("qubes.Filecopy");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0]["source"], "dt-vault");
  EXPECT_EQ(lines[0]["target"], "dt-work");
}

std::string Entry(wire::FilecopyType type, const std::string& name, uint32_t mode,
                  const std::string& body, uint64_t declared = UINT64_MAX) {
  wire::FilecopyHeader h;
  h.type = type;
  h.name_len = static_cast<uint32_t>(name.size());
  h.mode = mode;
  h.mtime_sec = 1000000000;
  h.size = declared == UINT64_MAX ? body.size() : declared;
  return wire::EncodeFilecopyHeader(h) + name + body;
}
std::string End() { return wire::EncodeFilecopyHeader({}); }

TEST_F(RpcTest, FilecopyReceiverRefusesHostileStreams) {
  StartDaemon();
  using wire::FilecopyType;
  // The receiver's quota, set by the target's user.
  ASSERT_EQ(Cli({"run", "dt-work", "--", "/bin/sh", "-c",
                 "mkdir -p .config/tessera && echo 100 > .config/tessera/filecopy-quota"})
                .exit_code,
            0);
  struct Case {
    const char* what;
    std::string stream;
  };
  std::string big(101, 'x');
  std::vector<Case> cases = {
      {"absolute path", Entry(FilecopyType::kFile, "/etc/evil", 0644, "x") + End()},
      {"'..'", Entry(FilecopyType::kFile, "../evil", 0644, "x") + End()},
      {"'..'", Entry(FilecopyType::kDir, "d", 0755, "") +
                   Entry(FilecopyType::kFile, "d/../../evil", 0644, "x") + End()},
      {"control character", Entry(FilecopyType::kFile, "evil\x1b[2J", 0644, "x") + End()},
      {"unknown type",
       std::string("B") + Entry(FilecopyType::kFile, "dev", 0644, "").substr(1) + End()},
      {"leaving the copied tree",
       Entry(FilecopyType::kSymlink, "evil-link", 0777, "../../../etc/shadow") + End()},
      {"absolute path", Entry(FilecopyType::kSymlink, "evil-abs", 0777, "/etc/shadow") + End()},
      {"quota", Entry(FilecopyType::kFile, "evil-big", 0644, big) + End()},
      {"ended in the file", Entry(FilecopyType::kFile, "evil-partial", 0644, "half", 100)},
      {"its directory", Entry(FilecopyType::kFile, "nodir/evil", 0644, "x") + End()},
  };
  for (const Case& c : cases) {
    CliResult r = Cli({"call", "--source", "dt-vault", "dt-work", "qubes.Filecopy"}, c.stream);
    EXPECT_NE(r.exit_code, 0) << c.what;
    EXPECT_THAT(r.err, HasSubstr(c.what)) << c.what;
  }
  // A setuid file arrives without the bit; a link inside the tree is fine.
  CliResult r = Cli({"call", "--source", "dt-vault", "dt-work", "qubes.Filecopy"},
                    Entry(FilecopyType::kDir, "ok", 0755, "") +
                        Entry(FilecopyType::kFile, "ok/suid", 06755, "x") +
                        Entry(FilecopyType::kSymlink, "ok/link", 0777, "suid") + End());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"run", "dt-work", "--", "/bin/sh", "-c",
           "cd QubesIncoming/dt-vault && stat -c '%n %a' ok/suid && "
           "find . ! -path './ok*' | sort | tr '\\n' ' '; test ! -e /etc/evil && echo clean"});
  // ./d came before the entry refused in it: directories stay, files never
  // show half-written or under a temporary name.
  EXPECT_EQ(r.out, "ok/suid 755\n. ./d clean\n") << "no partial, temporary or escaped file";
}

// `tessera prompt` run as a person would: it shows the ask, reads the answer.
class Prompt {
 public:
  explicit Prompt(const std::string& cli) {
    int in[2], out[2];
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::execl(cli.c_str(), cli.c_str(), "prompt", nullptr);
      _exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    in_.reset(in[1]);
    out_.reset(out[0]);
  }
  ~Prompt() {
    in_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Reads until `text` appeared (bounded); everything read so far.
  std::string WaitFor(const std::string& text) {
    for (int i = 0; i < 200 && seen_.find(text) == std::string::npos; ++i) {
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(out_.get(), buf, sizeof(buf));
      if (n <= 0) break;
      seen_.append(buf, static_cast<size_t>(n));
    }
    return seen_;
  }
  void Answer(const std::string& line) {
    ASSERT_EQ(::write(in_.get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
  }
  void Forget() { seen_.clear(); }

 private:
  pid_t pid_ = -1;
  UniqueFd in_;
  UniqueFd out_;
  std::string seen_;
};

TEST_F(RpcTest, AskIsAnsweredByTheUserOrDeniedOnTimeout) {
  std::string system =
      "policy_dir = \"" + policy_dir_ + "\"\n" + kSystem + "\n[rpc]\nask_timeout = 2\n";
  ASSERT_TRUE(WriteFileAtomic(config_, system));
  StartDaemon();
  Install("dt-work", "test.Choose", "#!/bin/sh\necho chosen-work\n");
  Install("dt-net", "test.Choose", "#!/bin/sh\necho chosen-net\n");
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  // No prompt: denied at once.
  CliResult r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Choose"});
  EXPECT_EQ(r.exit_code, 126);
  {
    Prompt prompt(TESSERA_CLI);
    ASSERT_THAT(prompt.WaitFor("Answering"), HasSubstr("Answering"));
    // Allowed to the default (Enter).
    CliResult called;
    std::thread caller([&] {
      called = Cli({"run", "dt-vault", "--", "tessera-call", "@default", "test.Choose"});
    });
    std::string shown = prompt.WaitFor("Allow?");
    EXPECT_THAT(shown, HasSubstr("dt-vault wants to call test.Choose"));
    EXPECT_THAT(shown, HasSubstr("dt-work  (default)"));
    prompt.Answer("\n");
    caller.join();
    EXPECT_EQ(called.exit_code, 0) << called.err;
    EXPECT_EQ(called.out, "chosen-work\n");
    // Another target, chosen by name.
    prompt.Forget();
    caller = std::thread([&] {
      called = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Choose"});
    });
    prompt.WaitFor("Allow?");
    prompt.Answer("dt-net\n");
    caller.join();
    EXPECT_EQ(called.exit_code, 0) << called.err;
    EXPECT_EQ(called.out, "chosen-net\n");
    // Denied.
    prompt.Forget();
    caller = std::thread([&] {
      called = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Choose"});
    });
    prompt.WaitFor("Allow?");
    prompt.Answer("n\n");
    caller.join();
    EXPECT_EQ(called.exit_code, 126);
    EXPECT_EQ(called.err, "tessera-call: Request refused\n");
    // Not answered: denied when the ask times out (2 s here).
    prompt.Forget();
    auto begun = std::chrono::steady_clock::now();
    r = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Choose"});
    EXPECT_EQ(r.exit_code, 126);
    EXPECT_GE(std::chrono::steady_clock::now() - begun, 1900ms);
    EXPECT_THAT(prompt.WaitFor("timed out"), HasSubstr("ask timed out"));
    // An answer naming a target outside the choices is refused by the daemon.
    prompt.Forget();
    caller = std::thread([&] {
      called = Cli({"run", "dt-vault", "--", "tessera-call", "dt-work", "test.Choose"});
    });
    prompt.WaitFor("Allow?");
    CliResult list = Cli({"prompt", "--list", "--json"});
    json asks = json::parse(list.out, nullptr, false);
    bool listed = asks.is_array() && asks.size() == 1u;
    EXPECT_TRUE(listed) << list.out;
    std::string id = listed ? std::to_string(asks[0]["id"].get<uint64_t>()) : "0";
    CliResult answered = Cli({"prompt", "--answer", id, "allow", "dt-vault"});
    EXPECT_EQ(answered.exit_code, 0) << answered.err;
    caller.join();
    EXPECT_EQ(called.exit_code, 126) << "dt-vault was not a choice";
  }
  auto lines = CallLines("test.Choose");
  ASSERT_GE(lines.size(), 5u);
  EXPECT_EQ(lines[1]["decision"], "ask");
  EXPECT_EQ(lines[1]["target"], "dt-work");
  EXPECT_EQ(lines[1]["asked"], true);
  EXPECT_THAT(lines[3]["reason"].get<std::string>(), HasSubstr("denied by the user"));
  EXPECT_THAT(lines[4]["reason"].get<std::string>(), HasSubstr("timed out"));
}

}  // namespace
}  // namespace tessera::daemon_testing
