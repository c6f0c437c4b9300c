// The RPC services that ship with tessera, beyond qubes.Filecopy
// (rpc_test.cc), end to end through a real daemon, real cells and real
// policy files: qubes.OpenInVM (tessera-open, qvm-open-in-vm/dvm: the edited
// file comes back whole or not at all), the host's clipboard (`tessera
// clipboard copy/paste`, qubes.ClipboardCopy/Paste, the size limit, the
// policy), desktop notifications of denials (notify-send), and policy files
// included from outside the policy directory being watched.

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

constexpr const char* kPolicy = R"(# tests
qubes.OpenInVM        *  dt-vault  dt-work   allow
qubes.OpenInVM        *  dt-vault  @dispvm   allow
qubes.ClipboardPaste  *  dt-work   dt-vault  ask
qubes.ClipboardPaste  *  dt-vault  dt-work   deny
test.Q                *  dt-work   dt-vault  deny
!include-dir included
)";

// An open handler that records what it got and appends a line.
constexpr const char* kHandler =
    "#!/bin/sh\n"
    "echo \"opened $(basename \"$1\") in $(hostname)\" >&2\n"
    "echo edited >> \"$1\"\n";

class RpcServicesTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (IsSkipped()) return;
    policy_dir_ = root_ + "/policy.d";
    ASSERT_TRUE(MakeDirs(policy_dir_ + "/included", 0755));
    ASSERT_TRUE(WriteFileAtomic(policy_dir_ + "/50-test.policy", kPolicy));
    ASSERT_TRUE(WriteFileAtomic(config_, "policy_dir = \"" + policy_dir_ + "\"\n" + kSystem));
  }

  // Makes `script` the open handler of `qube`'s user.
  void SetHandler(const std::string& qube, const std::string& script) {
    CliResult r = Cli({"run", qube, "--", "/bin/sh", "-c",
                       "mkdir -p .config/tessera && cat > .config/tessera/open-handler && "
                       "chmod 755 .config/tessera/open-handler"},
                      script);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  json ClipboardShow() {
    CliResult r = Cli({"clipboard", "show", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  std::string policy_dir_;
};

TEST_F(RpcServicesTest, OpenInVmSendsTheEditedFileBack) {
  StartDaemon();
  SetHandler("dt-work", kHandler);
  CliResult r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
                     "printf 'line one\\n' > doc.txt && chmod 640 doc.txt && "
                     "tessera-open --to dt-work doc.txt && cat doc.txt && stat -c %a doc.txt && "
                     "ls -a | tr '\\n' ' '"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "line one\nedited\n640\n. .. doc.txt ") << "mode kept, no temporary left";
  EXPECT_THAT(r.err, HasSubstr("opened doc.txt in dt-work"));
  // The target keeps nothing of it.
  r = Cli({"run", "dt-work", "--", "/bin/sh", "-c", "ls /tmp | grep -c tessera-open || true"});
  EXPECT_EQ(r.out, "0\n");
  // View-only: the handler gets a read-only copy, and nothing comes back.
  SetHandler(
      "dt-work",
      "#!/bin/sh\nstat -c 'mode %a' \"$1\" >&2\necho changed > \"$1\" 2>/dev/null\nexit 0\n");
  r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
           "qvm-open-in-vm --view-only dt-work doc.txt; echo \"status $?\"; cat doc.txt"});
  EXPECT_EQ(r.out, "status 0\nline one\nedited\n") << r.err;
  EXPECT_THAT(r.err, HasSubstr("mode 400"));
  auto lines = CallLines("qubes.OpenInVM");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["argument"], "view-only");
  EXPECT_EQ(lines[1]["target"], "dt-work");
}

