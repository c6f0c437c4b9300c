#pragma once
// The cgroups of one cell: v2 when /sys/fs/cgroup is a unified hierarchy with
// the memory, pids and cpu controllers available (io too where present);
// otherwise the v1 hierarchies /sys/fs/cgroup/{memory,pids,cpu,freezer,blkio}
// (freezer and blkio where mounted). The path of a cell's cgroup is a
// pure function of the runtime dir and the qube name, so a crashed run can be
// found and cleaned without any record:
//   <hierarchy>/tessera/<hash of runtime dir>/<qube>
//
//   CellCgroups cg = TRY(CellCgroups::Create(runtime_dir, "work", limits));
//   TRY(cg.Attach(child_pid));      // before the child execs anything
//   TRY(cg.KillAll());              // at stop
//   TRY(cg.Remove());

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "config/model.h"

namespace tessera::cell {

enum class CgroupVersion { kV1, kV2 };

struct CgroupLimits {
  uint64_t memory_bytes = 0;  // 0 = unlimited
  uint32_t pids_max = 0;      // 0 = unlimited
  uint32_t cpu_weight = 100;  // 1..10000
  uint32_t cpus = 0;          // quota in cpus, 0 = none
  // Disk I/O: proportional weight 1..10000 (v2 io.weight / io.bfq.weight; v1
  // blkio.bfq.weight 1..1000 or blkio.weight 10..1000, scaled so the default
  // stays the default) and throttling on `io_device` ("MAJ:MIN" of a whole
  // disk, see WholeDiskOf; empty = throttling cannot apply).
  uint32_t io_weight = 100;
  config::IoMax io_max;
  std::string io_device;
};

// Where the cgroup hierarchies are mounted. Production code uses the default;
// tests of the v1/v2 detection pass a directory of their own.
inline constexpr const char* kDefaultCgroupRoot = "/sys/fs/cgroup";

// The hierarchy layout found under `root`.
struct CgroupSystem {
  CgroupVersion version = CgroupVersion::kV1;
  std::string root;
  static Result<CgroupSystem> Detect(const std::string& root = kDefaultCgroupRoot);
};

class CellCgroups {
 public:
  // Creates the cell's cgroup(s) and writes the limits. A leftover of the same
  // name is killed and removed first.
  static Result<CellCgroups> Create(const std::string& runtime_dir, const std::string& qube,
                                    const CgroupLimits& limits,
                                    const std::string& cgroup_root = kDefaultCgroupRoot);
  // The cgroups of `qube` whether or not they exist (for Cleanup / Adopt).
  static Result<CellCgroups> ForQube(const std::string& runtime_dir, const std::string& qube,
                                     const std::string& cgroup_root = kDefaultCgroupRoot);

  // The v2 cgroup of a unit that a manager outside tessera made
  // (cgroup_units.h): KillAll, Pids and the memory files work as on a cgroup
  // of ours; Remove lets the manager remove it and never touches its parent
  // (the manager's slice).
  static CellCgroups ForUnit(const std::string& dir);

  Status Attach(pid_t pid) const;
  // v1 only (an empty thread on v2): a thread that moves itself into the
  // memory cgroup it is already in. A v1 attach waits for an RCU grace period
  // unless another attach happened moments before; starting this early lets
  // that wait overlap with the rest of a cell's start-up. Join it.
  static std::thread WarmUpAttach();
  // v2 only: the cell's cgroup directory, for clone3(CLONE_INTO_CGROUP), which
  // puts the child there at creation (no attach, no grace period).
  Result<UniqueFd> OpenV2Dir() const;
  // SIGKILLs every process in the cgroups until none is left (v2: cgroup.kill;
  // v1: freeze, kill each task, thaw, repeat).
  Status KillAll(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  // rmdir of the cell's cgroups (and of the empty per-instance parent). A
  // unit's cgroup: waits (5 s at most) for its manager to remove it once
  // empty, then removes it itself.
  Status Remove() const;
  // Pids (host view) in the cell's cgroup.
  Result<std::vector<pid_t>> Pids() const;
  // "oom_kill" count of the memory controller (memory.events on v2,
  // memory.oom_control on v1).
  Result<uint64_t> OomKills() const;
  // Memory charged to the cell (memory.current / memory.usage_in_bytes).
  Result<uint64_t> MemoryUsage() const;

  CgroupVersion version() const { return version_; }
  bool is_unit() const { return unit_; }
  const std::string& memory_dir() const { return memory_dir_; }
  // v2: {dir}; v1: one per controller, memory first.
  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  CgroupVersion version_ = CgroupVersion::kV1;
  std::string root_;  // the hierarchy root the cgroups live under
  std::vector<std::string> dirs_;
  std::string memory_dir_;
  std::string freezer_dir_;  // v1 only, may be empty
  std::string blkio_dir_;    // v1 only, may be empty
  bool unit_ = false;        // made by a CgroupUnits manager
};

// One line of /proc/<pid>/cgroup, "ID:CONTROLLERS:PATH": v1 lines name their
// controllers ("memory", "cpu,cpuacct", "name=systemd"), the v2 line none.
struct ProcCgroupLine {
  std::string controllers;
  std::string path;
  bool Has(std::string_view controller) const;
};
std::vector<ProcCgroupLine> ParseProcCgroup(std::string_view text);

// The per-instance path component (hash of the runtime dir).
std::string InstanceTag(const std::string& runtime_dir);

// The whole disk ("MAJ:MIN") holding `path`, for I/O limits: a partition is
// mapped to its disk through <sys_root>/dev/block/MAJ:MIN/partition and the
// parent's `dev`. ENODEV when `path` is on no block device (tmpfs, overlayfs,
// a btrfs subvolume's anonymous device).
Result<std::string> WholeDiskOf(const std::string& path, const std::string& sys_root = "/sys");

// The cgroup v2 io.max line for `device`: "MAJ:MIN rbps=N wbps=max riops=max
// wiops=N" (0 = max, i.e. unlimited).
std::string IoMaxLine(const std::string& device, const config::IoMax& io_max);

// OOM kills and the hard memory limit read from a cell's memory cgroup
// directory, v2 (memory.events, memory.max) or v1 (memory.oom_control,
// memory.limit_in_bytes), whichever files it has.
Result<backend::MemoryEvents> ReadMemoryEvents(const std::string& memory_dir);

}  // namespace tessera::cell
