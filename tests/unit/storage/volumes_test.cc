#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using testing::Exists;
using testing::LStat;
using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

bool IsRoot() { return ::geteuid() == 0; }
constexpr const char* kNeedsRoot =
    "needs root: chowns into id ranges registered host-wide in /var/lib/tessera-ids";

TEST(PrivateVolumeTest, CreatesTreeOwnedByTheQubesIds) {
  if (!IsRoot()) GTEST_SKIP() << kNeedsRoot;
  TempLayout t;
  auto s = EnsurePrivateVolume(t.layout(), "work");
  ASSERT_TRUE(s) << s.error().ToString();
  IdRange ids = *LookupIdRange(t.layout(), "work");
  std::string priv = t.layout().PrivateVolume("work");
  struct stat home = LStat(priv + "/home");
  struct stat user = LStat(priv + "/home/user");
  struct stat rw = LStat(priv + "/rw");
  EXPECT_TRUE(S_ISDIR(home.st_mode) && S_ISDIR(user.st_mode) && S_ISDIR(rw.st_mode));
  EXPECT_EQ(LStat(priv).st_mode & 07777, 0700u);
  EXPECT_EQ(home.st_mode & 07777, 0755u);
  EXPECT_EQ(user.st_mode & 07777, 0700u);
  if (IsRoot()) {
    EXPECT_EQ(home.st_uid, ids.base);
    EXPECT_EQ(home.st_gid, ids.base);
    EXPECT_EQ(rw.st_uid, ids.base);
    EXPECT_EQ(user.st_uid, ids.base + 1000);
    EXPECT_EQ(user.st_gid, ids.base + 1000);
    EXPECT_EQ(LStat(priv).st_uid, ids.base);
    EXPECT_EQ(LStat(t.layout().QubeDir("work")).st_uid, 0u);
    EXPECT_EQ(LStat(t.layout().QubeDir("work")).st_mode & 07777, 0700u);
  }
}

TEST(PrivateVolumeTest, NeverTouchesExistingContent) {
  if (!IsRoot()) GTEST_SKIP() << kNeedsRoot;
  TempLayout t;
  ASSERT_TRUE(EnsurePrivateVolume(t.layout(), "work"));
  std::string priv = t.layout().PrivateVolume("work");
  Spit(priv + "/home/user/notes.txt", "keep me");
  ASSERT_EQ(::chmod((priv + "/rw").c_str(), 0750), 0);
  ASSERT_EQ(::chown((priv + "/rw").c_str(), 4242, 4242), 0);
  ASSERT_TRUE(EnsurePrivateVolume(t.layout(), "work"));
  EXPECT_EQ(Slurp(priv + "/home/user/notes.txt"), "keep me");
  EXPECT_EQ(LStat(priv + "/rw").st_mode & 07777, 0750u);
  EXPECT_EQ(LStat(priv + "/rw").st_uid, 4242u);
}

TEST(PrivateVolumeTest, RefusesASymlinkedHome) {
  if (!IsRoot()) GTEST_SKIP() << kNeedsRoot;
  TempLayout t;
  std::string outside = t.base() + "/outside";
  std::filesystem::create_directories(outside);
  std::string priv = t.layout().PrivateVolume("work");
  std::filesystem::create_directories(priv);
  std::filesystem::create_directory_symlink(outside, priv + "/home");
  auto s = EnsurePrivateVolume(t.layout(), "work");
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), ::testing::HasSubstr("home"));
  EXPECT_FALSE(Exists(outside + "/user"));
}

TEST(ScratchTest, CreatesFreshPrivateDirectory) {
  if (!IsRoot()) GTEST_SKIP() << kNeedsRoot;
  TempLayout t;
  auto dir = CreateScratch(t.layout(), "disp1");
  ASSERT_TRUE(dir) << dir.error().ToString();
  EXPECT_EQ(*dir, t.layout().runtime_dir + "/cells/disp1");
  EXPECT_EQ(LStat(*dir).st_mode & 07777, 0700u);
  // A leftover of a crashed run is replaced by an empty directory.
  std::filesystem::create_directories(*dir + "/upper/etc");
  Spit(*dir + "/upper/etc/junk", "x");
  auto again = CreateScratch(t.layout(), "disp1");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_TRUE(std::filesystem::is_empty(*again));
  ASSERT_TRUE(RemoveScratch(t.layout(), "disp1"));
  EXPECT_FALSE(Exists(*dir));
  EXPECT_TRUE(RemoveScratch(t.layout(), "disp1"));  // missing is fine
  EXPECT_FALSE(CreateScratch(t.layout(), "../../etc"));
}

