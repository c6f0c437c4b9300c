// EnsureStandaloneRoot: a standalone qube's persistent root, copied from a
// template (or built from busybox) with ownership shifted into the qube's range.

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using testing::Exists;
using testing::LStat;
using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

// Names in `dir` (without . and ..).
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

class StandaloneRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "shifting ownership needs root";
  }
  TempLayout t_;
};

TEST_F(StandaloneRootTest, CopiesTheTemplateShiftedIntoTheQubesRange) {
  ASSERT_TRUE(BuildTemplate(t_.layout(), "tpl", {}));
  std::string troot = t_.layout().TemplateRoot("tpl");
  // What a template qube may have left: a root setuid binary, a user file,
  // a setgid file of group 1000.
  std::filesystem::copy_file(troot + "/bin/busybox", troot + "/bin/suidsh");
  ASSERT_EQ(::chmod((troot + "/bin/suidsh").c_str(), 04755), 0);
  Spit(troot + "/etc/userfile", "u");
  ASSERT_EQ(::chown((troot + "/etc/userfile").c_str(), 1000, 1000), 0);
  Spit(troot + "/etc/sgid", "g");
  ASSERT_EQ(::chown((troot + "/etc/sgid").c_str(), 0, 1000), 0);
  ASSERT_EQ(::chmod((troot + "/etc/sgid").c_str(), 02755), 0);

  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  auto made = EnsureStandaloneRoot(t_.layout(), "solo", "tpl", ids);
  ASSERT_TRUE(made) << made.error().ToString();

  std::string root = t_.layout().StandaloneRoot("solo");
  struct stat top = LStat(root);
  EXPECT_EQ(top.st_uid, ids.base);
  EXPECT_EQ(top.st_gid, ids.base);
  EXPECT_EQ(top.st_mode & 07777, 0755u);
  struct stat bb = LStat(root + "/bin/busybox");
  EXPECT_EQ(bb.st_uid, ids.base);
  EXPECT_EQ(bb.st_mode & 07777, 0755u);
  // Setuid survives, but only for the qube's own root, never host root.
  struct stat suid = LStat(root + "/bin/suidsh");
  EXPECT_EQ(suid.st_uid, ids.base);
  EXPECT_EQ(suid.st_mode & 07777, 04755u);
  struct stat sgid = LStat(root + "/etc/sgid");
  EXPECT_EQ(sgid.st_uid, ids.base);
  EXPECT_EQ(sgid.st_gid, ids.base + 1000);
  EXPECT_EQ(sgid.st_mode & 07777, 02755u);
  EXPECT_EQ(LStat(root + "/etc/userfile").st_uid, ids.base + 1000);
  struct stat link = LStat(root + "/bin/sh");
  EXPECT_TRUE(S_ISLNK(link.st_mode));
  EXPECT_EQ(link.st_uid, ids.base);
  EXPECT_EQ(LStat(root + "/tmp").st_mode & 07777, 01777u);
  EXPECT_EQ(Slurp(root + "/etc/userfile"), "u");
  // The template itself is untouched, and the qube's directory stays private.
  EXPECT_EQ(LStat(troot + "/bin/busybox").st_uid, 0u);
  EXPECT_EQ(LStat(t_.layout().QubeDir("solo")).st_mode & 07777, 0700u);
  EXPECT_EQ(LStat(t_.layout().QubeDir("solo")).st_uid, 0u);
  // Nothing but the root and the lock beside it.
  auto names = Entries(t_.layout().QubeDir("solo"));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".root.lock", "root"}));
}

TEST_F(StandaloneRootTest, ATemplateFileOfAnUnmappableIdIsRefused) {
  ASSERT_TRUE(BuildTemplate(t_.layout(), "tpl", {}));
  std::string troot = t_.layout().TemplateRoot("tpl");
  Spit(troot + "/etc/far", "f");
  ASSERT_EQ(::chown((troot + "/etc/far").c_str(), 100000, 100000), 0);
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  auto made = EnsureStandaloneRoot(t_.layout(), "solo", "tpl", ids);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().errno_value(), EPERM);
  // Named in the generation the copy read (troot is the symlink to it).
  EXPECT_THAT(made.error().ToString(),
              ::testing::HasSubstr(t_.layout().TemplateDir("tpl") + "/gen/1/etc/far"));
  EXPECT_FALSE(Exists(t_.layout().StandaloneRoot("solo")));
}

TEST_F(StandaloneRootTest, BuildsFromBusyboxWithoutATemplate) {
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  auto made = EnsureStandaloneRoot(t_.layout(), "solo", "", ids);
  ASSERT_TRUE(made) << made.error().ToString();
  std::string root = t_.layout().StandaloneRoot("solo");
  EXPECT_EQ(LStat(root).st_uid, ids.base);
  EXPECT_EQ(LStat(root).st_mode & 07777, 0755u);
  EXPECT_EQ(LStat(root + "/bin/busybox").st_uid, ids.base);
  EXPECT_EQ(LStat(root + "/bin/busybox").st_mode & 07777, 0755u);
  EXPECT_EQ(LStat(root + "/bin/sh").st_uid, ids.base);
  EXPECT_EQ(LStat(root + "/etc/shadow").st_gid, ids.base);
  EXPECT_EQ(LStat(root + "/etc/shadow").st_mode & 07777, 0600u);
  EXPECT_EQ(LStat(root + "/tmp").st_mode & 07777, 01777u);
  EXPECT_THAT(Slurp(root + "/etc/passwd"), ::testing::HasSubstr("user:x:1000"));
}

