#pragma once
// The cell backend: a qube isolated by Linux namespaces (user, pid, mount, ipc,
// uts, net, cgroup), a reduced capability bounding set, no_new_privs, a seccomp
// filter and cgroup limits, with `tessera-agent` as its PID 1.
//
//   storage::Layout layout = storage::Layout::FromEnvironment();
//   backend::LaunchPlan plan = TRY(backend::PlanLaunch(system, "work"));
//   cell::Cell cell = TRY(cell::Cell::Start(layout, plan.spec));
//   int status = TRY(backend::Exec(cell, {.argv = {"/bin/sh", "-c", "echo hi"},
//                                         .stdout_fd = STDOUT_FILENO},
//                                  backend::StreamMode::kAuto, cell::CellBackend::kCapabilities));
//   TRY(cell.Stop(std::chrono::seconds(5)));
//
// A cell outlives the process that started it (so the daemon can restart):
// dropping a Cell object closes its handles but leaves the cell running; a
// later process re-attaches with Cell::Adopt(layout, name) using the record in
// R/cells/<name>/cell.json. Cell::Cleanup removes whatever a crashed run left.
// Neither ever touches the qube's storage (src/backend/launcher.h owns that).
//
// Host-side objects of a running cell (R = runtime dir):
//   R/cells/<name>/             scratch (storage::CreateScratch), 0700 root
//   R/cells/<name>/control.sock listening socket of the agent (created by the
//                               parent before clone; the agent inherits the fd)
//   R/cells/<name>/cell.json    record: init pid + start time, cgroups
//   /sys/fs/cgroup[/<ctrl>]/tessera/<runtime-dir hash>/<name>   cgroup(s), or
//   /sys/fs/cgroup/tessera.slice/tessera-<name>.scope     with CellOptions::units

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/launch_spec.h"
#include "cell/cgroups.h"
#include "cell/seccomp_filter.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/qube_storage.h"
#include "storage/storage.h"

namespace tessera::cell {

class CgroupUnits;
struct CellRecord;

// The cell backend takes the backend-neutral spec as it is.
using CellSpec = backend::LaunchSpec;
using backend::HostBind;
using backend::RootKind;
using backend::Rlimit;
using backend::kRlimInfinity;

// Failure injection for tests, passed explicitly (never read from the
// environment by production code). Grep for CellTestHooks to audit its uses.
struct CellTestHooks {
  // The starter _exits(86) right after clone, before releasing the child:
  // a kill -9 of the daemon at the worst moment.
  bool exit_after_clone = false;
};

// What happens to a cell when the thread that started it dies.
enum class StarterDeath {
  // The cell runs on (tesserad: a restarted daemon adopts its cells).
  kCellSurvives,
  // SIGKILL to the cell's init, and with it every process of the cell
  // (PR_SET_PDEATHSIG): `tessera cell run`, whose cell must not outlive a
  // kill -9 of the CLI. What is left on the host (cgroups, scratch, a
  // disposable's storage) is for the next run to remove (Cell::Cleanup).
  kCellDies,
};

struct CellOptions {
  // How seccomp denials are delivered: kErrno (default) or kNotify, which
  // leaves a listener in the started Cell (TakeSeccompListener) that the
  // starter must serve (seccomp_monitor.h). Not a qube setting: whoever
  // starts the cell decides whether it can serve the listener.
  SeccompMode seccomp_mode = SeccompMode::kErrno;
  // The agent binary; empty = tessera-agent next to /proc/self/exe.
  std::string agent_path;
  // What every qube finds read-only at /run/tessera/tools (tessera-call,
  // qrexec-client-vm: docs/RPC.md); empty = qube-tools/ beside the agent (a
  // build tree) or ../lib/tessera/qube-tools (installed); none found: none.
  std::string tools_dir;
  StarterDeath on_starter_death = StarterDeath::kCellSurvives;
  // Who makes the cell's cgroup: null = tessera itself (cgroups.h), else a
  // manager such as systemd, which puts the cell in a scope unit of its own
  // (cgroup_units.h).
  std::shared_ptr<CgroupUnits> units;
  CellTestHooks test_hooks;
};

class Cell : public backend::Instance {
 public:
  // Creates cgroups, scratch, the control socket and the namespaces, builds the
  // root filesystem from `storage` (storage::PrepareQubeStorage made it) and
  // execs the agent as PID 1. On failure nothing of the cell is left.
  static Result<Cell> Start(const storage::Layout& layout, const CellSpec& spec,
                            const storage::PreparedStorage& storage, const CellOptions& options);
  // The same after preparing the storage itself (tests, tools): the
  // launcher (backend/launcher.h) is what tesserad and `tessera cell run` use.
  static Result<Cell> Start(const storage::Layout& layout, const CellSpec& spec,
                            const CellOptions& options = {});

