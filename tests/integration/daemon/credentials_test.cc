// Credentials (qube key `credentials`, services.tessera.credentials): host
// files copied into the qube at each start, read-only at
// /run/credentials/<name>, readable by its root and its user only; a missing
// one fails the start naming it; a disposable made from a qube that has them
// gets none; nothing is left in the scratch once the qube stops.

#include <filesystem>

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

class CredentialsTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (IsSkipped()) return;
    secret_ = root_ + "/secret";
    ASSERT_TRUE(WriteFileAtomic(secret_, "s3cret\n", 0600));
    // TOML: sub-tables of qubes already defined.
    std::string system = std::string(kSystem) + "\n[qubes.dt-vault.credentials]\ntoken = \"" +
                         secret_ + "\"\n\n[qubes.dt-dvm.credentials]\ntoken = \"" + secret_ +
                         "\"\n";
    ASSERT_TRUE(WriteFileAtomic(config_, system));
  }
  std::string secret_;
};

TEST_F(CredentialsTest, CopiedAtStartReadOnlyAndNotForDisposables) {
  StartDaemon();
  CliResult prefs = Cli({"prefs", "dt-vault", "credentials", "--json"});
  EXPECT_EQ(json::parse(prefs.out, nullptr, false), (json{{"credentials", {{"token", secret_}}}}))
      << prefs.out << prefs.err;
  CliResult read = Cli({"run", "dt-vault", "--", "cat", "/run/credentials/token"});
  ASSERT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(read.out, "s3cret\n");
  // Owner root, group user (1000), 0440; the directory 0750.
  CliResult mode = Cli({"run", "dt-vault", "--", "stat", "-c", "%a %u %g", "/run/credentials/token",
                        "/run/credentials"});
  EXPECT_EQ(mode.out, "440 0 1000\n750 0 1000\n") << mode.err;
  CliResult write = Cli({"run", "dt-vault", "--user", "root", "--", "sh", "-c",
                         "echo x > /run/credentials/token || echo x > /run/credentials/new || "
                         "exit 3"});
  EXPECT_EQ(write.exit_code, 3) << "the qube's root wrote its credentials: " << write.err;
  CliResult nobody =
      Cli({"run", "dt-vault", "--user", "65534", "--", "cat", "/run/credentials/token"});
  EXPECT_NE(nobody.exit_code, 0) << "another user of the qube read it: " << nobody.out;

  // Copied at start: a change on the host reaches the qube when it restarts.
  ASSERT_TRUE(WriteFileAtomic(secret_, "v2\n", 0600));
  EXPECT_EQ(Cli({"run", "dt-vault", "--", "cat", "/run/credentials/token"}).out, "s3cret\n");
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(layout_.ScratchDir("dt-vault") + "/credentials"));
  EXPECT_EQ(Cli({"run", "dt-vault", "--", "cat", "/run/credentials/token"}).out, "v2\n");

  // A disposable of dt-dvm does not get dt-dvm's secrets.
  CliResult disp = Cli({"run", "--dispvm=dt-dvm", "--", "ls", "/run/credentials"});
  EXPECT_NE(disp.exit_code, 0) << "a disposable got credentials: " << disp.out;

  // Fail closed: a qube does not start without a credential it declares.
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  ASSERT_EQ(::unlink(secret_.c_str()), 0);
  CliResult start = Cli({"start", "dt-vault"});
  EXPECT_EQ(start.exit_code, 1);
  EXPECT_THAT(start.err, HasSubstr("credential token (" + secret_ + ")"));
  EXPECT_NE(StateOf("dt-vault"), "running");
}

}  // namespace
}  // namespace tessera::daemon_testing
