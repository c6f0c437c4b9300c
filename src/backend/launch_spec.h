#pragma once
// LaunchSpec: what any backend (cells now, microVMs next) is asked to run, in
// backend-neutral terms. The launch planner (planner.h) makes it from the
// system description; backends turn it into namespaces or a VM.

#include <cstdint>
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
  uint64_t scratch_mib = 512;  // size of the throwaway root layer
  bool nested_userns = false;  // feature "nested-userns": user namespaces inside
  std::vector<HostBind> extra_ro_binds;
};

}  // namespace tessera::backend