TEST_F(RpcServicesTest, OpenInVmDefaultsToADisposable) {
  StartDaemon();
  SetHandler("dt-dvm", kHandler);
  ASSERT_EQ(Cli({"stop", "dt-dvm"}).exit_code, 0);
  CliResult r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
                     "echo draft > note && qvm-open-in-dvm note && cat note"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "draft\nedited\n");
  EXPECT_THAT(r.err, HasSubstr("opened note in disp"));
  auto lines = CallLines("qubes.OpenInVM");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["requested_target"], "@dispvm");
  ExpectNoDisposables();
  // No file, no call: nothing is started for a name that is not there.
  r = Cli({"run", "dt-vault", "--", "tessera-open", "missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("missing: No such file or directory"));
  EXPECT_EQ(CallLines("qubes.OpenInVM").size(), 1u);
}

TEST_F(RpcServicesTest, OpenInVmNeverKeepsHalfAnEditedFile) {
  StartDaemon();
  // A target that answers with less than it announces (a crash, or a lie).
  Install("dt-work", "qubes.OpenInVM",
          "#!/bin/sh\ncat > /dev/null\nprintf '\\144\\000\\000\\000\\000\\000\\000\\000short'\n");
  CliResult r = Cli({"run", "dt-vault", "--", "/bin/sh", "-c",
                     "echo precious > doc && tessera-open --to dt-work doc; echo \"status $?\"; "
                     "cat doc; ls -a | tr '\\n' ' '"});
  EXPECT_EQ(r.out, "status 1\nprecious\n. .. doc ") << r.err;
  EXPECT_THAT(r.err, HasSubstr("did not come back whole; doc is unchanged"));
  // The service refuses a name that is a path, or has control characters,
  // and a file that is cut short.
  ASSERT_EQ(
      Cli({"run", "-u", "root", "dt-work", "--", "rm", "/usr/local/etc/qubes-rpc/qubes.OpenInVM"})
          .exit_code,
      0);
  SetHandler("dt-work", kHandler);
  auto call = [&](const std::string& stream) {
    return Cli({"call", "--source", "dt-vault", "dt-work", "qubes.OpenInVM"}, stream);
  };
  auto size = [](uint8_t n) { return std::string(1, static_cast<char>(n)) + std::string(7, '\0'); };
  r = call(std::string("../x", 4) + '\0' + size(1) + "a");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("has a '/'"));
  r = call(std::string("a\nb") + '\0' + size(1) + "a");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("control character"));
  r = call(std::string("ok") + '\0' + size(10) + "abc");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("did not arrive whole"));
  EXPECT_THAT(r.err, Not(HasSubstr("opened ok in"))) << "nothing is opened";
}

