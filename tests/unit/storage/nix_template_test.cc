// GC roots of Nix closures (storage/nix_template.h): held per qube, replaced
// atomically, released, and pruned at daemon start for qubes not running.

#include "storage/nix_template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace tessera::storage {
namespace {

class NixRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tessera-gcroots-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::setenv("TESSERA_NIX_GCROOTS", dir_.c_str(), 1);
    layout_.state_dir = "/var/lib/tessera-test";
    layout_.runtime_dir = dir_ + "/run";
  }
  void TearDown() override {
    ::unsetenv("TESSERA_NIX_GCROOTS");
    std::filesystem::remove_all(dir_);
  }
  std::string Target(const std::string& qube) {
    std::error_code ec;
    return std::filesystem::read_symlink(NixGcRootsDir(layout_) + "/" + qube, ec).string();
  }

  std::string dir_;
  Layout layout_;
  const std::string a_ = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-env-a";
  const std::string b_ = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-env-b";
};

TEST_F(NixRootsTest, HeldPerQubeUnderTheStateDirsOwnDirectory) {
  // As systemd escapes paths: "/" becomes "-", a "-" of the path "\\x2d".
  EXPECT_EQ(NixGcRootsDir(layout_), dir_ + "/var-lib-tessera\\x2dtest");
  ASSERT_TRUE(HoldNixRoot(layout_, "work", a_));
  EXPECT_EQ(Target("work"), a_);
  ASSERT_TRUE(HoldNixRoot(layout_, "work", b_));  // a restart on a newer generation
  EXPECT_EQ(Target("work"), b_);
  ASSERT_TRUE(ReleaseNixRoot(layout_, "work"));
  EXPECT_EQ(Target("work"), "");
  EXPECT_TRUE(ReleaseNixRoot(layout_, "work")) << "releasing twice is fine";
  EXPECT_FALSE(HoldNixRoot(layout_, "work", "/etc")) << "only store paths";
  EXPECT_FALSE(HoldNixRoot(layout_, "../x", a_)) << "only qube names";
}

TEST_F(NixRootsTest, PruneKeepsOnlyRunningQubes) {
  ASSERT_TRUE(HoldNixRoot(layout_, "work", a_));
  ASSERT_TRUE(HoldNixRoot(layout_, "vault", b_));
  ASSERT_TRUE(PruneNixRoots(layout_, {"work"}));
  EXPECT_EQ(Target("work"), a_);
  EXPECT_EQ(Target("vault"), "");
  ASSERT_TRUE(PruneNixRoots(layout_, {}));
  EXPECT_EQ(Target("work"), "");
  std::filesystem::remove_all(NixGcRootsDir(layout_));
  EXPECT_TRUE(PruneNixRoots(layout_, {})) << "no directory: nothing to prune";
}

TEST(ClosureImageTest, NamesRoundTrip) {
  for (auto kind : {ClosureImage::kErofs, ClosureImage::kSquashfs, ClosureImage::kNone}) {
    EXPECT_EQ(*ParseClosureImage(ToString(kind)), kind);
  }
  EXPECT_FALSE(ParseClosureImage("zip"));
  EXPECT_EQ(ClosureImagePath("/s/gen/3", ClosureImage::kErofs),
            "/s/gen/3/nix/store/.tessera/closure.erofs");
  EXPECT_EQ(ClosureImagePath("/s/gen/3", ClosureImage::kNone), "");
}

}  // namespace
}  // namespace tessera::storage
