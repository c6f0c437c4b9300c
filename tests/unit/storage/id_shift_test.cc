// ShiftTreeOwnership / ShiftPrivateVolume: the one id-shifting rule (as root).

#include "storage/id_shift.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/unique_fd.h"
#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using ::testing::HasSubstr;
using testing::LStat;
using testing::Spit;
using testing::TempLayout;

constexpr uid_t kFrom = kFirstHostId + 3 * kIdsPerQube;
constexpr uid_t kTo = kFirstHostId + 9 * kIdsPerQube;

class IdShiftTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "chown to other ids needs root";
    dir_ = t_.base() + "/tree";
    std::filesystem::create_directories(dir_);
  }
  Status Shift(const IdShift& shift) {
    UniqueFd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return ShiftTreeOwnership(fd.get(), dir_, shift);
  }
  void Own(const std::string& path, uid_t uid, gid_t gid) {
    ASSERT_EQ(::lchown(path.c_str(), uid, gid), 0) << path;
  }

  TempLayout t_;
  std::string dir_;
};

TEST_F(IdShiftTest, MapFollowsTheRule) {
  IdShift shift{.from_base = kFrom, .to_base = kTo};
  EXPECT_EQ(*shift.Map(kFrom, "f"), kTo);
  EXPECT_EQ(*shift.Map(kFrom + 65535, "f"), kTo + 65535);
  EXPECT_EQ(*shift.Map(kTo + 7, "f"), kTo + 7);  // already shifted
  auto foreign = shift.Map(kFrom + 65536, "some/file");
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().errno_value(), EPERM);
  EXPECT_THAT(foreign.error().message(), HasSubstr("some/file"));
  IdShift from_root{.from_base = 0, .to_base = kTo};
  EXPECT_FALSE(from_root.Map(70000, "f"));
}

TEST_F(IdShiftTest, SetuidAndSetgidBitsSurviveWithTheShiftedOwner) {
  Spit(dir_ + "/suid", "x");
  ASSERT_EQ(::chmod((dir_ + "/suid").c_str(), 06755), 0);
  std::filesystem::create_directories(dir_ + "/shared");
  ASSERT_EQ(::chmod((dir_ + "/shared").c_str(), 02775), 0);
  Own(dir_ + "/shared", 0, 100);
  Status s = Shift({.from_base = 0, .to_base = kTo});
  ASSERT_TRUE(s) << s.error().ToString();
  struct stat suid = LStat(dir_ + "/suid");
  EXPECT_EQ(suid.st_uid, kTo);
  EXPECT_EQ(suid.st_gid, kTo);
  EXPECT_EQ(suid.st_mode & 07777, 06755u);
  struct stat shared = LStat(dir_ + "/shared");
  EXPECT_EQ(shared.st_gid, kTo + 100);
  EXPECT_EQ(shared.st_mode & 07777, 02775u);
  EXPECT_EQ(LStat(dir_).st_uid, kTo);  // the top too
}

TEST_F(IdShiftTest, ForeignIdsAreRefusedNamingTheFile) {
  Spit(dir_ + "/ok", "x");
  Spit(dir_ + "/foreign", "x");
  Own(dir_ + "/foreign", 70000, 0);  // >= 65536 and in neither range
  Status s = Shift({.from_base = 0, .to_base = kTo});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errno_value(), EPERM);
  EXPECT_THAT(s.error().message(), HasSubstr(dir_ + "/foreign"));
  EXPECT_EQ(LStat(dir_ + "/foreign").st_uid, 70000u);  // never silently left shifted or not
  EXPECT_EQ(LStat(dir_).st_uid, 0u);  // the top is shifted last: not done
}

