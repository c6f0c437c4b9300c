// Volumes through tesserad and the real CLI: a removed qube's volume is kept
// as an orphan (across daemon restarts), a re-added qube of that name starts
// empty with a note, `volume adopt`/`purge`/`copy` (fixture: daemon_fixture.h).

#include <sys/stat.h>

#include <sstream>

#include "integration/daemon/daemon_fixture.h"
#include "storage/ext4_image.h"
#include "storage/private_volume.h"

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
  // The secret of a halted qube, read with its volume image mounted for the
  // read (as tesserad does for offline work); its stat in *st when given.
  std::string ReadSecret(const std::string& qube, struct stat* st = nullptr) {
    std::string out;
    auto read = storage::WithPrivateVolume(layout_, qube, [&]() -> Status {
      out = ReadFile(Secret(qube)).value_or("");
      if (st != nullptr && ::lstat(Secret(qube).c_str(), st) != 0) *st = {};
      return Ok();
    });
    EXPECT_TRUE(read) << read.error().ToString();
    return out;
  }
  // A file in an orphan's volume image.
  std::string ReadInOrphan(const std::string& id, const std::string& rel) {
    std::string dir = layout_.state_dir + "/orphans/" + id;
    std::string mnt = root_ + "/orphan-mnt";
    ::mkdir(mnt.c_str(), 0700);
    auto mounted = storage::MountExt4Image(dir + "/private.img", mnt);
    EXPECT_TRUE(mounted) << mounted.error().ToString();
    if (!mounted) return "";
    std::string out = ReadFile(mnt + "/" + rel).value_or("");
    EXPECT_TRUE(storage::UnmountExt4Image(mnt));
    return out;
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
  EXPECT_EQ(ReadInOrphan(orphans[0].value("id", ""), "home/user/secret"), "kept\n");
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
  EXPECT_EQ(ReadSecret("dt-vault", &src_st), "v1\n");
  EXPECT_EQ(ReadSecret("dt-clone", &dst_st), "v1\n");
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
  EXPECT_EQ(ReadSecret("dt-clone"), "clone-data\n");
  CliResult forced = Cli({"volume", "copy", "dt-vault", "dt-clone", "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_THAT(forced.out, HasSubstr("the previous volume was kept as orphan dt-clone@"));
  EXPECT_EQ(ReadSecret("dt-clone"), "v1\n");
  auto orphans = OrphansOf("dt-clone");
  ASSERT_EQ(orphans.size(), 1u);
  EXPECT_EQ(ReadInOrphan(orphans[0].value("id", ""), "home/user/secret"), "clone-data\n");
  CliResult unknown = Cli({"volume", "copy", "dt-vault", "dt-nosuch"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no such qube: dt-nosuch"));
  EXPECT_EQ(Cli({"stop", "--all"}).exit_code, 0);
}

// private_size: the qube sees a volume of that size (df), cannot write past
// it, `volume ls` shows it, `volume resize` and `apply` grow it (never shrink).
TEST_F(VolumeTest, PrivateSizeIsWhatTheQubeSeesAndGrowsButNeverShrinks) {
  auto with_size = [&](const std::string& size) {
    std::string text = kSystem;
    std::string anchor = "[qubes.dt-vault]\n";
    text.insert(text.find(anchor) + anchor.size(), "private_size = \"" + size + "\"\n");
    return text;
  };
  ASSERT_TRUE(WriteFileAtomic(config_, with_size("64M")));
  StartDaemon({"--no-autostart"});
  // KiB of the file system holding /home, as df inside the qube reports it.
  auto df_kib = [&]() -> uint64_t {
    CliResult r = Cli({"run", "dt-vault", "--", "df", "-k", "/home"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::istringstream lines(r.out);
    std::string header, line, fs;
    std::getline(lines, header);
    std::getline(lines, line);
    uint64_t kib = 0;
    std::istringstream(line) >> fs >> kib;
    return kib;
  };
  uint64_t first = df_kib();
  EXPECT_GT(first, 48u * 1024);
  EXPECT_LE(first, 64u * 1024);
  CliResult full = Cli({"run", "dt-vault", "--", "sh", "-c",
                        "dd if=/dev/zero of=/home/user/fill bs=1M count=100; echo rc=$?"});
  EXPECT_THAT(full.out + full.err, HasSubstr("No space left on device"));
  EXPECT_THAT(full.out, ::testing::Not(HasSubstr("rc=0")));
  ASSERT_EQ(Cli({"run", "dt-vault", "--", "rm", "/home/user/fill"}).exit_code, 0);

  json list = VolumeList();
  bool listed = false;
  for (const auto& v : list["volumes"]) {
    if (v.value("qube", "") != "dt-vault") continue;
    listed = true;
    EXPECT_EQ(v.value("size", uint64_t{0}), 64ull << 20);
    EXPECT_EQ(v.value("private_size", uint64_t{0}), 64ull << 20);
  }
  EXPECT_TRUE(listed) << list.dump();
  EXPECT_THAT(Cli({"volume", "ls"}).out, HasSubstr("64 MiB"));

  CliResult shrink = Cli({"volume", "resize", "dt-vault", "32M"});
  EXPECT_EQ(shrink.exit_code, 1);
  EXPECT_THAT(shrink.err, HasSubstr("volumes grow, never shrink"));
  CliResult bad = Cli({"volume", "resize", "dt-vault", "lots"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("size must be like"));

  // Grown while running: online where the kernel allows it, else at restart.
  CliResult grown = Cli({"volume", "resize", "dt-vault", "96M"});
  ASSERT_EQ(grown.exit_code, 0) << grown.err;
  EXPECT_THAT(grown.out, HasSubstr("the private volume of dt-vault is 96 MiB"));
  EXPECT_THAT(grown.out, HasSubstr("private_size in the system description is 64 MiB"));
  ASSERT_EQ(Cli({"restart", "dt-vault"}).exit_code, 0);
  uint64_t second = df_kib();
  EXPECT_GT(second, first + 24u * 1024);

  // apply with a bigger private_size grows it; a smaller one keeps it.
  CliResult applied = Cli({"apply", WriteConfig("bigger.toml", with_size("128M")), "--yes"});
  ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("private_size"));
  EXPECT_THAT(applied.out, HasSubstr("volume of dt-vault grown from 96 MiB to 128 MiB"));
  ASSERT_EQ(Cli({"restart", "dt-vault"}).exit_code, 0);
  EXPECT_GT(df_kib(), second + 24u * 1024);
  CliResult smaller = Cli({"apply", WriteConfig("smaller.toml", with_size("64M")), "--yes"});
  ASSERT_EQ(smaller.exit_code, 0) << smaller.out << smaller.err;
  EXPECT_THAT(smaller.out, HasSubstr("volume of dt-vault stays 128 MiB (volumes never shrink)"));
  EXPECT_THAT(AuditText(), HasSubstr("\"action\":\"grow\""));
  EXPECT_EQ(Cli({"stop", "--all"}).exit_code, 0);
}

}  // namespace
}  // namespace tessera::daemon_testing
