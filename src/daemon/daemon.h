#pragma once
// tesserad: owns every qube of the system description, serves the admin API on
// R/admin.sock and records everything in the audit log. docs/DAEMON.md.
//
//   DaemonOptions options;
//   options.config_path = "/etc/tessera/system.toml";
//   return RunDaemon(options);   // blocks until SIGTERM/SIGINT
//
// Concurrency model: the main thread runs an sd-event loop that accepts
// connections and handles SIGTERM/SIGINT. Each accepted connection is served by
// its own thread, because requests such as qube.run block until a command in a
// qube ends; a housekeeping thread handles idle timeouts and cells that died on
// their own. All lifecycle state lives in one map guarded by one mutex that is
// never held across a slow operation (Cell::Start/Stop/Exec, template builds):
// a qube in `starting`/`stopping` is owned by the thread that moved it there,
// and other threads wait on a condition variable for it to settle. So one slow
// command never blocks `ls`.

#include <sys/types.h>

#include <chrono>
#include <string>

#include "storage/storage.h"

namespace tessera::daemon {

struct DaemonOptions {
  std::string config_path;           // TOML/JSON/Nix description
  bool use_example = false;          // the built-in example instead of a file
  storage::Layout layout;            // state and runtime directories
  std::string admin_group = "tessera";
  // Mode of R/admin.sock. 0666 lets every local user reach the daemon, which
  // then refuses (and audits) everyone but root and the admin group; 0660 adds
  // a kernel-level gate (group = admin group) but refusals are then invisible.
  mode_t socket_mode = 0666;
  bool autostart = true;             // start autostart qubes at daemon start
  std::chrono::milliseconds stop_grace{5000};
  std::chrono::milliseconds housekeeping_interval{1000};
};

// Runs the daemon in the foreground; returns the process exit code.
int RunDaemon(const DaemonOptions& options);

}  // namespace tessera::daemon
