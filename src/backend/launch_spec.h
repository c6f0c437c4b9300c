#pragma once
// LaunchSpec: what any backend (cells now, microVMs next) is asked to run, in
// backend-neutral terms. The launch planner (planner.h) makes it from the
// system description; backends turn it into namespaces or a VM.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/model.h"

namespace tessera::backend {

// Where a qube's root filesystem comes from.
enum class RootKind {
  kOverlay,     // app/disposable: its template's tree, read-only, under a throwaway layer
  kTemplate,    // a template qube: its own tree S/templates/<t>/root, read-write
  kStandalone,  // a standalone qube: S/qubes/<n>/root (copied from template_name at first start)
};

// A host path shown read-only inside the qube (tests bind probe binaries this
// way).
struct HostBind {
  std::string host_path;  // absolute host path (file or directory)
  std::string cell_path;  // absolute path inside the qube
};

// A resource limit (setrlimit(2)); kRlimInfinity = unlimited.
inline constexpr uint64_t kRlimInfinity = ~uint64_t{0};
struct Rlimit {
  uint64_t soft = 0;
  uint64_t hard = 0;
  bool operator==(const Rlimit&) const = default;
};

struct LaunchSpec {
  std::string name;            // qube name
  std::string hostname;        // defaults to name when empty
  config::QubeClass klass = config::QubeClass::kApp;
  RootKind root = RootKind::kOverlay;
  std::string template_name;   // the template (kStandalone: copied from; may be empty)
  bool disposable = false;     // nothing of it outlives its stop
  // Disposables: the disposable template whose private volume they start
  // from (Qubes semantics: customising its home carries into each one).
  std::string snapshot_from;
  uint64_t memory_mib = 1024;  // hard limit
  uint32_t cpus = 1;           // cpu quota in whole cpus (0 = no quota)
  uint32_t cpu_weight = 100;   // 1..10000
  uint32_t pids_max = 4096;    // processes + threads
  uint32_t io_weight = 100;    // qube key io_weight: disk time share 1..10000
  config::IoMax io_max;        // qube key io_max: throttling of the state dir's disk
  uint64_t scratch_mib = 512;  // size of the throwaway root layer
  uint64_t private_mib = 2048;  // qube key private_size: its private volume (an ext4 image)
  bool nested_userns = false;  // feature "nested-userns": user namespaces inside
  std::vector<HostBind> extra_ro_binds;
  // Qube key `credentials`: name -> host file, copied at start into the
  // qube's /run/credentials/<name> (read-only, root:user 0440).
  std::map<std::string, std::string> credentials;
  // Resource limits of the qube's init, inherited by every command. A hard
  // limit above the starter's own is honoured only where the starter may
  // raise it (CAP_SYS_RESOURCE), else clamped to it.
  Rlimit rlimit_nofile{1024, 524288};  // feature "rlimit-nofile"
  std::optional<Rlimit> rlimit_nproc;  // feature "rlimit-nproc"; unset = pids_max
  Rlimit rlimit_core{0, 0};            // feature "rlimit-core"
  // Feature "pty-max": ptys the qube's devpts instance may hold (its `max=`).
  // Every non-initial devpts shares the kernel's kernel.pty.max pool, so an
  // unbounded instance lets one qube starve the others.
  uint32_t pty_max = 64;
};

}  // namespace tessera::backend
