// The scope properties a qube's limits become (the D-Bus side is exercised
// against a real systemd by tests/systemd/run.sh).

#include "daemon/systemd_scopes.h"

#include <gtest/gtest.h>

#include <map>

namespace tessera::daemon {
namespace {

std::map<std::string, ScopeProperty> ByName(const std::vector<ScopeProperty>& list) {
  std::map<std::string, ScopeProperty> out;
  for (const auto& p : list) EXPECT_TRUE(out.emplace(p.name, p).second) << "twice: " << p.name;
  return out;
}

TEST(ScopeProperties, DefaultsAreTheSliceThePidAndNoLimits) {
  auto p = ByName(ScopeProperties("tessera qube work", 1234, cell::CgroupLimits{}));
  EXPECT_EQ(std::get<std::string>(p.at("Slice").value), "tessera.slice");
  EXPECT_EQ(std::get<std::string>(p.at("Description").value), "tessera qube work");
  EXPECT_EQ(std::get<std::vector<uint32_t>>(p.at("PIDs").value), std::vector<uint32_t>{1234});
  EXPECT_EQ(std::get<std::string>(p.at("CollectMode").value), "inactive-or-failed");
  EXPECT_EQ(std::get<uint64_t>(p.at("TasksMax").value), UINT64_MAX) << "not DefaultTasksMax";
  EXPECT_EQ(std::get<uint64_t>(p.at("CPUWeight").value), 100u);
  EXPECT_EQ(std::get<uint64_t>(p.at("IOWeight").value), 100u);
  for (const char* absent : {"MemoryMax", "MemorySwapMax", "CPUQuotaPerSecUSec",
                             "IOReadBandwidthMax", "IOWriteIOPSMax"}) {
    EXPECT_EQ(p.count(absent), 0u) << absent;
  }
}

TEST(ScopeProperties, LimitsMapToSystemdNames) {
  cell::CgroupLimits limits;
  limits.memory_bytes = 512u << 20;
  limits.pids_max = 300;
  limits.cpu_weight = 50;
  limits.cpus = 2;
  limits.io_weight = 400;
  limits.io_max.read_bps = 1000000;
  limits.io_max.write_iops = 50;
  limits.io_device = "8:0";
  auto p = ByName(ScopeProperties("d", 7, limits));
  EXPECT_EQ(std::get<uint64_t>(p.at("MemoryMax").value), 512u << 20);
  EXPECT_EQ(std::get<uint64_t>(p.at("MemorySwapMax").value), 0u);
  EXPECT_EQ(std::get<uint64_t>(p.at("TasksMax").value), 300u);
  EXPECT_EQ(std::get<uint64_t>(p.at("CPUWeight").value), 50u);
  EXPECT_EQ(std::get<uint64_t>(p.at("CPUQuotaPerSecUSec").value), 2'000'000u);
  EXPECT_EQ(std::get<uint64_t>(p.at("IOWeight").value), 400u);
  using PV = ScopeProperty::PathValues;
  EXPECT_EQ(std::get<PV>(p.at("IOReadBandwidthMax").value), (PV{{"/dev/block/8:0", 1000000}}));
  EXPECT_EQ(std::get<PV>(p.at("IOWriteIOPSMax").value), (PV{{"/dev/block/8:0", 50}}));
  EXPECT_EQ(p.count("IOWriteBandwidthMax"), 0u) << "0 = unlimited, left out";
  // Throttling without a block device cannot apply (as with tessera's own cgroups).
  limits.io_device.clear();
  EXPECT_EQ(ByName(ScopeProperties("d", 7, limits)).count("IOReadBandwidthMax"), 0u);
}

}  // namespace
}  // namespace tessera::daemon
