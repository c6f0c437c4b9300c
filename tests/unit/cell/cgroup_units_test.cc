// Scope unit names, the check of a record's unit directory, and the cell
// record's unit fields (no root, no systemd needed).

#include "cell/cgroup_units.h"

#include <gtest/gtest.h>

#include <string>

#include "cell/cell_record.h"
#include "common/fs.h"
#include "support/temp_dir.h"

namespace tessera::cell {
namespace {

TEST(ScopeUnitName, TheDefaultRuntimeDirGetsThePlainNameOthersTheirTag) {
  EXPECT_EQ(ScopeUnitName("/run/tessera", "work"), "tessera-work.scope");
  std::string other = ScopeUnitName("/tmp/t1/run", "work");
  EXPECT_EQ(other, "tessera-" + InstanceTag("/tmp/t1/run") + "-work.scope");
  EXPECT_NE(other, ScopeUnitName("/tmp/t2/run", "work"));
  EXPECT_TRUE(IsScopeUnitOf(other, "work"));
  EXPECT_TRUE(IsScopeUnitOf("tessera-work.scope", "work"));
}

TEST(IsScopeUnitOf, OnlyTheQubesOwnName) {
  for (const char* bad : {"tessera-a-work.scope", "tessera-vault.scope", "tessera-work.service",
                          "tessera-.scope", "work.scope", "tessera-0123456789ab-work.scopex",
                          "tessera-0123456789AB-work.scope", "tessera-0123456789a-work.scope",
                          "tessera-0123456789abc-work.scope", "xtessera-work.scope"}) {
    EXPECT_FALSE(IsScopeUnitOf(bad, "work")) << bad;
  }
  EXPECT_TRUE(IsScopeUnitOf("tessera-0123456789ab-work.scope", "work"));
  EXPECT_FALSE(IsScopeUnitOf("tessera-.scope", ""));
}

TEST(IsQubeScopeDir, OnlyTheQubesScopeBelowTheCgroupRoot) {
  EXPECT_TRUE(IsQubeScopeDir("/sys/fs/cgroup/tessera.slice/tessera-work.scope", "work"));
  EXPECT_TRUE(IsQubeScopeDir("/sys/fs/cgroup/a.slice/b/tessera-work.scope", "work"));
  EXPECT_FALSE(IsQubeScopeDir("/sys/fs/cgroup/tessera.slice/tessera-work.scope", "vault"));
  for (const char* bad :
       {"/sys/fs/cgroup/tessera.slice", "/sys/fs/cgroup/tessera-work.service",
        "/sys/fs/cgroup/../cgroup/tessera-work.scope", "/sys/fs/cgroup/x/./tessera-work.scope",
        "/sys/fs/cgroupx/tessera-work.scope", "/sys/fs/cgroup//tessera-work.scope",
        "/tmp/tessera-work.scope", "sys/fs/cgroup/tessera-work.scope", "/sys/fs/cgroup/init.scope",
        "/sys/fs/cgroup/tessera-work.scope/"}) {
    EXPECT_FALSE(IsQubeScopeDir(bad, "work")) << bad;
  }
}

class CellRecordUnit : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  tessera::testing::TempDir dir_;
};

TEST_F(CellRecordUnit, TheUnitAndItsDirectoryRoundTrip) {
  CellRecord r{.name = "work",
               .pid = 42,
               .start_time = 7,
               .cgroups = {"/sys/fs/cgroup/tessera.slice/tessera-work.scope"},
               .cgroup_unit = "tessera-work.scope"};
  ASSERT_TRUE(WriteCellRecord(dir_.path() + "/cell.json", r));
  auto read = ReadCellRecord(dir_.path() + "/cell.json");
  ASSERT_TRUE(read) << read.error().ToString();
  EXPECT_EQ(read->cgroup_unit, "tessera-work.scope");
  EXPECT_EQ(read->cgroups, r.cgroups);
  // tessera's own cgroups: no unit.
  r.cgroup_unit.clear();
  r.cgroups = {"/sys/fs/cgroup/memory/tessera/abc/work", "/sys/fs/cgroup/pids/tessera/abc/work"};
  ASSERT_TRUE(WriteCellRecord(dir_.path() + "/cell.json", r));
  read = ReadCellRecord(dir_.path() + "/cell.json");
  ASSERT_TRUE(read) << read.error().ToString();
  EXPECT_EQ(read->cgroup_unit, "");
  EXPECT_EQ(read->cgroups.size(), 2u);
}

// A record is a file: one naming a cgroup that is not the unit's qube scope
// (the daemon would kill whatever is in it) is refused.
TEST_F(CellRecordUnit, AUnitRecordNamingAnotherCgroupIsRefused) {
  const std::pair<const char*, const char*> bad[] = {
      {"tessera-work.scope", "/sys/fs/cgroup/system.slice/sshd.service"},
      {"tessera-work.scope", "/sys/fs/cgroup/tessera.slice/tessera-other.scope"},
      {"tessera-work.scope", "/sys/fs/cgroup/tessera.slice/../init.scope/tessera-work.scope"},
      {"sshd.service", "/sys/fs/cgroup/system.slice/sshd.service"},
      {"tessera-work.scope", "/sys/fs/cgroup/tessera.slice/xtessera-work.scope"},
      // Another qube's scope, consistent in itself: not this record's to kill.
      {"tessera-vault.scope", "/sys/fs/cgroup/tessera.slice/tessera-vault.scope"},
  };
  for (const auto& [unit, dir] : bad) {
    CellRecord r{.name = "work", .pid = 42, .start_time = 7, .cgroups = {dir}, .cgroup_unit = unit};
    ASSERT_TRUE(WriteCellRecord(dir_.path() + "/cell.json", r));
    auto read = ReadCellRecord(dir_.path() + "/cell.json");
    ASSERT_FALSE(read) << unit << " " << dir;
    EXPECT_EQ(read.error().errno_value(), EPROTO);
  }
  ASSERT_TRUE(WriteFileAtomic(
      dir_.path() + "/cell.json",
      R"({"name":"work","init_pid":42,"start_time":7,"cgroup_unit":"tessera-work.scope"})"));
  EXPECT_FALSE(ReadCellRecord(dir_.path() + "/cell.json")) << "a unit without its directory";
}

}  // namespace
}  // namespace tessera::cell