  // Re-attaches to a cell started by another (possibly killed) process.
  // Fails with ESRCH if its init is gone (pid reuse is detected by start time).
  static Result<Cell> Adopt(const storage::Layout& layout, const std::string& name);

  // Removes whatever a crashed run of `name` left: kills its processes,
  // removes its cgroups, scratch directory and record. Safe when nothing is left.
  // Start, Stop and Cleanup of one qube exclude each other across processes; a
  // Start while another is in progress fails with EBUSY.
  static Status Cleanup(const storage::Layout& layout, const std::string& name);

  // Qubes with a scratch directory in R/cells (running or left by a crash).
  static Result<std::vector<std::string>> List(const storage::Layout& layout);

  Cell(Cell&& other) noexcept;
  Cell& operator=(Cell&& other) noexcept;
  Cell(const Cell&) = delete;
  Cell& operator=(const Cell&) = delete;
  // Closes handles only; the cell keeps running (see the file comment).
  ~Cell() override;

  // backend::Instance
  const std::string& name() const override { return name_; }
  pid_t pid() const override { return init_pid_; }
  int exit_fd() const override { return pidfd_.get(); }
  bool Running() const override;
  // A fresh connection to the agent's control socket.
  Result<UniqueFd> OpenChannel() const override;
  // SIGTERM to init, waits up to `grace`, then SIGKILL to everything in the
  // cell's cgroups; removes cgroups, scratch and record. Idempotent.
  Status Stop(std::chrono::milliseconds grace = std::chrono::seconds(5)) override;
  Result<UniqueFd> OpenNetworkNamespace() const override;
  // From the memory controller's files (v2 memory.events / memory.max; v1
  // memory.oom_control / memory.limit_in_bytes).
  Result<backend::MemoryEvents> Memory() const override;

  pid_t init_pid() const { return init_pid_; }
  const std::string& control_socket_path() const { return control_path_; }
  // cgroup directories of this cell (one on v2 or for a unit, one per
  // controller on v1).
  const std::vector<std::string>& cgroup_dirs() const { return cgroups_.dirs(); }

  // SeccompMode::kNotify: the listener of the cell's seccomp filter (once;
  // invalid afterwards, and always for kErrno or an adopted cell). Serve it
  // promptly with a SeccompMonitor: a denied call waits for its answer. Once
  // it is closed, denied calls fail with ENOSYS (still denied, not reported).
  UniqueFd TakeSeccompListener() { return std::move(seccomp_listener_); }
  // The listener and program as a backend-neutral monitor (tesserad's view).
  std::unique_ptr<backend::DenialMonitor> TakeDenialMonitor() override;
  // The program the cell was started with (null for an adopted cell).
  const std::shared_ptr<const SeccompProgram>& seccomp_program() const { return seccomp_program_; }

 private:
  Cell() = default;
  // Cleanup with the qube's lock already held.
  static Status CleanupLocked(const storage::Layout& layout, const std::string& name);
  // After the cell is gone (stop, cleanup): drops its record of the template
  // generation it ran on, committing a template qube's changes
  // (storage::ReleaseGenerations). Not part of CleanupLocked, which a start
  // runs after its storage recorded the generation it is about to mount.
  static Status ReleaseStorage(const storage::Layout& layout, const std::string& name);
  // Kills what is left in the qube's cgroups and removes them: those its
  // record names, a scope a crash before the record left, tessera's own.
  static Status RemoveLeftoverCgroups(const storage::Layout& layout, const std::string& name,
                                      const CellRecord* record);

  storage::Layout layout_;
  std::string name_;
  std::string control_path_;
  CellCgroups cgroups_;    // tessera's own or a unit's (CellCgroups::ForUnit)
  bool is_child_ = false;  // started by this process: reap with waitpid
  pid_t init_pid_ = -1;
  UniqueFd pidfd_;
  bool stopped_ = false;
  UniqueFd seccomp_listener_;
  std::shared_ptr<const SeccompProgram> seccomp_program_;
};

}  // namespace tessera::cell
