// Inter-qube RPC from the host (`tessera call`), end to end through a real
// daemon, real cells and real policy files: allow, deny, redirect,
// autostart=no, @dispvm, missing services, argument rules, exit codes,
// stderr and EOF, the QREXEC_* environment, 64 MiB both ways, policy reloads
// (a broken edit keeps the last good policy), and the audit line per call.

#include "integration/daemon/daemon_fixture.h"

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
test.Late      *  *  dt-work   deny
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

}  // namespace
}  // namespace tessera::daemon_testing
