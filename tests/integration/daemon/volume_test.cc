// Volumes through tesserad and the real CLI: a removed qube's volume is kept
// as an orphan (across daemon restarts), a re-added qube of that name starts
// empty with a note, `volume adopt`/`purge`/`copy` (fixture: daemon_fixture.h).

#include <sys/stat.h>

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

class VolumeTest : public DaemonTest {
 protected:
  // The fixture's system, without dt-vault.
  std::string WithoutVault() {
    std::string text = kSystem;
    size_t from = text.find("[qubes.dt-vault]");
    size_t to = text.find("[qubes.dt-dvm]");
    text.erase(from, to - from);
    return text;
  }
  std::string WriteConfig(const std::string& name, const std::string& text) {
    std::string path = root_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(path, text));
    return path;
  }
  json VolumeList() {
    CliResult r = Cli({"volume", "ls", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json doc = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(doc.is_object()) << r.out;
    return doc.is_object() ? doc : json{{"orphans", json::array()}, {"volumes", json::array()}};
  }
  std::vector<json> OrphansOf(const std::string& qube) {
    std::vector<json> out;
    json list = VolumeList();
    for (const auto& o : list["orphans"]) {
      if (o.value("qube", "") == qube) out.push_back(o);
    }
    return out;
  }
  std::string Secret(const std::string& qube) {
    return layout_.PrivateVolume(qube) + "/home/user/secret";
  }
  void WriteSecretInside(const std::string& qube, const std::string& text) {
    CliResult r = Cli({"run", qube, "--", "sh", "-c", "echo " + text + " > /home/user/secret"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
};

TEST_F(VolumeTest, ARemovedQubesDataNeverComesBackToANewQubeOfItsNameUnlessAdopted) {
  StartDaemon({"--no-autostart"});
  WriteSecretInside("dt-vault", "old-secret");
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);

  // Removed by apply: the volume is kept aside, and the output says where.
  CliResult removed = Cli({"apply", WriteConfig("without.toml", WithoutVault()), "--yes"});
  ASSERT_EQ(removed.exit_code, 0) << removed.out << removed.err;
  EXPECT_THAT(removed.out, HasSubstr("- qube dt-vault"));
  EXPECT_THAT(removed.out, HasSubstr("volume of dt-vault kept as orphan dt-vault@"));
  EXPECT_FALSE(Exists(layout_.QubeDir("dt-vault")));
  auto orphans = OrphansOf("dt-vault");
  ASSERT_EQ(orphans.size(), 1u);
  std::string id = orphans[0].value("id", "");
  EXPECT_GT(orphans[0].value("bytes", 0), 0);
  EXPECT_FALSE(orphans[0].value("removed", "").empty());
  CliResult table = Cli({"volume", "ls"});
  EXPECT_THAT(table.out, HasSubstr(id));
  EXPECT_THAT(table.out, HasSubstr("orphan"));

  // It survives a daemon restart.
  KillDaemon(SIGTERM);
  StartDaemon({"--no-autostart"});
  ASSERT_EQ(OrphansOf("dt-vault").size(), 1u);

  // Re-added: a note in the plan, the output and the log; a fresh volume.
  CliResult readded = Cli({"apply", config_, "--yes"});
  ASSERT_EQ(readded.exit_code, 0) << readded.out << readded.err;
  EXPECT_THAT(readded.out, HasSubstr("Note: qube dt-vault gets a new, empty private volume"));
  EXPECT_THAT(readded.out, HasSubstr("tessera volume adopt " + id));
  EXPECT_THAT(ReadFile(root_ + "/daemon.log").value_or(""), HasSubstr("an orphaned volume"));
  CliResult fresh = Cli({"run", "dt-vault", "--", "cat", "/home/user/secret"});
  EXPECT_NE(fresh.exit_code, 0) << "the old secret came back: " << fresh.out;
  EXPECT_THAT(fresh.out, ::testing::Not(HasSubstr("old-secret")));

  // Adopt refuses a running qube, then takes the orphan back.
  CliResult running = Cli({"volume", "adopt", "dt-vault"});
  EXPECT_EQ(running.exit_code, 1);
  EXPECT_THAT(running.err, HasSubstr("stop it first"));
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  CliResult adopted = Cli({"volume", "adopt", "dt-vault"});
  ASSERT_EQ(adopted.exit_code, 0) << adopted.err;
  EXPECT_THAT(adopted.out, HasSubstr(id + " is now the private volume of dt-vault"));
  CliResult back = Cli({"run", "dt-vault", "--", "cat", "/home/user/secret"});
  EXPECT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(back.out, "old-secret\n");
  EXPECT_TRUE(OrphansOf("dt-vault").empty());

  // Removed again and purged: gone for good.
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  ASSERT_EQ(Cli({"apply", root_ + "/without.toml", "--yes"}).exit_code, 0);
  ASSERT_EQ(OrphansOf("dt-vault").size(), 1u);
  CliResult purged = Cli({"volume", "purge", "dt-vault"});
  EXPECT_EQ(purged.exit_code, 0) << purged.err;
  EXPECT_THAT(purged.out, HasSubstr("purged dt-vault@"));
  EXPECT_TRUE(OrphansOf("dt-vault").empty());
  EXPECT_THAT(Glob(layout_.state_dir + "/orphans/dt-vault*"), ::testing::IsEmpty());
  CliResult none = Cli({"volume", "purge", "dt-vault"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("no orphaned volume of qube dt-vault"));
  EXPECT_THAT(AuditText(), HasSubstr("\"action\":\"orphan\""));
}

TEST_F(VolumeTest, ADaemonStartedWithoutAQubeKeepsItsVolumeAsAnOrphan) {
  StartDaemon({"--no-autostart"});
  WriteSecretInside("dt-vault", "kept");
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);
  KillDaemon(SIGKILL);
  // The description changed while the daemon was down.
  ASSERT_TRUE(WriteFileAtomic(config_, WithoutVault()));
  StartDaemon({"--no-autostart"});
  auto orphans = OrphansOf("dt-vault");
  ASSERT_EQ(orphans.size(), 1u);
  EXPECT_FALSE(Exists(layout_.QubeDir("dt-vault")));
  std::string kept =
      layout_.state_dir + "/orphans/" + orphans[0].value("id", "") + "/private/home/user/secret";
  EXPECT_EQ(ReadFile(kept).value_or(""), "kept\n");
  EXPECT_THAT(AuditText(), HasSubstr("\"action\":\"orphaned\""));
}

TEST_F(VolumeTest, CopyGivesTheDestinationTheSourcesFilesInItsOwnIdRange) {
  ASSERT_TRUE(WriteFileAtomic(config_, std::string(kSystem) +
                                           "\n[qubes.dt-clone]\nclass = \"app\"\n"
                                           "template = \"dt-base\"\nnetvm = \"none\"\n"));
  StartDaemon({"--no-autostart"});
  WriteSecretInside("dt-vault", "v1");
  // A running source is refused.
  CliResult busy = Cli({"volume", "copy", "dt-vault", "dt-clone"});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_THAT(busy.err, HasSubstr("dt-vault is running; stop it first"));
  ASSERT_EQ(Cli({"stop", "dt-vault"}).exit_code, 0);

  CliResult copied = Cli({"volume", "copy", "dt-vault", "dt-clone"});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  EXPECT_THAT(copied.out, HasSubstr("copied the private volume of dt-vault to dt-clone"));
  auto src = storage::LookupIdRange(layout_, "dt-vault");
  auto dst = storage::LookupIdRange(layout_, "dt-clone");
  ASSERT_TRUE(src && dst);
  ASSERT_NE(src->base, dst->base);
  struct stat src_st {
  }, dst_st{};
  ASSERT_EQ(::lstat(Secret("dt-vault").c_str(), &src_st), 0);
  ASSERT_EQ(::lstat(Secret("dt-clone").c_str(), &dst_st), 0);
  EXPECT_EQ(dst_st.st_uid - dst->base, src_st.st_uid - src->base) << "same id inside";
  CliResult inside = Cli({"run", "dt-clone", "--", "cat", "/home/user/secret"});
  EXPECT_EQ(inside.out, "v1\n") << inside.err;

  // A running destination, then one with data, are refused; --force keeps it as an orphan.
  CliResult dest_running = Cli({"volume", "copy", "dt-vault", "dt-clone"});
  EXPECT_EQ(dest_running.exit_code, 1);
  EXPECT_THAT(dest_running.err, HasSubstr("dt-clone is running"));
  WriteSecretInside("dt-clone", "clone-data");
  ASSERT_EQ(Cli({"stop", "dt-clone"}).exit_code, 0);
  CliResult refused = Cli({"volume", "copy", "dt-vault", "dt-clone"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("already has a private volume with data"));
  EXPECT_EQ(ReadFile(Secret("dt-clone")).value_or(""), "clone-data\n");
  CliResult forced = Cli({"volume", "copy", "dt-vault", "dt-clone", "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_THAT(forced.out, HasSubstr("the previous volume was kept as orphan dt-clone@"));
  EXPECT_EQ(ReadFile(Secret("dt-clone")).value_or(""), "v1\n");
  auto orphans = OrphansOf("dt-clone");
  ASSERT_EQ(orphans.size(), 1u);
  EXPECT_EQ(ReadFile(layout_.state_dir + "/orphans/" + orphans[0].value("id", "") +
                     "/private/home/user/secret")
                .value_or(""),
            "clone-data\n");
  CliResult unknown = Cli({"volume", "copy", "dt-vault", "dt-nosuch"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no such qube: dt-nosuch"));
  EXPECT_EQ(Cli({"stop", "--all"}).exit_code, 0);
}

}  // namespace
}  // namespace tessera::daemon_testing
