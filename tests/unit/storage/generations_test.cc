// Template generations (storage/generations.h): migration, the template
// qube's changes committed into a new generation (whiteouts, opaque
// directories, hard links), crash safety of a commit, records of which qube
// uses which generation, collection, and refusing to remove a used template.
// The overlay upper is written by hand here, as overlayfs writes it; the
// integration tests (tests/integration/cell/generations_test.cc) let a real
// overlay in a real cell write it.

#include "storage/generations.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using testing::Exists;
using ::testing::HasSubstr;
using testing::LStat;
using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

class GenerationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto built = BuildTemplate(layout(), "tpl", {});
    ASSERT_TRUE(built) << built.error().ToString();
  }
  const Layout& layout() const { return t_.layout(); }
  std::string Gen(uint64_t n) const {
    return layout().TemplateDir("tpl") + "/gen/" + std::to_string(n);
  }
  std::string Upper() const { return TemplateChangesDir(layout(), "tpl") + "/upper"; }
  std::string CurrentLink() const {
    std::error_code ec;
    return std::filesystem::read_symlink(layout().TemplateDir("tpl") + "/root", ec).string();
  }
  // What the template qube leaves in its upper layer, through the real API:
  // it starts (recorded), writes, and stops (released: committed).
  void StartTemplateQube() {
    auto g = AcquireGeneration(layout(), "tpl", "tpl", GenerationRole::kTemplateQube);
    ASSERT_TRUE(g) << g.error().ToString();
  }
  // An overlay whiteout: a character device 0:0 (needs CAP_MKNOD).
  bool Whiteout(const std::string& path) {
    if (::mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0) return true;
    ADD_FAILURE() << "mknod " << path << ": " << std::strerror(errno);
    return false;
  }
  std::vector<std::string> Hidden(const std::string& dir) const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      std::string n = e.path().filename().string();
      if (n[0] == '.' && n.find(".lock") == std::string::npos) out.push_back(n);
    }
    return out;
  }
  TempLayout t_;
};

TEST_F(GenerationsTest, ABuiltTemplateIsGenerationOne) {
  EXPECT_EQ(CurrentLink(), "gen/1");
  auto g = CurrentGeneration(layout(), "tpl");
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 1u);
  EXPECT_EQ(g->path, Gen(1));
  EXPECT_TRUE(Exists(Gen(1) + "/bin/busybox"));
}

TEST_F(GenerationsTest, AnOlderTemplatesRootBecomesGenerationOneOnFirstUse) {
  // The layout of an older version: a plain root/ directory.
  std::string dir = layout().TemplateDir("tpl");
  ASSERT_EQ(::unlink((dir + "/root").c_str()), 0);
  ASSERT_EQ(::rename(Gen(1).c_str(), (dir + "/root").c_str()), 0);
  ASSERT_EQ(::rmdir((dir + "/gen").c_str()), 0);
  Spit(dir + "/root/etc/old-mark", "old");
  auto g = AcquireGeneration(layout(), "tpl", "work", GenerationRole::kApp);
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 1u);
  EXPECT_EQ(Slurp(Gen(1) + "/etc/old-mark"), "old");
  EXPECT_EQ(CurrentLink(), "gen/1");
  EXPECT_TRUE(S_ISLNK(LStat(dir + "/root").st_mode));
}

TEST_F(GenerationsTest, AMigrationInterruptedBetweenItsRenamesIsFinished) {
  // A crash after root/ became gen/1 but before root -> gen/1 was made.
  ASSERT_EQ(::unlink((layout().TemplateDir("tpl") + "/root").c_str()), 0);
  auto g = CurrentGeneration(layout(), "tpl");
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 1u);
  EXPECT_EQ(CurrentLink(), "gen/1");
}

