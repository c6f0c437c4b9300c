#pragma once
// What names a running cell across processes: its record in the runtime
// dir (init pid + start time, cgroups), the per-qube lock that serialises
// start/stop/cleanup, and the pidfd helpers that watch its init. Internal to
// src/cell.
//
//   QubeLock lock = TRY(QubeLock::Acquire(layout, "work", /*wait=*/true));
//   CellRecord r = TRY(ReadCellRecord(layout.ScratchDir("work") + "/cell.json"));

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/storage.h"

namespace tessera::cell {

// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. With the
// pid, it names a process uniquely (pids are reused, start times are not).
Result<uint64_t> StartTime(pid_t pid);

// Serialises Start, Stop and Cleanup of one qube across processes (the
// daemon, `tessera cell run`, tests): flock on R/cells/.<name>.lock. The file
// is unlinked when the operation ends, so no lock files pile up; a holder
// that locked a file unlinked meanwhile notices (inode changed) and retries.
class QubeLock {
 public:
  // EBUSY when `wait` is false and another process holds it.
  static Result<QubeLock> Acquire(const storage::Layout& layout, const std::string& name,
                                  bool wait);
  QubeLock(QubeLock&&) = default;
  QubeLock& operator=(QubeLock&&) = default;
  ~QubeLock();

 private:
  QubeLock() = default;
  std::string path_;
  UniqueFd fd_;
};

struct CellRecord {
  std::string name;
  pid_t pid = -1;
  uint64_t start_time = 0;
  std::vector<std::string> cgroups;
  // The unit a CgroupUnits manager put the cell in (cgroup_units.h), "" for
  // tessera's own cgroups. When set, `cgroups` is that unit's one directory;
  // ReadCellRecord refuses a record whose directory is not a qube scope's.
  std::string cgroup_unit;
};
Status WriteCellRecord(const std::string& path, const CellRecord& r);
Result<CellRecord> ReadCellRecord(const std::string& path);

// True when the process behind `pidfd` exited within `timeout_ms`.
bool PidfdExited(int pidfd, int timeout_ms);
// Kills and reaps a child that failed during start.
void KillChild(int pidfd, pid_t pid);

}  // namespace tessera::cell
