// cgroup hierarchy detection against fake hierarchy roots (no root needed).

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "cell/cgroups.h"
#include "common/fs.h"

namespace tessera::cell {
namespace {

class CgroupDetect : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tessera-cgroup-detect-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  std::string root_;
};

TEST_F(CgroupDetect, UnifiedHierarchyWithTheControllersIsV2) {
  ASSERT_TRUE(WriteFileAtomic(root_ + "/cgroup.controllers", "cpuset cpu io memory pids\n", 0644));
  auto sys = CgroupSystem::Detect(root_);
  ASSERT_TRUE(sys) << sys.error().ToString();
  EXPECT_EQ(sys->version, CgroupVersion::kV2);
  EXPECT_EQ(sys->root, root_);
}

TEST_F(CgroupDetect, PerControllerHierarchiesAreV1) {
  // A v2 root lacking a controller (the empty unified tree of a hybrid host)
  // does not count; the v1 hierarchies do.
  ASSERT_TRUE(WriteFileAtomic(root_ + "/cgroup.controllers", "\n", 0644));
  for (const char* ctrl : {"memory", "pids", "cpu"}) {
    ASSERT_TRUE(MakeDirs(root_ + "/" + ctrl));
    ASSERT_TRUE(WriteFileAtomic(root_ + "/" + ctrl + "/cgroup.procs", "", 0644));
  }
  auto sys = CgroupSystem::Detect(root_);
  ASSERT_TRUE(sys) << sys.error().ToString();
  EXPECT_EQ(sys->version, CgroupVersion::kV1);
  // The cells' paths follow the root given.
  auto cg = CellCgroups::ForQube("/run/x", "work", root_);
  ASSERT_TRUE(cg);
  EXPECT_EQ(cg->dirs()[0], root_ + "/memory/tessera/" + InstanceTag("/run/x") + "/work");
}

TEST_F(CgroupDetect, NeitherIsAnErrorNamingTheRoot) {
  auto sys = CgroupSystem::Detect(root_);
  ASSERT_FALSE(sys);
  EXPECT_EQ(sys.error().errno_value(), ENOTSUP);
  EXPECT_NE(sys.error().ToString().find(root_), std::string::npos);
}

}  // namespace
}  // namespace tessera::cell