TEST_F(RpcServicesTest, ClipboardGoesToOneQubeAsThePolicySays) {
  StartDaemon();
  ASSERT_EQ(Cli({"start", "dt-work", "dt-vault"}).exit_code, 0);
  CliResult r = Cli({"clipboard", "paste", "--to", "dt-vault"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the host's clipboard is empty"));
  r = Cli({"run", "dt-work", "--", "tessera-clipboard", "set"}, "s3cret pass\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"clipboard", "copy", "--from", "dt-work"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "copied 12 bytes from dt-work into the host's clipboard\n");
  json shown = ClipboardShow();
  EXPECT_EQ(shown["source"], "dt-work");
  EXPECT_EQ(shown["size"], 12);
  EXPECT_THAT(shown.dump(), Not(HasSubstr("s3cret"))) << "show never prints the text";
  // `ask`: the paste is the user's answer.
  r = Cli({"clipboard", "paste", "--to", "dt-vault"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Cli({"run", "dt-vault", "--", "tessera-clipboard", "get"}).out, "s3cret pass\n");
  EXPECT_EQ(ClipboardShow()["empty"], true) << "emptied by the paste";
  auto lines = CallLines("qubes.ClipboardPaste");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["source"], "dt-work");
  EXPECT_EQ(lines[0]["target"], "dt-vault");
  EXPECT_EQ(lines[0]["decision"], "ask");
  EXPECT_EQ(lines[0]["rule"], "50-test.policy:4");
  EXPECT_EQ(lines[0]["bytes_in"], 12);
  EXPECT_EQ(lines[0]["exit_status"], 0);
  // Denied: 126, and the host keeps it.
  r = Cli({"clipboard", "copy", "--from", "dt-vault"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"clipboard", "paste", "--to", "dt-work"});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_THAT(r.err, HasSubstr("denied by policy 50-test.policy:5"));
  EXPECT_EQ(ClipboardShow()["source"], "dt-vault");
  EXPECT_EQ(Cli({"run", "dt-work", "--", "tessera-clipboard", "get"}).out, "s3cret pass\n")
      << "dt-work still has only its own";
  EXPECT_EQ(Cli({"clipboard", "clear"}).out, "cleared\n");
  EXPECT_EQ(ClipboardShow()["empty"], true);
  // A halted qube has no clipboard.
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  r = Cli({"clipboard", "copy", "--from", "dt-vault"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("dt-vault is not running"));
  EXPECT_EQ(StateOf("dt-vault"), "halted") << "not started for it";
}

TEST_F(RpcServicesTest, ClipboardHoldsAtMostItsLimit) {
  StartDaemon();
  ASSERT_EQ(Cli({"start", "dt-work", "dt-vault"}).exit_code, 0);
  std::string full(65000, 'x');
  ASSERT_EQ(Cli({"run", "dt-vault", "--", "tessera-clipboard", "set"}, full).exit_code, 0);
  ASSERT_EQ(Cli({"clipboard", "copy", "--from", "dt-vault"}).exit_code, 0);
  EXPECT_EQ(ClipboardShow()["size"], 65000);
  // In the qube: one byte more is refused, the clipboard unchanged.
  CliResult r = Cli({"run", "dt-work", "--", "tessera-clipboard", "set"}, full + "y");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("more than 65000 bytes"));
  // A qube whose service sends more (its own qubes.ClipboardCopy, or a lie)
  // is cut off; the host's clipboard is unchanged.
  Install("dt-work", "qubes.ClipboardCopy", "#!/bin/sh\nexec cat /dev/zero\n");
  r = Cli({"clipboard", "copy", "--from", "dt-work"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("holds more than 65000 bytes; the host's clipboard is unchanged"));
  json shown = ClipboardShow();
  EXPECT_EQ(shown["source"], "dt-vault");
  EXPECT_EQ(shown["size"], 65000);
  EXPECT_THAT(AuditText(), HasSubstr("\"op\":\"copy\",\"result\":\"failed\""));
  // A service that never ends is hung up; the clipboard is unchanged.
  Install("dt-work", "qubes.ClipboardCopy", "#!/bin/sh\nexec sleep 1000\n");
  r = Cli({"clipboard", "copy", "--from", "dt-work"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("did not end within 10 s; the host's clipboard is unchanged"));
  EXPECT_EQ(ClipboardShow()["source"], "dt-vault");
}

TEST_F(RpcServicesTest, DenialsReachTheDesktopThroughNotifySend) {
  // A notify-send on the daemon's PATH that records its arguments.
  std::string bin = root_ + "/bin";
  std::string record = root_ + "/notifications";
  ASSERT_TRUE(MakeDirs(bin, 0755));
  ASSERT_TRUE(WriteFileAtomic(bin + "/notify-send", "#!/bin/sh\nprintf '%s|' \"$@\" >> " + record +
                                                        "\necho >> " + record + "\n"));
  ASSERT_EQ(::chmod((bin + "/notify-send").c_str(), 0755), 0);
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin";
  ::setenv("PATH", (bin + ":" + path).c_str(), 1);
  StartDaemon();
  ::setenv("PATH", path.c_str(), 1);
  ASSERT_EQ(Cli({"start", "dt-work"}).exit_code, 0);
  CliResult r = Cli({"run", "dt-work", "--", "tessera-call", "dt-vault", "test.Q"});
  EXPECT_EQ(r.exit_code, 126);
  std::string text;
  for (int i = 0; i < 100 && text.empty(); ++i) {
    text = ReadFile(record).value_or("");
    if (text.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(text, "--app-name=tessera|--|tessera: call denied|dt-work -> dt-vault: test.Q|\n");
}

TEST_F(RpcServicesTest, PolicyIncludedFromElsewhereIsWatched) {
  std::string elsewhere = root_ + "/elsewhere";
  ASSERT_TRUE(MakeDirs(elsewhere, 0755));
  ASSERT_TRUE(WriteFileAtomic(elsewhere + "/inc", "test.Inc * * dt-work deny\n"));
  ASSERT_TRUE(
      WriteFileAtomic(policy_dir_ + "/included/40-inc.policy", "!include " + elsewhere + "/inc\n"));
  StartDaemon();
  Install("dt-work", "test.Inc", "#!/bin/sh\necho included\n");
  EXPECT_EQ(Cli({"call", "dt-work", "test.Inc"}).exit_code, 126);
  ASSERT_TRUE(WriteFileAtomic(elsewhere + "/inc", "test.Inc * * dt-work allow\n"));
  CliResult r;
  for (int i = 0; i < 40; ++i) {
    r = Cli({"call", "dt-work", "test.Inc"});
    if (r.exit_code != 126) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r.exit_code, 0) << "the edit of the included file was seen";
  EXPECT_EQ(r.out, "included\n");
}

}  // namespace
}  // namespace tessera::daemon_testing
