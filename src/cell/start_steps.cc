#include "cell/start_steps.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "cell/fd_passing.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/syscall.h"

namespace tessera::cell {

std::string AgentPath(const CellOptions& options) {
  if (!options.agent_path.empty()) return options.agent_path;
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return "tessera-agent";
  exe[n] = '\0';
  return DirName(exe) + "/tessera-agent";
}

std::string ToolsDir(const CellOptions& options) {
  if (!options.tools_dir.empty()) return options.tools_dir;
  std::string dir = DirName(AgentPath(options));
  for (std::string candidate : {dir + "/qube-tools", dir + "/../lib/tessera/qube-tools"}) {
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return candidate;
  }
  return "";
}

Result<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return Err(Error::FromErrno("realpath " + path));
  return std::string(buf);
}

UniqueFd OpenBeneath(int dirfd, const std::string& rel, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof(how))));
}

Status SetMountAttr(int fd, uint64_t set, bool recursive, int userns_fd) {
  mount_attr attr{};
  attr.attr_set = set;
  if (userns_fd >= 0) attr.userns_fd = static_cast<uint64_t>(userns_fd);
  unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
  TRY(Syscall("mount_setattr",
              [&] { return ::mount_setattr(fd, "", flags, &attr, sizeof(attr)); }));
  return Ok();
}

Result<UniqueFd> CloneTree(int dirfd, const std::string& path, bool recursive,
                           const std::string& what) {
  unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
  if (path.empty()) flags |= AT_EMPTY_PATH;
  int fd = ::open_tree(dirfd, path.c_str(), flags);
  if (fd < 0) return Err(Error::FromErrno("open_tree " + what));
  return UniqueFd(fd);
}

Status WriteIdMap(pid_t pid, const char* file, uid_t base, uint32_t count) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  std::string line = "0 " + std::to_string(base) + " " + std::to_string(count) + "\n";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Err(Error::FromErrno("open " + path));
  TRY(SyscallSize("write " + path, [&] { return ::write(fd.get(), line.data(), line.size()); }));
  return Ok();
}

Result<UniqueFd> MakeControlSocket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Err(Error("control socket path too long for AF_UNIX (" + std::to_string(path.size()) +
                         " bytes, max " + std::to_string(sizeof(addr.sun_path) - 1) + "): " + path,
                     ENAMETOOLONG));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Err(Error::FromErrno("socket"));
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Err(Error::FromErrno("bind " + path));
  }
  if (::chmod(path.c_str(), 0600) != 0) return Err(Error::FromErrno("chmod " + path));
  if (::listen(fd.get(), 64) != 0) return Err(Error::FromErrno("listen " + path));
  return fd;
}

Status MakeOwnedDir(const std::string& path, uid_t owner, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return Err(Error::FromErrno("mkdir " + path));
  if (::chown(path.c_str(), owner, owner) != 0) return Err(Error::FromErrno("chown " + path));
  if (::chmod(path.c_str(), mode) != 0) return Err(Error::FromErrno("chmod " + path));
  return Ok();
}

Result<UniqueFd> AwaitAgentExec(int sync_fd, bool want_listener) {
  UniqueFd listener;
  for (;;) {
    pollfd pfd{sync_fd, POLLIN, 0};
    int prc;
    do {
      prc = ::poll(&pfd, 1, 30000);
    } while (prc < 0 && errno == EINTR);
    if (prc == 0) return Err(Error("child setup timed out", ETIMEDOUT));
    ChildError child_error{};
    int fd = -1;
    ssize_t n = RecvWithFd(sync_fd, &child_error, sizeof(child_error), &fd);
    UniqueFd passed(fd);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(Error::FromErrno("read setup result"));
    if (n == 0) {
      if (want_listener && !listener) {
        return Err(Error("the agent started without handing over its seccomp listener", EPROTO));
      }
      return listener;
    }
    if (n != static_cast<ssize_t>(sizeof(child_error))) {
      return Err(Error("malformed setup result", EPROTO));
    }
    if (child_error.step == kSeccompListenerMessage) {
      if (!want_listener || listener || !passed) {
        return Err(Error("unexpected seccomp listener message", EPROTO));
      }
      listener = std::move(passed);
      continue;
    }
    return Err(Error(std::string("setup step \"") + StepName(child_error.step) + "\" failed",
                     child_error.err));
  }
}

std::vector<ChildRlimit> ChildRlimits(const CellSpec& spec) {
  Rlimit nproc = spec.rlimit_nproc.value_or(Rlimit{spec.pids_max, spec.pids_max});
  return {{RLIMIT_NOFILE, spec.rlimit_nofile.soft, spec.rlimit_nofile.hard},
          {RLIMIT_NPROC, nproc.soft, nproc.hard},
          {RLIMIT_CORE, spec.rlimit_core.soft, spec.rlimit_core.hard}};
}

void RaiseChildHardLimits(pid_t pid, const std::vector<ChildRlimit>& limits,
                          const std::string& qube) {
  for (const ChildRlimit& r : limits) {
    rlimit64 now{};
    if (::prlimit64(pid, static_cast<__rlimit_resource>(r.resource), nullptr, &now) != 0 ||
        r.hard <= now.rlim_max) {
      continue;
    }
    rlimit64 raised{now.rlim_cur, r.hard};
    if (::prlimit64(pid, static_cast<__rlimit_resource>(r.resource), &raised, nullptr) != 0) {
      Log(LogLevel::kDebug, "rlimit hard limit clamped to the starter's",
          {{"qube", qube},
           {"resource", std::to_string(r.resource)},
           {"wanted", std::to_string(r.hard)},
           {"kept", std::to_string(now.rlim_max)},
           {"errno", std::to_string(errno)}});
    }
  }
}

// The agent is the cell's last resort for the OOM killer: an OOM inside
// the cell should take the process that ate the memory, not the whole cell.
// The agent reads this at start and sets each command it spawns back to 0
// (raising needs no privilege).
// Through the legacy oom_adj file, not oom_score_adj: a privileged write of
// oom_score_adj also sets the agent's oom_score_adj_min, which every
// command inherits, and a command could then set itself back to the
// agent's score. A legacy write never touches the minimum (fs/proc/base.c,
// __set_oom_adj: `if (!legacy && has_capability_noaudit(current,
// CAP_SYS_RESOURCE)) task->signal->oom_score_adj_min = ...`), so commands
// keep the minimum 0 and lowering below it needs CAP_SYS_RESOURCE in the
// initial user namespace (EACCES). -16 (OOM_ADJUST_MIN) is oom_score_adj
// -16 * 1000 / 17 = -941.
// Best effort: lowering the score needs CAP_SYS_RESOURCE, which some
// container hosts withhold even from root.
void LowerAgentOomScore(pid_t pid, const std::string& qube) {
  std::string path = "/proc/" + std::to_string(pid) + "/oom_adj";
  UniqueFd adj(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!adj || ::write(adj.get(), "-16", 3) != 3) {
    Log(LogLevel::kDebug, "agent oom_score_adj not lowered",
        {{"qube", qube}, {"errno", std::to_string(errno)}});
  }
}

}  // namespace tessera::cell
