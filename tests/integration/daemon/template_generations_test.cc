// Template generations through tesserad and the CLI (Qubes semantics): a
// template qube's writes reach app qubes at their next start after it
// stopped (the daemon's stop path commits them); a template in use cannot be
// removed; which qube runs on which generation survives a daemon restart.

#include <filesystem>

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

TEST_F(DaemonTest, TemplateChangesReachAppQubesAfterTheTemplateQubeStops) {
  StartDaemon();
  ASSERT_EQ(Cli({"start", "dt-vault"}).exit_code, 0);
  // /var/tmp (1777) is part of the template tree and writable whatever user
  // `run` defaults to.
  CliResult write = Cli(
      {"run", "dt-base", "--", "sh", "-c", "echo v2 > /var/tmp/gen-mark && cat /var/tmp/gen-mark"});
  ASSERT_EQ(write.exit_code, 0) << write.err;
  ASSERT_EQ(write.out, "v2\n");
  EXPECT_NE(Cli({"run", "dt-vault", "--", "cat", "/var/tmp/gen-mark"}).exit_code, 0)
      << "a running app qube saw a running template qube's write";

  // Removal is refused while qubes use the template, naming them.
  CliResult removed = Cli({"template", "remove", "dt-base"});
  EXPECT_EQ(removed.exit_code, 1);
  EXPECT_THAT(removed.err, HasSubstr("dt-base (template qube, generation 1)"));
  EXPECT_THAT(removed.err, HasSubstr("dt-vault (generation 1)"));
  CliResult commit = Cli({"template", "commit", "dt-base"});
  EXPECT_EQ(commit.exit_code, 1);
  EXPECT_THAT(commit.err, HasSubstr("is running"));

  ASSERT_EQ(Cli({"stop", "dt-base"}).exit_code, 0);
  CliResult ls = Cli({"template", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_THAT(ls.out, HasSubstr("2 (older in use: 1 by dt-vault)"));
  EXPECT_NE(Cli({"run", "dt-vault", "--", "cat", "/var/tmp/gen-mark"}).exit_code, 0)
      << "a running app qube changed generation";

  // Records survive a daemon crash: the adopted dt-vault keeps generation 1.
  KillDaemon(SIGKILL);
  StartDaemon();
  EXPECT_EQ(StateOf("dt-vault"), "running");
  ls = Cli({"template", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  json doc = json::parse(ls.out);
  ASSERT_EQ(doc.size(), 1u);
  EXPECT_EQ(doc[0]["generation"], 2);
  ASSERT_EQ(doc[0]["generations"].size(), 2u);
  EXPECT_EQ(doc[0]["generations"][0]["used_by"], json::array({"dt-vault"}));

  // Its next start gets the new generation; the old one is collected.
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  CliResult read = Cli({"run", "dt-vault", "--", "cat", "/var/tmp/gen-mark"});
  EXPECT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(read.out, "v2\n");
  EXPECT_FALSE(std::filesystem::exists(layout_.TemplateDir("dt-base") + "/gen/1"));
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  CliResult gone = Cli({"template", "remove", "dt-base"});
  EXPECT_EQ(gone.exit_code, 0) << gone.err;
}

}  // namespace
}  // namespace tessera::daemon_testing
