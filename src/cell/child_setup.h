#pragma once
// The part of cell start-up that runs in the cloned child, between clone and
// the exec of tessera-agent. Everything it needs is prepared by the parent in a
// ChildPlan; the child only reads it. Async-signal-safe: no allocation, no
// logging, no libc locks. A failing step writes {step, errno} to the sync socket
// and _exits; the parent turns that into an Error naming the step.

#include <linux/filter.h>

#include <cstdint>
#include <vector>

#include "cell/seccomp_filter.h"

namespace tessera::cell {

// The steps, in order; StepName() gives each a name for error messages.
enum class ChildStep : int {
  kWaitForParent = 1,
  kChdirScratch,
  kSetgroups,
  kSetgid,
  kSetuid,
  kUnshareCgroup,
  kMakeMountsPrivate,
  kSetHostname,
  kLoopbackUp,
  kMountUpperTmpfs,
  kMakeUpperDirs,
  kMoveUpper,
  kMoveLower,
  kMountOverlay,
  kMoveRoot,
  kOpenRoot,
  kMountProc,
  kMaskProc,
  kMountDev,
  kPopulateDev,
  kBindMount,
  kMountTmp,
  kMountRun,
  kMountSys,
  kPivotRoot,
  kDetachOldRoot,
  kLockMounts,
  kJoinInnerNamespaces,
  kDropBoundingCaps,
  kSetCaps,
  kNoNewPrivs,
  kSeccomp,
  kStdio,
  kExecAgent,
  kSetRlimits,
  kSendSeccompListener,
  kDieWithStarter,
};

// A sync-socket message whose step is kSeccompListenerMessage is no failure:
// it carries the seccomp listener (SeccompMode::kNotify) as SCM_RIGHTS.
inline constexpr int kSeccompListenerMessage = 0;
const char* StepName(int step);

struct ChildError {
  int step = 0;
  int err = 0;
};

// A mount prepared by the parent (open_tree clone in the host namespace) and
// moved into place by the child, at `target` relative to the new root.
struct PreparedMount {
  int fd = -1;
  const char* target = nullptr;  // e.g. "dev/null", "home", "usr"
  bool is_file = false;
};

// A resource limit the child sets on itself just before exec (prlimit64).
struct ChildRlimit {
  int resource = -1;  // RLIMIT_*
  uint64_t soft = 0;
  uint64_t hard = 0;
};

struct ChildPlan {
  int sync_fd = -1;         // SOCK_SEQPACKET to the parent (CLOEXEC)
  int parent_sync_fd = -1;  // the parent's end, closed first thing in the child
  const char* mnt_dir = nullptr;  // absolute R/cells/<n>/mnt (owned by the qube's root)
  bool overlay = true;      // app/disposable; else a persistent root tree
  int root_tree_fd = -1;    // template (idmapped after clone) or standalone root
  // The template qube: its persistent changes directory (idmapped after
  // clone), holding upper/ and work/, instead of a tmpfs upper. -1 otherwise.
  int upper_tree_fd = -1;
  const char* overlay_options = nullptr;  // "lowerdir=lower,upperdir=upper/u,..."
  const char* upper_size = nullptr;       // tmpfs size of the upper, e.g. "512m"
  const char* hostname = nullptr;
  const char* identity_map = nullptr;     // "0 0 65536\n": the nested user namespace's maps
  std::vector<PreparedMount> mounts;      // dev nodes, /home, /rw, host binds
  std::vector<PreparedMount> run_mounts;  // on the fresh /run: the qube tools
  int agent_fd = -1;
  char* const* agent_argv = nullptr;
  char* const* agent_envp = nullptr;
  int control_fd = -1;      // listening socket the agent inherits
  // Descriptor numbers (reserved by the parent) under which the agent gets
  // the inner user and mount namespaces commands run in.
  int inner_userns_fd = -1;
  int inner_mntns_fd = -1;
  int cap_last = 40;        // /proc/sys/kernel/cap_last_cap
  uint64_t drop_caps = 0;   // bit n = drop capability n
  const SeccompProgram* seccomp = nullptr;
  std::vector<ChildRlimit> rlimits;  // set in step 14b, after stdio
  const char* pty_max = "64";        // devpts `max=`: ptys this cell may hold
  // StarterDeath::kCellDies: the agent keeps PR_SET_PDEATHSIG = SIGKILL.
  bool die_with_starter = false;
};

// Never returns. Runs in the child right after clone.
[[noreturn]] void RunChild(const ChildPlan& plan);

// Capabilities dropped from the bounding set (and the current sets) of every
// cell: docs/CELL.md "Capabilities".
uint64_t DefaultDroppedCaps();

}  // namespace tessera::cell
