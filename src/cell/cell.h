#pragma once
// The cell backend: a qube isolated by Linux namespaces (user, pid, mount, ipc,
// uts, net, cgroup), a reduced capability bounding set, no_new_privs, a seccomp
// filter and cgroup limits, with `tessera-agent` as its PID 1.
//
//   storage::Layout layout = storage::Layout::FromEnvironment();
//   cell::CellSpec spec = TRY(cell::SpecFromConfig(system, "work"));
//   cell::Cell cell = TRY(cell::Cell::Start(layout, spec));
//   int code = TRY(cell.Exec({.argv = {"/bin/sh", "-c", "echo hi"},
//                             .stdout_fd = STDOUT_FILENO}));
//   TRY(cell.Stop(std::chrono::seconds(5)));
//
// A cell outlives the process that started it (so the daemon can restart):
// dropping a Cell object closes its handles but leaves the cell running; a
// later process re-attaches with Cell::Adopt(layout, name) using the record in
// R/cells/<name>/cell.json. Cell::Cleanup removes whatever a crashed run left.
//
// Host-side objects of a running cell (R = runtime dir):
//   R/cells/<name>/             scratch (storage::CreateScratch), 0700 root
//   R/cells/<name>/control.sock listening socket of the agent (created by the
//                               parent before clone; the agent inherits the fd)
//   R/cells/<name>/cell.json    record: init pid + start time, cgroups, spec
//   /sys/fs/cgroup[/<ctrl>]/tessera/<runtime-dir hash>/<name>   cgroup(s)

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cell/seccomp_filter.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "config/model.h"
#include "storage/storage.h"

namespace tessera::cell {

// How the cell's root filesystem is made.
enum class RootKind {
  kOverlay,     // app/disposable: template (idmapped, read-only) + tmpfs upper
  kTemplate,    // template qube: S/templates/<t>/root, idmapped, read-write
  kStandalone,  // standalone qube: S/qubes/<n>/root (copied from template_name, or
                //   busybox, at the first start; shifted on disk), read-write
};

// A host path bound read-only into the cell (tests bind probe binaries this
// way; templates' host_ro_binds are added by Start itself).
struct HostBind {
  std::string host_path;  // absolute host path (file or directory)
  std::string cell_path;  // absolute path inside the cell
};

// A resource limit (setrlimit(2)); kRlimInfinity = unlimited.
inline constexpr uint64_t kRlimInfinity = ~uint64_t{0};
struct Rlimit {
  uint64_t soft = 0;
  uint64_t hard = 0;
  bool operator==(const Rlimit&) const = default;
};

struct CellSpec {
  std::string name;            // qube name; also the cell's hostname
  std::string hostname;        // defaults to name when empty
  config::QubeClass klass = config::QubeClass::kApp;
  RootKind root = RootKind::kOverlay;
  std::string template_name;   // the template's name (kStandalone: copied from; may be empty)
  bool disposable = false;     // storage is destroyed at Stop
  uint64_t memory_mib = 1024;  // hard limit (memory.max / limit_in_bytes)
  uint32_t cpus = 1;           // cpu quota in whole cpus (0 = no quota)
  uint32_t cpu_weight = 100;   // cgroup v2 weight 1..10000 (v1: shares scaled)
  uint32_t pids_max = 4096;    // processes + threads in the cell
  uint32_t io_weight = 100;    // qube key io_weight: disk time share 1..10000
  config::IoMax io_max;        // qube key io_max: throttling of the state dir's disk
  uint64_t scratch_mib = 512;  // size limit of the tmpfs overlay upper
  bool nested_userns = false;  // feature "nested-userns": allow user namespaces inside
  std::vector<HostBind> extra_ro_binds;
  // Resource limits of the agent, set just before its exec and inherited by
  // every command. A hard limit above the starter's own is honoured only
  // where the starter may raise it (CAP_SYS_RESOURCE), else clamped to it.
  Rlimit rlimit_nofile{1024, 524288};  // feature "rlimit-nofile"
  std::optional<Rlimit> rlimit_nproc;  // feature "rlimit-nproc"; unset = pids_max
  Rlimit rlimit_core{0, 0};            // feature "rlimit-core"
  // Feature "pty-max": ptys the cell's devpts instance may hold (its `max=`).
  // Every non-initial devpts shares the kernel's kernel.pty.max pool, so an
  // unbounded instance lets one qube starve the others.
  uint32_t pty_max = 64;
  // How seccomp denials are delivered: kErrno (default) or kNotify, which
  // leaves a listener in the started Cell (TakeSeccompListener) that the
  // starter must serve (seccomp_monitor.h). Not a qube feature: whoever
  // starts the cell decides whether it can serve the listener.
  SeccompMode seccomp_mode = SeccompMode::kErrno;
  // The agent binary; empty = $TESSERA_AGENT, else tessera-agent next to
  // /proc/self/exe.
  std::string agent_path;
};

// The spec of a configured qube (features: "nested-userns" = "1"/"true",
// "pids-max" = N, "cpu-weight" = N, "scratch-mib" = N, "pty-max" = N, "rlimit-nofile",
// "rlimit-nproc", "rlimit-core" = "SOFT:HARD" or "N", each "unlimited" or a
// number).
Result<CellSpec> SpecFromConfig(const config::System& system, std::string_view qube);

// The spec of a fresh disposable `name` made from the disposable template
// `dvm_template` (its template, limits and features; an empty private volume).
Result<CellSpec> DisposableSpecFromConfig(const config::System& system,
                                          std::string_view dvm_template,
                                          const std::string& name);

// A command to run inside the cell. The fds (-1 = /dev/null inside) are passed
// to the agent with SCM_RIGHTS, so data never flows through the caller.
struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"; empty = a minimal default (PATH, HOME, TERM)
  std::string cwd = "/";
  std::string user = "root";     // "root", a name in the cell's /etc/passwd, or "UID[:GID]"
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
};