TEST_F(StandaloneRootTest, SecondCallIsANoOp) {
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  ASSERT_TRUE(EnsureStandaloneRoot(t_.layout(), "solo", "", ids));
  std::string root = t_.layout().StandaloneRoot("solo");
  ino_t ino = LStat(root).st_ino;
  Spit(root + "/etc/motd", "mine");
  ASSERT_EQ(::unlink((root + "/bin/ls").c_str()), 0);
  ASSERT_TRUE(BuildTemplate(t_.layout(), "tpl", {}));
  ASSERT_TRUE(EnsureStandaloneRoot(t_.layout(), "solo", "tpl", ids));
  EXPECT_EQ(LStat(root).st_ino, ino);
  EXPECT_EQ(Slurp(root + "/etc/motd"), "mine");
  EXPECT_FALSE(Exists(root + "/bin/ls"));
}

TEST_F(StandaloneRootTest, FailureLeavesNothing) {
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  auto failed = EnsureStandaloneRoot(t_.layout(), "solo", "", ids, [] {
    return Status(Err(Error("standalone root creation failed on purpose", EIO)));
  });
  ASSERT_FALSE(failed);
  EXPECT_THAT(failed.error().ToString(), ::testing::HasSubstr("on purpose"));
  EXPECT_EQ(Entries(t_.layout().QubeDir("solo")), std::vector<std::string>{".root.lock"});

  auto missing = EnsureStandaloneRoot(t_.layout(), "solo", "nosuch", ids);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().errno_value(), ENOENT);
  EXPECT_THAT(missing.error().ToString(), ::testing::HasSubstr("template nosuch"));
  EXPECT_EQ(Entries(t_.layout().QubeDir("solo")), std::vector<std::string>{".root.lock"});
}

TEST_F(StandaloneRootTest, LeftoverOfACrashIsRemovedAndRootIsNeverHalfMade) {
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  ASSERT_TRUE(EnsurePrivateVolume(t_.layout(), "solo", ids));
  std::string crashed = t_.layout().QubeDir("solo") + "/.root.tmp-abcdef";
  std::filesystem::create_directories(crashed + "/bin");
  Spit(crashed + "/bin/half", "x");
  ASSERT_TRUE(EnsureStandaloneRoot(t_.layout(), "solo", "", ids));
  EXPECT_FALSE(Exists(crashed));
  EXPECT_TRUE(Exists(t_.layout().StandaloneRoot("solo") + "/bin/busybox"));
  EXPECT_TRUE(Exists(t_.layout().PrivateVolume("solo") + "/home/user"));
}

TEST_F(StandaloneRootTest, RefusesBadInputsAndASymlinkedRoot) {
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  EXPECT_EQ(EnsureStandaloneRoot(t_.layout(), "../x", "", ids).error().errno_value(), EINVAL);
  EXPECT_EQ(EnsureStandaloneRoot(t_.layout(), "solo", "../t", ids).error().errno_value(), EINVAL);
  // Identity "ranges" would store qube root as host root: the bug this avoids.
  EXPECT_EQ(EnsureStandaloneRoot(t_.layout(), "solo", "", IdRange{0, kIdsPerQube})
                .error()
                .errno_value(),
            EINVAL);
  EXPECT_EQ(EnsureStandaloneRoot(t_.layout(), "solo", "", IdRange{ids.base, 1000})
                .error()
                .errno_value(),
            EINVAL);
  EXPECT_FALSE(Exists(t_.layout().StandaloneRoot("solo")));
  std::filesystem::create_directories(t_.layout().QubeDir("solo"));
  ASSERT_EQ(::symlink("/", t_.layout().StandaloneRoot("solo").c_str()), 0);
  auto s = EnsureStandaloneRoot(t_.layout(), "solo", "", ids);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errno_value(), ENOTDIR);
}

TEST_F(StandaloneRootTest, DestroyQubeStorageRemovesIt) {
  IdRange ids = *AllocateIdRange(t_.layout(), "solo");
  ASSERT_TRUE(EnsurePrivateVolume(t_.layout(), "solo", ids));
  ASSERT_TRUE(EnsureStandaloneRoot(t_.layout(), "solo", "", ids));
  // A read-only directory the qube made does not stop the removal.
  std::string ro = t_.layout().StandaloneRoot("solo") + "/ro";
  std::filesystem::create_directories(ro + "/sub");
  ASSERT_EQ(::chmod(ro.c_str(), 0500), 0);
  ASSERT_TRUE(DestroyQubeStorage(t_.layout(), "solo"));
  EXPECT_FALSE(Exists(t_.layout().QubeDir("solo")));
  EXPECT_FALSE(LookupIdRange(t_.layout(), "solo"));
}

}  // namespace
}  // namespace tessera::storage
