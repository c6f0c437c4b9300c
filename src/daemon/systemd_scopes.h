#pragma once
// Qubes as systemd transient scopes (cell/cgroup_units.h): on a systemd host
// every running qube is `tessera-<qube>.scope` in `tessera.slice`, made by
// StartTransientUnit over systemd's private socket with the qube's limits
// as unit properties. A scope is systemd's, not the daemon service's: a
// restart or crash of tesserad leaves it (and the qube) running, and
// `systemctl status tessera.slice`, `systemd-cgtop`, `systemctl stop
// tessera-work.scope` see the qubes. docs/DAEMON.md "Cgroups".
//
//   std::string why;
//   std::shared_ptr<SystemdScopes> scopes = SystemdScopes::Detect(&why);
//   if (scopes) cell_options.units = scopes;   // else tessera's own cgroups

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "cell/cgroup_units.h"
#include "common/error.h"

namespace tessera::daemon {

// One property of a StartTransientUnit call, in the D-Bus type systemd
// expects for it: s, t, b, au, a(st).
struct ScopeProperty {
  using PathValues = std::vector<std::pair<std::string, uint64_t>>;
  std::string name;
  std::variant<std::string, uint64_t, bool, std::vector<uint32_t>, PathValues> value;
};

// The properties of a qube's scope: its slice, description and init pid,
// and the limits mapped to systemd's names (MemoryMax, MemorySwapMax,
// TasksMax, CPUWeight, CPUQuotaPerSecUSec, IOWeight, IO*Max on the disk's
// /dev/block/MAJ:MIN). A limit of 0 (none) is left out, TasksMax excepted
// (infinity, so systemd's DefaultTasksMax does not apply).
std::vector<ScopeProperty> ScopeProperties(const std::string& description, pid_t pid,
                                           const cell::CgroupLimits& limits);

class SystemdScopes : public cell::CgroupUnits {
 public:
  // The scopes, if systemd manages this host's cgroups: /run/systemd/system
  // exists, /sys/fs/cgroup is a cgroup v2 (unified) mount, and systemd's
  // private socket is there. Else null, with the reason in `why`.
  static std::shared_ptr<SystemdScopes> Detect(std::string* why);

  // StartTransientUnit, then waits (10 s at most) for its job to finish and
  // checks that `pid` is in the unit's cgroup. A unit of that name left by a
  // crash is stopped and the call repeated.
  Result<std::string> Place(const std::string& unit, const std::string& description, pid_t pid,
                            const cell::CgroupLimits& limits) override;

 private:
  explicit SystemdScopes(std::string address) : address_(std::move(address)) {}
  std::string address_;  // "unix:path=/run/systemd/private"
};

}  // namespace tessera::daemon
