#pragma once
// tesserad: owns every qube of the system description, serves the admin API on
// R/admin.sock and records everything in the audit log. docs/DAEMON.md.
//
//   DaemonOptions options;
//   options.config_path = "/etc/tessera/system.toml";
//   return RunDaemon(options);   // blocks until SIGTERM/SIGINT
//
// One concurrency model: a single event loop thread (sd-event) owns all state
// and does all I/O — admin connections, agent channels, instance exits,
// timers, signals — and a small worker pool runs the blocking backend work
// (starting and stopping qubes, building templates), handing results back to
// the loop. daemon.cc wires the components; each lives in its own file:
// event_loop (loop, workers), admin_server (socket, auth, limits, dispatch),
// admin_methods (the API), run_command (qube.run sessions), qube_manager
// (state machine, persistence, observers), agent_channel (sessions on a
// qube's channel), recovery and apply_plan (pure plans), config_store,
// event_bus, audit, state, diff.

#include <sys/types.h>

#include <chrono>
#include <string>

#include "storage/storage.h"

namespace tessera::daemon {

// Who makes the qubes' cgroups (docs/DAEMON.md "Cgroups").
enum class CgroupManager {
  kAuto,     // systemd where it manages a cgroup v2 host, else tessera
  kSystemd,  // a transient scope per qube in tessera.slice; refuse to start without
  kTessera,  // tessera's own hierarchy (cell/cgroups.h)
};

struct DaemonOptions {
  std::string config_path;           // TOML/JSON/Nix description
  bool use_example = false;          // the built-in example instead of a file
  storage::Layout layout;            // state and runtime directories
  // Members may use the admin API: root-equivalent (docs/DAEMON.md).
  std::string admin_group = "tessera";
  // Members (and root) may apply host-path template sources (dir:, host);
  // "" = root only.
  std::string allow_host_sources_group;
  // Mode of R/admin.sock. 0666 lets every local user reach the daemon, which
  // then refuses (and audits) everyone but root and the admin group; 0660 adds
  // a kernel-level gate (group = admin group) but refusals are then invisible.
  mode_t socket_mode = 0666;
  bool autostart = true;             // start autostart qubes at daemon start
  std::chrono::milliseconds stop_grace{5000};
  std::string agent_path;            // "" = tessera-agent beside the executable
  CgroupManager cgroups = CgroupManager::kAuto;
};

// Runs the daemon in the foreground; returns the process exit code.
int RunDaemon(const DaemonOptions& options);

}  // namespace tessera::daemon