TEST_F(GenerationsTest, ACommitAppliesFilesWhiteoutsAndOpaqueDirectories) {
  StartTemplateQube();
  // What overlayfs leaves after, in the template qube: echo > /etc/hostname,
  // echo > /etc/new, rm /etc/hosts, rm -r /usr/sbin, rm -r /var && mkdir
  // /var && touch /var/only.
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/usr"));
  Spit(Upper() + "/etc/hostname", "changed\n");
  Spit(Upper() + "/etc/new", "new\n");
  ASSERT_EQ(::symlink("hostname", (Upper() + "/etc/new-link").c_str()), 0);
  if (!Whiteout(Upper() + "/etc/hosts") || !Whiteout(Upper() + "/usr/sbin")) return;
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/var"));
  ASSERT_EQ(::setxattr((Upper() + "/var").c_str(), "user.overlay.opaque", "y", 1, 0), 0)
      << std::strerror(errno);
  Spit(Upper() + "/var/only", "");
  ASSERT_TRUE(Exists(Gen(1) + "/var/tmp"));
  ASSERT_TRUE(Exists(Gen(1) + "/usr/sbin"));

  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));  // the template qube stopped
  auto g = CurrentGeneration(layout(), "tpl");
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 2u);
  EXPECT_EQ(CurrentLink(), "gen/2");
  EXPECT_EQ(Slurp(Gen(2) + "/etc/hostname"), "changed\n");
  EXPECT_EQ(Slurp(Gen(2) + "/etc/new"), "new\n");
  EXPECT_EQ(std::filesystem::read_symlink(Gen(2) + "/etc/new-link").string(), "hostname");
  EXPECT_FALSE(Exists(Gen(2) + "/etc/hosts"));
  EXPECT_FALSE(Exists(Gen(2) + "/usr/sbin"));
  EXPECT_TRUE(Exists(Gen(2) + "/usr/bin"));
  EXPECT_TRUE(Exists(Gen(2) + "/var/only"));
  EXPECT_FALSE(Exists(Gen(2) + "/var/tmp"));  // hidden by the opaque /var
  EXPECT_EQ(LStat(Gen(2) + "/tmp").st_mode & 07777, 01777u);
  // Untouched files are the same inodes: hard links, not copies.
  EXPECT_EQ(LStat(Gen(2) + "/etc/passwd").st_nlink, 1u);  // generation 1 is collected
  // The changes are now part of the generation: the upper is empty again.
  EXPECT_TRUE(std::filesystem::is_empty(Upper()));
  EXPECT_FALSE(Exists(Gen(1)));  // nothing uses generation 1 any more
  EXPECT_TRUE(Hidden(layout().TemplateDir("tpl") + "/gen").empty());
}

// What `setcap cap_net_raw+ep` and `setfacl` leave survive the commit; the
// overlay's own attributes do not.
TEST_F(GenerationsTest, ACommitKeepsFileCapabilitiesAndOtherXattrs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (security.capability)";
  StartTemplateQube();
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/usr/bin"));
  std::string ping = Upper() + "/usr/bin/ping";
  Spit(ping, "#!/bin/sh\n");
  ASSERT_EQ(::chmod(ping.c_str(), 0755), 0);
  // VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_RAW (13), no rootid.
  const uint32_t cap[5] = {0x02000001, 1u << 13, 0, 0, 0};
  ASSERT_EQ(::setxattr(ping.c_str(), "security.capability", cap, sizeof cap, 0), 0)
      << std::strerror(errno);
  ASSERT_EQ(::setxattr(ping.c_str(), "user.origin", "apt", 3, 0), 0) << std::strerror(errno);
  ASSERT_EQ(::setxattr((Upper() + "/usr").c_str(), "user.overlay.impure", "y", 1, 0), 0);
  ASSERT_EQ(::setxattr((Upper() + "/usr/bin").c_str(), "user.dir", "kept", 4, 0), 0);
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));

  std::string out = Gen(2) + "/usr/bin/ping";
  uint32_t got[5] = {};
  ASSERT_EQ(::getxattr(out.c_str(), "security.capability", got, sizeof got),
            static_cast<ssize_t>(sizeof cap))
      << std::strerror(errno);
  EXPECT_EQ(std::memcmp(got, cap, sizeof cap), 0);
  char value[8] = {};
  EXPECT_EQ(::getxattr(out.c_str(), "user.origin", value, sizeof value), 3);
  EXPECT_STREQ(value, "apt");
  EXPECT_EQ(LStat(out).st_mode & 07777, 0755u);
  char dir[8] = {};
  EXPECT_EQ(::getxattr((Gen(2) + "/usr/bin").c_str(), "user.dir", dir, sizeof dir), 4);
  EXPECT_LT(::getxattr((Gen(2) + "/usr").c_str(), "user.overlay.impure", value, sizeof value), 0)
      << "the overlay's own attribute was copied";
}

TEST_F(GenerationsTest, UnchangedFilesAreHardLinksAndTheOldGenerationStaysAsItWas) {
  auto app = AcquireGeneration(layout(), "tpl", "work", GenerationRole::kApp);
  ASSERT_TRUE(app) << app.error().ToString();
  StartTemplateQube();
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/hostname", "changed\n");
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  EXPECT_EQ(LStat(Gen(2) + "/bin/busybox").st_ino, LStat(Gen(1) + "/bin/busybox").st_ino);
  EXPECT_NE(LStat(Gen(2) + "/etc/hostname").st_ino, LStat(Gen(1) + "/etc/hostname").st_ino);
  EXPECT_EQ(Slurp(Gen(1) + "/etc/hostname"), "localhost\n");  // what "work" runs on
}