class Cell {
 public:
  // Creates cgroups, scratch, the control socket and the namespaces, builds the
  // root filesystem and execs the agent as PID 1. On failure nothing is left.
  static Result<Cell> Start(const storage::Layout& layout, const CellSpec& spec);

  // Re-attaches to a cell started by another (possibly killed) process.
  // Fails with ESRCH if its init is gone (pid reuse is detected by start time).
  static Result<Cell> Adopt(const storage::Layout& layout, const std::string& name);

  // Removes whatever a crashed run of `name` left: kills its processes,
  // removes its cgroups, scratch directory and record. Safe when nothing is left.
  // Start, Stop and Cleanup of one qube exclude each other across processes; a
  // Start while another is in progress fails with EBUSY.
  static Status Cleanup(const storage::Layout& layout, const std::string& name);

  Cell(Cell&& other) noexcept;
  Cell& operator=(Cell&& other) noexcept;
  Cell(const Cell&) = delete;
  Cell& operator=(const Cell&) = delete;
  // Closes handles only; the cell keeps running (see the file comment).
  ~Cell();

  // Runs a command via the agent and waits for it: its exit code, or 128+signal.
  Result<int> Exec(const ExecRequest& request);

  // A fresh connection to the agent's control socket (for asynchronous callers;
  // frames in agent/protocol.h, docs/CELL.md).
  Result<UniqueFd> ConnectControl() const;

  // SIGTERM to init, waits up to `grace`, then SIGKILL to everything in the
  // cell's cgroups; removes cgroups, scratch and record; a disposable's storage
  // is destroyed. Idempotent.
  Status Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  bool Running() const;
  pid_t init_pid() const { return init_pid_; }
  const std::string& name() const { return name_; }
  const std::string& control_socket_path() const { return control_path_; }
  // cgroup directories of this cell (one on v2, one per controller on v1).
  const std::vector<std::string>& cgroup_dirs() const { return cgroup_dirs_; }

  // SeccompMode::kNotify: the listener of the cell's seccomp filter (once;
  // invalid afterwards, and always for kErrno or an adopted cell). Serve it
  // promptly with a SeccompMonitor: a denied call waits for its answer. Once
  // it is closed, denied calls fail with ENOSYS (still denied, not reported).
  UniqueFd TakeSeccompListener() { return std::move(seccomp_listener_); }
  // The program the cell was started with (null for an adopted cell).
  const std::shared_ptr<const SeccompProgram>& seccomp_program() const { return seccomp_program_; }

 private:
  Cell() = default;
  // Cleanup with the qube's lock already held.
  static Status CleanupLocked(const storage::Layout& layout, const std::string& name);

  storage::Layout layout_;
  std::string name_;
  std::string control_path_;
  std::vector<std::string> cgroup_dirs_;
  bool disposable_ = false;
  bool is_child_ = false;  // started by this process: reap with waitpid
  pid_t init_pid_ = -1;
  UniqueFd pidfd_;
  bool stopped_ = false;
  UniqueFd seccomp_listener_;
  std::shared_ptr<const SeccompProgram> seccomp_program_;
};

}  // namespace tessera::cell
