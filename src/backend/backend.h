#pragma once
// What the daemon (and `tessera cell run`) knows of an isolation backend: it
// starts instances from a LaunchSpec, adopts running ones after a restart,
// stops them, reports their exit through a pollable descriptor, opens channels
// to their agent, and lists and cleans up what a crash left. The cell backend
// (src/cell/) implements it today; a microVM backend will, behind the same
// interface. Storage (templates, private volumes) is not the backend's: the
// launcher (launcher.h) has storage prepare it before Start and destroy a
// disposable's after Stop.
//
//   std::unique_ptr<Backend> backend = ...;  // e.g. cell::CellBackend
//   std::unique_ptr<Instance> work = TRY(backend::Launch(*backend, layout, plan));
//   UniqueFd channel = TRY(work->OpenChannel());  // exec sessions: exec.h
//   poll(work->exit_fd()) ... ; TRY(work->Stop(std::chrono::seconds(5)));
//
// Start, Adopt, Stop and Cleanup block (milliseconds for a cell, longer for a
// VM or a grace period): the daemon calls them on its worker pool. Everything
// else is cheap and may be called from its event loop.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/launch_spec.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/qube_storage.h"

namespace tessera::backend {

struct Capabilities {
  // Exec sessions may hand a caller's descriptors straight to the command
  // (Unix-socket channels): the data never crosses the host. Without it every
  // stream is relayed as frames.
  bool pass_fds = false;
};

// The memory controller's view of an instance.
struct MemoryEvents {
  uint64_t oom_kills = 0;    // processes the OOM killer ended so far
  uint64_t limit_bytes = 0;  // the hard limit; 0 = none
};

// A system call the qube's sandbox denied.
struct DeniedCall {
  pid_t pid = 0;             // host pid of the caller
  std::string syscall;       // its name
  int errno_answered = 0;    // what the call returned in the qube (-1 with this errno)
};

// Denials waiting for their answer (cells: seccomp user notification). A
// denial is never let through; the monitor only says what was denied.
class DenialMonitor {
 public:
  virtual ~DenialMonitor() = default;
  // Readable while a denial waits; hangs up when the qube has gone.
  virtual int fd() const = 0;
  // Answers one waiting denial; nullopt when it went away first (its caller
  // died or was interrupted).
  virtual Result<std::optional<DeniedCall>> AnswerOne() = 0;
};

// A running qube as its backend sees it. Destroying the object closes its
// handles only: the qube keeps running and can be adopted again.
class Instance {
 public:
  virtual ~Instance() = default;
  virtual const std::string& name() const = 0;
  // Host pid of the instance's init (cell) or VMM (vm), for display.
  virtual pid_t pid() const = 0;
  // Readable (POLLIN) once the instance has exited.
  virtual int exit_fd() const = 0;
  virtual bool Running() const = 0;
  // A new connected stream to the instance's agent (wire/agent_protocol.h).
  virtual Result<UniqueFd> OpenChannel() const = 0;
  // Ends the instance: its agent is asked to stop, everything left is killed
  // after `grace`; the backend's runtime state is removed. Idempotent. Never
  // touches the qube's storage.
  virtual Status Stop(std::chrono::milliseconds grace) = 0;
  // The instance's network namespace (cells), for the network layer.
  virtual Result<UniqueFd> OpenNetworkNamespace() const {
    return Err(Error("backend has no network namespace to offer", ENOTSUP));
  }
  // VMs: takes the host end of a TAP device as the qube's network link. A
  // backend that offers its namespace instead (cells: the network layer moves
  // a veth end into it) refuses with ENOTSUP.
  virtual Status AttachTap(UniqueFd tap) {
    (void)tap;
    return Err(Error("backend takes no TAP device", ENOTSUP));
  }
  // OOM kills so far and the memory limit (to say why a command was killed).
  virtual Result<MemoryEvents> Memory() const {
    return Err(Error("backend reports no memory events", ENOTSUP));
  }
  // The instance's reports of denied system calls, once (null when the
  // backend has none, or for an adopted instance). Its owner must answer
  // them promptly: a denied call waits for its answer.
  virtual std::unique_ptr<DenialMonitor> TakeDenialMonitor() { return nullptr; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual Capabilities capabilities() const = 0;
  // Starts `spec` on storage its owner prepared (storage/qube_storage.h). On
  // failure nothing of the instance is left running.
  virtual Result<std::unique_ptr<Instance>> Start(const LaunchSpec& spec,
                                                  const storage::PreparedStorage& storage) = 0;
  // Re-attaches to an instance started by an earlier (possibly killed)
  // process. ESRCH when it is gone.
  virtual Result<std::unique_ptr<Instance>> Adopt(const std::string& name) = 0;
  // Names of qubes with backend runtime state on this host (running, or left
  // by a crash): what recovery compares with its state file.
  virtual Result<std::vector<std::string>> Leftovers() = 0;
  // Removes whatever a crash left of `name` (processes, runtime state). Safe
  // when nothing is left. Never touches storage.
  virtual Status Cleanup(const std::string& name) = 0;
};

}  // namespace tessera::backend