TEST_F(IdShiftTest, AnInterruptedShiftResumesAndRunningTwiceChangesNothing) {
  for (int i = 0; i < 10; ++i) Spit(dir_ + "/f" + std::to_string(i), "x");
  for (int i = 0; i < 5; ++i) Own(dir_ + "/f" + std::to_string(i), kTo + 1000, kTo + 1000);
  for (int i = 5; i < 10; ++i) Own(dir_ + "/f" + std::to_string(i), kFrom + 1000, kFrom + 1000);
  Own(dir_, kFrom, kFrom);
  ASSERT_TRUE(Shift({.from_base = kFrom, .to_base = kTo}));
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(LStat(dir_ + "/f" + std::to_string(i)).st_uid, kTo + 1000) << i;
  }
  ASSERT_TRUE(Shift({.from_base = kFrom, .to_base = kTo}));
  EXPECT_EQ(LStat(dir_ + "/f7").st_gid, kTo + 1000);
  EXPECT_EQ(LStat(dir_).st_uid, kTo);
}

TEST_F(IdShiftTest, SymlinksAreShiftedThemselvesNeverFollowed) {
  std::string outside = t_.base() + "/outside";
  Spit(outside, "host file");
  ASSERT_EQ(::chmod(outside.c_str(), 0640), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (dir_ + "/link").c_str()), 0);
  std::filesystem::create_directories(t_.base() + "/outdir");
  ASSERT_EQ(::symlink((t_.base() + "/outdir").c_str(), (dir_ + "/dirlink").c_str()), 0);
  ASSERT_TRUE(Shift({.from_base = 0, .to_base = kTo}));
  EXPECT_EQ(LStat(dir_ + "/link").st_uid, kTo);
  EXPECT_EQ(LStat(outside).st_uid, 0u);
  EXPECT_EQ(LStat(outside).st_mode & 07777, 0640u);
  EXPECT_EQ(LStat(t_.base() + "/outdir").st_uid, 0u);
}

TEST_F(IdShiftTest, HardLinksAreShiftedOnce) {
  Spit(dir_ + "/a", "x");
  ASSERT_EQ(::link((dir_ + "/a").c_str(), (dir_ + "/b").c_str()), 0);
  Own(dir_ + "/a", 5, 6);
  ASSERT_TRUE(Shift({.from_base = 0, .to_base = kTo}));
  EXPECT_EQ(LStat(dir_ + "/b").st_uid, kTo + 5);
  EXPECT_EQ(LStat(dir_ + "/b").st_gid, kTo + 6);
}

TEST_F(IdShiftTest, DeepTreesUpToTheLimitAndNotBeyond) {
  std::string path = dir_;
  for (int i = 0; i < kMaxShiftDepth - 1; ++i) {
    path += "/d";
    ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  }
  Spit(path + "/leaf", "x");
  Status s = Shift({.from_base = 0, .to_base = kTo});
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(LStat(path + "/leaf").st_uid, kTo);
  // One level more is refused.
  ASSERT_EQ(::mkdir((path + "/d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((path + "/d/d").c_str(), 0755), 0);
  Status deep = Shift({.from_base = 0, .to_base = kTo});
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().errno_value(), ELOOP);
}

TEST_F(IdShiftTest, PrivateVolumeOfAnOlderVersionIsShiftedOnce) {
  const Layout& layout = t_.layout();
  std::string priv = layout.PrivateVolume("legacy");
  std::filesystem::create_directories(priv + "/home/user");
  std::filesystem::create_directories(priv + "/rw");
  Spit(priv + "/home/user/notes", "mine");
  Own(priv + "/home/user", 1000, 1000);
  Own(priv + "/home/user/notes", 1000, 1000);
  IdRange ids{kTo, kIdsPerQube};
  Status s = ShiftPrivateVolume(layout, "legacy", ids);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(LStat(priv).st_uid, kTo);
  EXPECT_EQ(LStat(priv + "/home/user/notes").st_uid, kTo + 1000);
  // Done: a second call does not walk again (a foreign file added now stays).
  Spit(priv + "/rw/later", "x");
  Own(priv + "/rw/later", 70000, 70000);
  EXPECT_TRUE(ShiftPrivateVolume(layout, "legacy", ids));
  // Owned by some other range: refused.
  Own(priv, kFrom, kFrom);
  Status other = ShiftPrivateVolume(layout, "legacy", ids);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().errno_value(), EPERM);
  EXPECT_THAT(other.error().message(), HasSubstr(priv));
}

}  // namespace
}  // namespace tessera::storage
