#pragma once
// A cgroup manager outside tessera that owns the cell cgroups when asked to:
// on a systemd host each running qube is a transient scope unit
// (`tessera-<qube>.scope` in `tessera.slice`), so `systemctl status`,
// `systemd-cgtop` and the journal see the qubes, and limits are systemd's
// unit properties. The cell starts its init outside any cgroup of its own,
// calls Place before the init runs anything, and then works on the returned
// directory as on its own v2 cgroup (kill, memory events); systemd removes
// the scope once it is empty. The systemd implementation lives in the daemon
// (src/daemon/systemd_scopes.h), the only component that talks to systemd.
//
//   auto units = std::make_shared<daemon::SystemdScopes>(...);
//   CellOptions options;
//   options.units = units;   // null: tessera's own cgroups (cgroups.h)

#include <sys/types.h>

#include <string>
#include <string_view>

#include "cell/cgroups.h"
#include "common/error.h"

namespace tessera::cell {

// The slice every qube scope lives in (packaging/systemd/tessera.slice).
inline constexpr const char* kQubeSlice = "tessera.slice";

class CgroupUnits {
 public:
  virtual ~CgroupUnits() = default;
  // Moves `pid` into a new unit named `unit` with `limits` as its properties
  // and returns the unit's cgroup directory (absolute, under
  // kDefaultCgroupRoot). A leftover unit of that name is stopped first.
  virtual Result<std::string> Place(const std::string& unit, const std::string& description,
                                    pid_t pid, const CgroupLimits& limits) = 0;
};

// The scope unit of `qube`: "tessera-<qube>.scope" for the default runtime
// dir /run/tessera, else "tessera-<InstanceTag(runtime_dir)>-<qube>.scope" so
// that daemons of separate runtime dirs (tests) never share a unit.
std::string ScopeUnitName(const std::string& runtime_dir, const std::string& qube);

// Whether `unit` is a scope name ScopeUnitName gives `qube` (for any runtime
// dir): "tessera-<qube>.scope" or "tessera-<12 hex digits>-<qube>.scope".
bool IsScopeUnitOf(std::string_view unit, std::string_view qube);

// Whether `dir` is where the scope of `qube` may be: an absolute path below
// kDefaultCgroupRoot, without "." or ".." components, whose last component
// is a scope name of `qube` (IsScopeUnitOf). A cell record naming anything
// else is refused (a record is a file in the runtime dir; never kill what
// is not the qube's).
bool IsQubeScopeDir(const std::string& dir, std::string_view qube);

}  // namespace tessera::cell