TEST_F(GenerationsTest, UsedGenerationsAreKeptAndCollectedAfterTheirLastUser) {
  auto work = AcquireGeneration(layout(), "tpl", "work", GenerationRole::kApp);
  ASSERT_TRUE(work) << work.error().ToString();
  StartTemplateQube();
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/hostname", "changed\n");
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  auto dev = AcquireGeneration(layout(), "tpl", "dev", GenerationRole::kApp);
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->number, 2u);   // a qube started now gets the new generation
  ASSERT_TRUE(Exists(Gen(1)));  // "work" still runs on it

  auto status = GetGenerationStatus(layout(), "tpl");
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(status->current, 2u);
  EXPECT_EQ(status->generations, (std::vector<uint64_t>{1, 2}));
  ASSERT_EQ(status->users.size(), 2u);
  EXPECT_EQ(status->users[0].qube, "dev");
  EXPECT_EQ(status->users[1].qube, "work");
  EXPECT_EQ(status->users[1].generation, 1u);

  // Collection (daemon start) keeps what is used.
  ASSERT_TRUE(CollectAllGenerations(layout()));
  EXPECT_TRUE(Exists(Gen(1)));
  ASSERT_TRUE(ReleaseGenerations(layout(), "work"));
  EXPECT_FALSE(Exists(Gen(1)));
  EXPECT_TRUE(Exists(Gen(2)));  // current, and used by "dev"
  ASSERT_TRUE(ReleaseGenerations(layout(), "dev"));
  EXPECT_TRUE(Exists(Gen(2)));  // current: never collected
}

TEST_F(GenerationsTest, TheTemplateQubeKeepsItsGenerationAndChangesWhileRecorded) {
  StartTemplateQube();
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/mine", "mine\n");
  // A restart after a crash (its record is still there): nothing is committed
  // under it, it goes on with the same generation and changes.
  auto again = AcquireGeneration(layout(), "tpl", "tpl", GenerationRole::kTemplateQube);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->number, 1u);
  EXPECT_EQ(Slurp(Upper() + "/etc/mine"), "mine\n");
  // A commit while it runs is refused, saying why.
  auto commit = CommitTemplateChanges(layout(), "tpl");
  ASSERT_FALSE(commit);
  EXPECT_EQ(commit.error().errno_value(), EBUSY);
  EXPECT_THAT(commit.error().ToString(), HasSubstr("template qube tpl is running"));
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  EXPECT_EQ(Slurp(Gen(2) + "/etc/mine"), "mine\n");
}

TEST_F(GenerationsTest, ChangesLeftWithoutARecordAreCommittedAtTheNextStart) {
  // A host crash: the runtime dir (and the record) is gone, the changes stay.
  StartTemplateQube();
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/mine", "mine\n");
  std::filesystem::remove_all(layout().runtime_dir + "/generations");
  auto g = AcquireGeneration(layout(), "tpl", "tpl", GenerationRole::kTemplateQube);
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 2u);
  EXPECT_EQ(Slurp(Gen(2) + "/etc/mine"), "mine\n");
  EXPECT_TRUE(std::filesystem::is_empty(Upper()));
}

TEST_F(GenerationsTest, TemplateCommitWithNothingToCommitKeepsTheGeneration) {
  auto g = CommitTemplateChanges(layout(), "tpl");
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 1u);
  EXPECT_FALSE(Exists(Gen(2)));
}

TEST_F(GenerationsTest, AFailedCommitLeavesTheOldGenerationCurrentAndNothingHalfMade) {
  StartTemplateQube();
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/hostname", "changed\n");
  CommitOptions fail;
  fail.before_publish = [] { return Err(Error("injected failure", EIO)); };
  auto failed = CommitTemplateChanges(layout(), "tpl", fail);
  ASSERT_FALSE(failed);
  EXPECT_THAT(failed.error().ToString(), HasSubstr("injected"));
  EXPECT_EQ(CurrentLink(), "gen/1");
  EXPECT_FALSE(Exists(Gen(2)));
  EXPECT_TRUE(Hidden(layout().TemplateDir("tpl") + "/gen").empty());
  EXPECT_EQ(Slurp(Upper() + "/etc/hostname"), "changed\n");  // nothing lost

  // A crash after the new generation got its name, before it became current:
  // the old one stays current and the changes stay; the next commit makes
  // them current and collects the orphan.
  CommitOptions crash;
  crash.before_switch = [] { return Err(Error("injected crash", EIO)); };
  ASSERT_FALSE(CommitTemplateChanges(layout(), "tpl", crash));
  EXPECT_EQ(CurrentLink(), "gen/1");
  EXPECT_EQ(Slurp(Gen(1) + "/etc/hostname"), "localhost\n");
  EXPECT_TRUE(Exists(Gen(2)));
  auto g = CommitTemplateChanges(layout(), "tpl");
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 3u);
  EXPECT_EQ(Slurp(Gen(3) + "/etc/hostname"), "changed\n");
  EXPECT_FALSE(Exists(Gen(2)));
  EXPECT_FALSE(Exists(Gen(1)));
}

