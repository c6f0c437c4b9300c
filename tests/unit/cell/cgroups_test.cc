// cgroup hierarchy detection against fake hierarchy roots (no root needed).

#include "cell/cgroups.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>

#include "common/fs.h"
#include "support/temp_dir.h"

namespace tessera::cell {
namespace {

class CgroupDetect : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(root_.empty()); }

  tessera::testing::TempDir dir_;
  const std::string& root_ = dir_.path();
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

TEST_F(CgroupDetect, WholeDiskOfMapsAPartitionToItsDisk) {
  // A fake sysfs where the device of root_ is partition 1 of disk 8:0.
  struct stat st;
  ASSERT_EQ(::stat(root_.c_str(), &st), 0);
  if (major(st.st_dev) == 0) GTEST_SKIP() << "/tmp is on no block device";
  std::string dev = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  std::string sys = root_ + "/sys";
  ASSERT_TRUE(MakeDirs(sys + "/devices/sda/sda1"));
  ASSERT_TRUE(MakeDirs(sys + "/dev/block"));
  ASSERT_TRUE(WriteFileAtomic(sys + "/devices/sda/dev", "8:0\n", 0644));
  ASSERT_TRUE(WriteFileAtomic(sys + "/devices/sda/sda1/dev", dev + "\n", 0644));
  ASSERT_TRUE(WriteFileAtomic(sys + "/devices/sda/sda1/partition", "1\n", 0644));
  ASSERT_EQ(::symlink("../../devices/sda/sda1", (sys + "/dev/block/" + dev).c_str()), 0);
  auto disk = WholeDiskOf(root_, sys);
  ASSERT_TRUE(disk) << disk.error().ToString();
  EXPECT_EQ(*disk, "8:0");
  // A whole disk is its own.
  ASSERT_EQ(::unlink((sys + "/devices/sda/sda1/partition").c_str()), 0);
  EXPECT_EQ(*WholeDiskOf(root_, sys), dev);
  // No sysfs entry, or no block device at all (tmpfs): ENODEV.
  EXPECT_EQ(WholeDiskOf(root_, root_ + "/nosys").error().errno_value(), ENODEV);
  EXPECT_EQ(WholeDiskOf("/dev/shm").error().errno_value(), ENODEV);
}

TEST(Cgroups, IoMaxLineUsesMaxForUnlimited) {
  EXPECT_EQ(IoMaxLine("254:0", {.read_bps = 0, .write_bps = 1048576, .read_iops = 200, .write_iops = 0}),
            "254:0 rbps=max wbps=1048576 riops=200 wiops=max");
}

// /proc/<pid>/cgroup of a hybrid host: v1 lines with their controllers, a
// named hierarchy, the v2 line without any.
TEST(ProcCgroup, LinesGiveControllersAndPaths) {
  auto lines = ParseProcCgroup(
      "12:cpu,cpuacct:/a\n4:memory:/user.slice\n1:name=systemd:/init.scope\n0::/tessera.slice/"
      "tessera-work.scope\nbroken line\n");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(lines[0].Has("cpu"));
  EXPECT_TRUE(lines[0].Has("cpuacct"));
  EXPECT_FALSE(lines[0].Has("cpuset"));
  EXPECT_FALSE(lines[0].Has("cpu,cpuacct")) << "one controller at a time";
  EXPECT_EQ(lines[1].path, "/user.slice");
  EXPECT_TRUE(lines[1].Has("memory"));
  EXPECT_FALSE(lines[2].Has("systemd"));
  EXPECT_EQ(lines[3].controllers, "");
  EXPECT_EQ(lines[3].path, "/tessera.slice/tessera-work.scope");
  EXPECT_FALSE(lines[3].Has(""));
  EXPECT_TRUE(ParseProcCgroup("").empty());
}

}  // namespace
}  // namespace tessera::cell