TEST(DestroyQubeStorageTest, RemovesEverythingAndReleasesTheRange) {
  if (!IsRoot()) GTEST_SKIP() << kNeedsRoot;
  TempLayout t;
  ASSERT_TRUE(EnsurePrivateVolume(t.layout(), "disp7"));
  ASSERT_TRUE(CreateScratch(t.layout(), "disp7"));
  Spit(t.layout().PrivateVolume("disp7") + "/home/user/f", "data");
  ASSERT_TRUE(DestroyQubeStorage(t.layout(), "disp7"));
  EXPECT_FALSE(Exists(t.layout().QubeDir("disp7")));
  EXPECT_FALSE(Exists(t.layout().ScratchDir("disp7")));
  EXPECT_FALSE(LookupIdRange(t.layout(), "disp7"));
  EXPECT_TRUE(DestroyQubeStorage(t.layout(), "disp7"));  // idempotent
}

// ---- RemoveTree ----------------------------------------------------------------

TEST(RemoveTreeTest, RemovesNestedTreeAndToleratesMissing) {
  TempLayout t;
  std::string root = t.base() + "/tree";
  std::filesystem::create_directories(root + "/a/b/c");
  Spit(root + "/a/b/c/f", "x");
  Spit(root + "/top", "y");
  ASSERT_EQ(::mkfifo((root + "/a/fifo").c_str(), 0600), 0);
  auto s = RemoveTree(root);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_FALSE(Exists(root));
  EXPECT_TRUE(RemoveTree(root));
  EXPECT_TRUE(RemoveTree(t.base() + "/no/such/parent"));
  EXPECT_FALSE(RemoveTree("/"));
  EXPECT_FALSE(RemoveTree(""));
}

TEST(RemoveTreeTest, NeverFollowsSymlinks) {
  TempLayout t;
  std::string outside = t.base() + "/outside";
  std::filesystem::create_directories(outside + "/sub");
  Spit(outside + "/precious", "p");
  Spit(outside + "/sub/precious2", "p");
  std::string root = t.base() + "/hostile";
  std::filesystem::create_directories(root + "/d");
  std::filesystem::create_directory_symlink(outside, root + "/link");
  std::filesystem::create_directory_symlink(outside + "/sub", root + "/d/link2");
  std::filesystem::create_symlink(outside + "/precious", root + "/filelink");
  std::filesystem::create_symlink("../../outside", root + "/d/rel");
  ASSERT_TRUE(RemoveTree(root));
  EXPECT_FALSE(Exists(root));
  EXPECT_EQ(Slurp(outside + "/precious"), "p");
  EXPECT_EQ(Slurp(outside + "/sub/precious2"), "p");
  // A symlink as the tree itself is unlinked, its target kept.
  std::filesystem::create_directory_symlink(outside, t.base() + "/rootlink");
  ASSERT_TRUE(RemoveTree(t.base() + "/rootlink"));
  EXPECT_FALSE(Exists(t.base() + "/rootlink"));
  EXPECT_EQ(Slurp(outside + "/precious"), "p");
}

TEST(RemoveTreeTest, HandlesVeryDeepTreesWithFewFds) {
  TempLayout t;
  std::string root = t.base() + "/deep";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  // 1500 levels: deeper than PATH_MAX allows by path (built fd-relative) and
  // far past the 64 directories RemoveTree keeps open.
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 1500; ++i) {
    ASSERT_EQ(::mkdirat(fd, "directory", 0755), 0);
    if (i % 7 == 0) {
      int f = ::openat(fd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      ASSERT_GE(f, 0);
      ::close(f);
    }
    int next = ::openat(fd, "directory", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(next, 0);
    ::close(fd);
    fd = next;
  }
  ::close(fd);
  // Run in a child with a low fd limit: the removal must not need one fd per level.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rlimit lim = {128, 128};
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::_exit(RemoveTree(root) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(Exists(root));
}

TEST(RemoveTreeTest, ReadOnlyDirectoriesAsNonRoot) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to switch to an unprivileged uid for the test";
  TempLayout t;
  std::string root = t.base() + "/ro";
  ASSERT_EQ(::chmod(t.base().c_str(), 0777), 0);  // nobody must be able to unlink ro/
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(3);
    ::umask(022);
    if (::mkdir(root.c_str(), 0755) != 0) ::_exit(4);
    std::filesystem::create_directories(root + "/a/b");
    Spit(root + "/a/b/f", "x");
    Spit(root + "/a/g", "x");
    ::chmod((root + "/a/b").c_str(), 0500);
    ::chmod((root + "/a").c_str(), 0000);
    ::chmod(root.c_str(), 0500);
    ::_exit(RemoveTree(root) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(Exists(root));
}

}  // namespace
}  // namespace tessera::storage