TEST_F(GenerationsTest, LeftoversOfAKilledCommitAreRemovedAtTheNextUse) {
  // What a commit killed midway leaves: a hidden, half-built tree and a
  // half-made changes replacement.
  std::string tmp = layout().TemplateDir("tpl") + "/gen/.tmp-AbCdEf";
  ASSERT_TRUE(std::filesystem::create_directories(tmp + "/etc"));
  Spit(tmp + "/etc/half", "");
  ASSERT_TRUE(std::filesystem::create_directories(layout().TemplateDir("tpl") +
                                                  "/.changes.tmp-XyZ123/upper"));
  auto g = AcquireGeneration(layout(), "tpl", "work", GenerationRole::kApp);
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->number, 1u);
  EXPECT_TRUE(Hidden(layout().TemplateDir("tpl") + "/gen").empty());
  EXPECT_FALSE(Exists(layout().TemplateDir("tpl") + "/.changes.tmp-XyZ123"));
}

TEST_F(GenerationsTest, ACrashBetweenSwitchAndClearingTheChangesCommitsTheSameTreeAgain) {
  StartTemplateQube();
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/hostname", "changed\n");
  if (!Whiteout(Upper() + "/etc/hosts")) return;
  ASSERT_TRUE(CommitTemplateChanges(layout(), "tpl"));
  // Put the same changes back, as if the clearing never happened.
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/etc"));
  Spit(Upper() + "/etc/hostname", "changed\n");
  if (!Whiteout(Upper() + "/etc/hosts")) return;
  auto g = CommitTemplateChanges(layout(), "tpl");
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(Slurp(g->path + "/etc/hostname"), "changed\n");
  EXPECT_FALSE(Exists(g->path + "/etc/hosts"));
  EXPECT_TRUE(Exists(g->path + "/etc/passwd"));
}

TEST_F(GenerationsTest, AnOverlayRedirectIsRefusedRatherThanMisapplied) {
  StartTemplateQube();
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  ASSERT_TRUE(std::filesystem::create_directories(Upper() + "/moved"));
  ASSERT_EQ(::setxattr((Upper() + "/moved").c_str(), "user.overlay.redirect", "/etc", 4, 0), 0);
  auto g = CommitTemplateChanges(layout(), "tpl");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().errno_value(), EINVAL);
  EXPECT_THAT(g.error().ToString(), HasSubstr("overlay.redirect"));
  EXPECT_EQ(CurrentLink(), "gen/1");
}

TEST_F(GenerationsTest, AnUpperFileOfAForeignHostIdIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a file to a foreign id";
  StartTemplateQube();
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  Spit(Upper() + "/foreign", "");
  ASSERT_EQ(::chown((Upper() + "/foreign").c_str(), 70000, 70000), 0);
  auto g = CommitTemplateChanges(layout(), "tpl");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().errno_value(), EPERM);
  EXPECT_THAT(g.error().ToString(), HasSubstr("foreign"));
}

TEST_F(GenerationsTest, RemoveAndReplaceAreRefusedWhileAQubeUsesTheTemplate) {
  ASSERT_TRUE(AcquireGeneration(layout(), "tpl", "work", GenerationRole::kApp));
  ASSERT_TRUE(AcquireGeneration(layout(), "tpl", "tpl", GenerationRole::kTemplateQube));
  auto removed = RemoveTemplate(layout(), "tpl");
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().errno_value(), EBUSY);
  EXPECT_THAT(removed.error().ToString(),
              HasSubstr("in use by tpl (template qube, generation 1), work (generation 1)"));
  TemplateBuildOptions replace;
  replace.replace = true;
  auto rebuilt = BuildTemplate(layout(), "tpl", replace);
  ASSERT_FALSE(rebuilt);
  EXPECT_EQ(rebuilt.error().errno_value(), EBUSY);
  EXPECT_TRUE(Exists(Gen(1) + "/bin/busybox"));

  ASSERT_TRUE(ReleaseGenerations(layout(), "work"));
  ASSERT_TRUE(ReleaseGenerations(layout(), "tpl"));
  ASSERT_TRUE(RemoveTemplate(layout(), "tpl"));
  EXPECT_FALSE(Exists(layout().TemplateDir("tpl")));
}

}  // namespace
}  // namespace tessera::storage
