#pragma once
// Host-side steps of starting a cell that are not the start sequence itself:
// finding the agent, detached mount trees (open_tree/mount_setattr), id maps,
// the control socket, the child's verdict on its setup, rlimits. Internal to
// src/cell (cell.cc runs them in order).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cell/cell.h"
#include "cell/child_setup.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::cell {

// The agent binary: CellOptions::agent_path, else tessera-agent beside us.
std::string AgentPath(const CellOptions& options);
// The qube tools directory (CellOptions::tools_dir); "" when there is none.
std::string ToolsDir(const CellOptions& options);
Result<std::string> RealPath(const std::string& path);
// openat2 confined to `dirfd` (no symlinks, no magic links, no escape).
UniqueFd OpenBeneath(int dirfd, const std::string& rel, uint64_t flags);
Status SetMountAttr(int fd, uint64_t set, bool recursive, int userns_fd = -1);
// A detached copy (open_tree clone) of a host path.
Result<UniqueFd> CloneTree(int dirfd, const std::string& path, bool recursive,
                           const std::string& what);
// Writes "0 base count" to /proc/<pid>/<file> (uid_map, gid_map).
Status WriteIdMap(pid_t pid, const char* file, uid_t base, uint32_t count);
// A listening AF_UNIX socket at `path`, mode 0600.
Result<UniqueFd> MakeControlSocket(const std::string& path);
Status MakeOwnedDir(const std::string& path, uid_t owner, mode_t mode);

// Reads the sync socket until the child's end closes. EOF = the agent was
// exec'd; a ChildError = a setup step failed; in kNotify mode a message with
// step kSeccompListenerMessage carrying one fd (SCM_RIGHTS) comes first: the
// seccomp listener, returned. Any other shape is a protocol error.
Result<UniqueFd> AwaitAgentExec(int sync_fd, bool want_listener);

// Makes the agent the cell's last resort for the OOM killer (oom_adj -16);
// best effort, see start_steps.cc for why through the legacy file.
void LowerAgentOomScore(pid_t pid, const std::string& qube);

// The limits the child sets on itself just before the agent's exec
// (docs/CELL.md "Resource limits").
std::vector<ChildRlimit> ChildRlimits(const CellSpec& spec);
// Raises the child's hard limits where the spec asks for more than it
// inherited from us; the child sets the final values itself. Best effort:
// without CAP_SYS_RESOURCE the child clamps to what it has (stricter).
void RaiseChildHardLimits(pid_t pid, const std::vector<ChildRlimit>& limits,
                          const std::string& qube);

}  // namespace tessera::cell
