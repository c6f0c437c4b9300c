// The child's setup script. Order matters; each step says why it sits where it
// does. Everything here is async-signal-safe (raw syscalls, stack buffers).

#include "cell/child_setup.h"

#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cell/fd_passing.h"

namespace tessera::cell {
namespace {

[[noreturn]] void Fail(const ChildPlan& plan, ChildStep step, int err) {
  ChildError e{static_cast<int>(step), err != 0 ? err : EIO};
  (void)!::send(plan.sync_fd, &e, sizeof(e), MSG_NOSIGNAL);
  _exit(1);
}

void Check(const ChildPlan& plan, ChildStep step, long rc) {
  if (rc < 0) Fail(plan, step, errno);
}

long OpenAt2(int dirfd, const char* path, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

// Opens `rel` beneath `dirfd`, creating missing directories (and, if
// `is_file`, an empty final file) on the way. Refuses symlinks anywhere and
// "." / ".." components, so a qube that planted "home -> /etc" in its
// persistent root cannot redirect a mount. Returns an O_PATH fd or -errno.
int OpenTarget(int dirfd, const char* rel, bool is_file) {
  int cur = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  if (cur < 0) return -errno;
  const char* p = rel;
  char comp[256];
  for (;;) {
    while (*p == '/') ++p;
    if (*p == '\0') break;
    const char* e = p;
    while (*e != '\0' && *e != '/') ++e;
    size_t n = static_cast<size_t>(e - p);
    const char* rest = e;
    while (*rest == '/') ++rest;
    bool last = *rest == '\0';
    if (n >= sizeof(comp)) {
      ::close(cur);
      return -ENAMETOOLONG;
    }
    std::memcpy(comp, p, n);
    comp[n] = '\0';
    if (std::strcmp(comp, ".") == 0 || std::strcmp(comp, "..") == 0) {
      ::close(cur);
      return -EINVAL;
    }
    long fd;
    if (last && is_file) {
      fd = OpenAt2(cur, comp, O_PATH | O_NOFOLLOW);
      if (fd < 0 && errno == ENOENT) {
        int c = ::openat(cur, comp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (c >= 0) ::close(c);
        fd = OpenAt2(cur, comp, O_PATH | O_NOFOLLOW);
      }
      struct stat st;
      if (fd >= 0 && (::fstat(static_cast<int>(fd), &st) != 0 || S_ISLNK(st.st_mode) ||
                      S_ISDIR(st.st_mode))) {
        ::close(static_cast<int>(fd));
        errno = ELOOP;
        fd = -1;
      }
    } else {
      if (::mkdirat(cur, comp, 0755) != 0 && errno != EEXIST) {
        int err = errno;
        ::close(cur);
        return -err;
      }
      fd = OpenAt2(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW);
    }
    int err = errno;
    ::close(cur);
    if (fd < 0) return -err;
    cur = static_cast<int>(fd);
    p = e;
  }
  return cur;
}

struct FsOption {
  const char* key;
  const char* value;  // nullptr = flag
};

// fsopen + fsconfig + fsmount: a new detached filesystem mount, or -errno.
int NewMount(const char* type, const FsOption* options, size_t count, unsigned attrs) {
  int fs = ::fsopen(type, FSOPEN_CLOEXEC);
  if (fs < 0) return -errno;
  for (size_t i = 0; i < count; ++i) {
    int rc = options[i].value != nullptr
                 ? ::fsconfig(fs, FSCONFIG_SET_STRING, options[i].key, options[i].value, 0)
                 : ::fsconfig(fs, FSCONFIG_SET_FLAG, options[i].key, nullptr, 0);
    if (rc != 0) {
      int err = errno;
      ::close(fs);
      return -err;
    }
  }
  if (::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    int err = errno;
    ::close(fs);
    return -err;
  }
  int m = ::fsmount(fs, FSMOUNT_CLOEXEC, attrs);
  int err = errno;
  ::close(fs);
  return m < 0 ? -err : m;
}

// Moves detached mount `m` onto the already-opened target fd.
int MoveOnto(int m, int target_fd) {
  if (::move_mount(m, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return -errno;
  }
  return 0;
}

// New filesystem at `rel` beneath `root_fd`.
void MountAt(const ChildPlan& plan, ChildStep step, int root_fd, const char* rel, const char* type,
             const FsOption* options, size_t count, unsigned attrs) {
  int m = NewMount(type, options, count, attrs);
  if (m < 0) Fail(plan, step, -m);
  int t = OpenTarget(root_fd, rel, false);
  if (t < 0) Fail(plan, step, -t);
  int rc = MoveOnto(m, t);
  if (rc < 0) Fail(plan, step, -rc);
  ::close(m);
  ::close(t);
}

// Hides /proc files and directories that expose host-wide kernel state, and
// makes the host-wide sysctl/irq/bus trees read-only (the list follows the OCI
// runtime defaults). These are defence in depth: the files also need
// capabilities in the initial user namespace, which a cell never has.
void MaskProc(const ChildPlan& plan, int root_fd) {
  static const char* const kMaskFiles[] = {"proc/kcore", "proc/keys", "proc/key-users",
                                           "proc/timer_list", "proc/sched_debug",
                                           "proc/latency_stats", "proc/kmsg", "proc/timer_stats"};
  static const char* const kMaskDirs[] = {"proc/acpi", "proc/scsi", "proc/asound",
                                          "proc/firmware"};
  static const char* const kReadOnly[] = {"proc/sys", "proc/sysrq-trigger", "proc/irq",
                                          "proc/bus", "proc/fs"};
  for (const char* path : kMaskFiles) {
    long t = OpenAt2(root_fd, path, O_PATH | O_NOFOLLOW);
    if (t < 0) {
      if (errno == ENOENT) continue;
      Fail(plan, ChildStep::kMaskProc, errno);
    }
    // The host's /dev/null, still reachable by path before pivot_root.
    int m = ::open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (m < 0) Fail(plan, ChildStep::kMaskProc, errno);
    int rc = MoveOnto(m, static_cast<int>(t));
    if (rc < 0) Fail(plan, ChildStep::kMaskProc, -rc);
    ::close(m);
    ::close(static_cast<int>(t));
  }
  static const FsOption kEmpty[] = {{"size", "4k"}, {"mode", "0555"}, {"nr_inodes", "1"}};
  for (const char* path : kMaskDirs) {
    long t = OpenAt2(root_fd, path, O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (t < 0) {
      if (errno == ENOENT) continue;
      Fail(plan, ChildStep::kMaskProc, errno);
    }
    int m = NewMount("tmpfs", kEmpty, 3, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                             MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (m < 0) Fail(plan, ChildStep::kMaskProc, -m);
    int rc = MoveOnto(m, static_cast<int>(t));
    if (rc < 0) Fail(plan, ChildStep::kMaskProc, -rc);
    ::close(m);
    ::close(static_cast<int>(t));
  }
  for (const char* path : kReadOnly) {
    long t = OpenAt2(root_fd, path, O_PATH | O_NOFOLLOW);
    if (t < 0) {
      if (errno == ENOENT) continue;
      Fail(plan, ChildStep::kMaskProc, errno);
    }
    // A read-only bind of the path onto itself.
    int m = ::open_tree(static_cast<int>(t), "",
                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (m < 0) Fail(plan, ChildStep::kMaskProc, errno);
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if (::mount_setattr(m, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) != 0) {
      Fail(plan, ChildStep::kMaskProc, errno);
    }
    int rc = MoveOnto(m, static_cast<int>(t));
    if (rc < 0) Fail(plan, ChildStep::kMaskProc, -rc);
    ::close(m);
    ::close(static_cast<int>(t));
  }
}

void MountDev(const ChildPlan& plan, int root_fd) {
  static const FsOption kDev[] = {{"size", "64k"}, {"mode", "0755"}, {"nr_inodes", "64"}};
  MountAt(plan, ChildStep::kMountDev, root_fd, "dev", "tmpfs", kDev, 3,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  int dev = OpenTarget(root_fd, "dev", false);
  if (dev < 0) Fail(plan, ChildStep::kPopulateDev, -dev);
  // A private devpts instance: the cell's ptys, never the host's. `max`
  // bounds its share of the kernel's pty pool, which all non-initial devpts
  // instances (every cell's) draw from.
  const FsOption pts[] = {{"newinstance", nullptr}, {"ptmxmode", "0666"},
                          {"mode", "0620"},          {"gid", "5"},
                          {"max", plan.pty_max}};
  MountAt(plan, ChildStep::kPopulateDev, dev, "pts", "devpts", pts, 5,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  static const FsOption kShm[] = {{"size", "64m"}, {"mode", "1777"}};
  MountAt(plan, ChildStep::kPopulateDev, dev, "shm", "tmpfs", kShm, 2,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  static const char* const kLinks[][2] = {{"pts/ptmx", "ptmx"},       {"/proc/self/fd", "fd"},
                                          {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
                                          {"/proc/self/fd/2", "stderr"}};
  for (const auto& link : kLinks) {
    if (::symlinkat(link[0], dev, link[1]) != 0) Fail(plan, ChildStep::kPopulateDev, errno);
  }
  ::close(dev);
}

void SetCaps(const ChildPlan& plan) {
  // The bounding set limits what any later exec can gain; the current sets
  // are lowered too so the agent itself holds nothing it should not.
  for (int cap = 0; cap <= plan.cap_last && cap < 64; ++cap) {
    if ((plan.drop_caps & (uint64_t{1} << cap)) == 0) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      Fail(plan, ChildStep::kDropBoundingCaps, errno);
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    Fail(plan, ChildStep::kDropBoundingCaps, errno);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  uint64_t all = plan.cap_last >= 63 ? ~uint64_t{0} : ((uint64_t{1} << (plan.cap_last + 1)) - 1);
  uint64_t keep = all & ~plan.drop_caps;
  for (int i = 0; i < 2; ++i) {
    auto word = static_cast<uint32_t>(keep >> (32 * i));
    data[i].effective = word;
    data[i].permitted = word;
    data[i].inheritable = 0;
  }
  Check(plan, ChildStep::kSetCaps, syscall(SYS_capset, &header, data));
}

// Sets each planned rlimit on this process (inherited by the agent and every
// command). Raw prlimit64: no libc wrapper state. A hard limit above the
// current one needs CAP_SYS_RESOURCE in the initial user namespace, which this
// child never has: the parent raised it before the release where it could;
// otherwise the hard limit is clamped to the current one (stricter, never
// looser, than asked).
void SetRlimits(const ChildPlan& plan) {
  for (const ChildRlimit& r : plan.rlimits) {
    struct {
      uint64_t cur;
      uint64_t max;
    } want{r.soft, r.hard}, now{0, 0};
    if (::syscall(SYS_prlimit64, 0, r.resource, nullptr, &now) != 0) {
      Fail(plan, ChildStep::kSetRlimits, errno);
    }
    if (want.max > now.max) {
      want.max = now.max;
      if (want.cur > want.max) want.cur = want.max;
    }
    Check(plan, ChildStep::kSetRlimits, ::syscall(SYS_prlimit64, 0, r.resource, &want, nullptr));
  }
}

// kNotify: hands the seccomp listener to the parent over the sync socket and
// closes our copy. The agent must never hold it: with the listener the cell
// could answer its own denials (even let them through). Runs under the filter
// already: send, close and exit are allowed calls.
void SendSeccompListener(const ChildPlan& plan, int listener) {
  ChildError message{kSeccompListenerMessage, 0};
  ssize_t sent = SendWithFd(plan.sync_fd, &message, sizeof(message), listener);
  int err = errno;
  ::close(listener);
  if (sent != static_cast<ssize_t>(sizeof(message))) {
    Fail(plan, ChildStep::kSendSeccompListener, err);
  }
}

}  // namespace

const char* StepName(int step) {
  switch (static_cast<ChildStep>(step)) {
    case ChildStep::kWaitForParent: return "wait for parent";
    case ChildStep::kChdirScratch: return "chdir into scratch mount dir";
    case ChildStep::kSetgroups: return "setgroups (drop host groups)";
    case ChildStep::kSetgid: return "setresgid 0";
    case ChildStep::kSetuid: return "setresuid 0";
    case ChildStep::kUnshareCgroup: return "unshare cgroup namespace";
    case ChildStep::kMakeMountsPrivate: return "make mounts private";
    case ChildStep::kSetHostname: return "sethostname";
    case ChildStep::kLoopbackUp: return "bring loopback up";
    case ChildStep::kMountUpperTmpfs: return "mount overlay upper tmpfs";
    case ChildStep::kMakeUpperDirs: return "create overlay upper/work dirs";
    case ChildStep::kMoveUpper:
      return "move the template's idmapped changes into place";
    case ChildStep::kMoveLower: return "move idmapped template into place";
    case ChildStep::kMountOverlay: return "mount overlay root";
    case ChildStep::kMoveRoot: return "move persistent root into place";
    case ChildStep::kOpenRoot: return "open new root";
    case ChildStep::kMountProc: return "mount /proc";
    case ChildStep::kMaskProc: return "mask /proc paths";
    case ChildStep::kMountDev: return "mount /dev";
    case ChildStep::kPopulateDev: return "populate /dev";
    case ChildStep::kBindMount: return "bind mount (dev node, /home, /rw or host path)";
    case ChildStep::kMountTmp: return "mount /tmp";
    case ChildStep::kMountRun: return "mount /run";
    case ChildStep::kMountSys: return "mount /sys";
    case ChildStep::kPivotRoot: return "pivot_root";
    case ChildStep::kDetachOldRoot: return "detach old root";
    case ChildStep::kLockMounts: return "create the inner namespaces (locks mounts)";
    case ChildStep::kJoinInnerNamespaces: return "join the inner network, uts and ipc namespaces";
    case ChildStep::kDropBoundingCaps: return "drop bounding capabilities";
    case ChildStep::kSetCaps: return "capset";
    case ChildStep::kNoNewPrivs: return "no_new_privs";
    case ChildStep::kSeccomp: return "install seccomp filter";
    case ChildStep::kStdio: return "set up stdio";
    case ChildStep::kExecAgent: return "exec tessera-agent";
    case ChildStep::kSetRlimits: return "set rlimits";
    case ChildStep::kSendSeccompListener: return "send seccomp listener";
    case ChildStep::kDieWithStarter:
      return "die with the starter (PR_SET_PDEATHSIG)";
  }
  return "unknown step";
}

uint64_t DefaultDroppedCaps() {
  // Capabilities whose checks can target the host even from a user namespace,
  // or that no qube needs: modules, raw I/O, reboot, clocks, MAC policy,
  // kernel log, audit, BPF, perf, alarms, suspend, process accounting,
  // resource overrides, checkpoint/restore.
  const int kDrop[] = {CAP_SYS_MODULE,    CAP_SYS_RAWIO,    CAP_SYS_BOOT,       CAP_SYS_TIME,
                       CAP_MAC_ADMIN,     CAP_MAC_OVERRIDE, CAP_SYSLOG,         CAP_AUDIT_CONTROL,
                       CAP_AUDIT_READ,    CAP_AUDIT_WRITE,  CAP_BPF,            CAP_PERFMON,
                       CAP_WAKE_ALARM,    CAP_BLOCK_SUSPEND, CAP_SYS_PACCT,     CAP_SYS_RESOURCE,
                       CAP_CHECKPOINT_RESTORE, CAP_LINUX_IMMUTABLE};
  uint64_t mask = 0;
  for (int c : kDrop) mask |= uint64_t{1} << c;
  return mask;
}

// "/proc/<pid>/<file>" into `buf` without allocating.
void ProcPath(char (&buf)[64], long pid, const char* file) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + pid % 10);
    pid /= 10;
  } while (pid > 0 && n < 20);
  size_t pos = 0;
  for (const char* p = "/proc/"; *p != '\0'; ++p) buf[pos++] = *p;
  while (n > 0) buf[pos++] = digits[--n];
  buf[pos++] = '/';
  for (const char* p = file; *p != '\0' && pos + 1 < sizeof(buf); ++p) buf[pos++] = *p;
  buf[pos] = '\0';
}

bool WriteProcFile(long pid, const char* file, const char* text) {
  char path[64];
  ProcPath(path, pid, file);
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = std::strlen(text);
  bool ok = ::write(fd, text, len) == static_cast<ssize_t>(len);
  ::close(fd);
  return ok;
}

int OpenProcFile(long pid, const char* file) {
  char path[64];
  ProcPath(path, pid, file);
  return ::open(path, O_RDONLY | O_CLOEXEC);
}

// Creates the qube's inner namespaces: a user namespace nested in the cell's
// (identity-mapped onto it) owning fresh mount, network, uts and ipc
// namespaces. Commands run inside it; the agent stays outside, in the outer
// user and mount namespaces, so that its memory belongs to a namespace in
// which the qube's root holds no capability: ptrace, process_vm_readv and
// pidfd_getfd of PID 1 fail for it.
//
// The mount namespace copied into the less privileged inner user namespace
// has every inherited mount locked by the kernel: the qube's root can still
// mount new filesystems in its own namespace, but it can no longer unmount a
// mask (/proc/sys, /proc/kcore, ...), remount a read-only bind read-write, or
// clear nosuid/nodev/noexec.
//
// A helper (raw clone: no libc atfork handlers or locks in this child of a
// threaded parent) unshares the namespaces; we write its identity maps from
// the outer namespace (which holds CAP_SETUID over it), open its namespaces,
// let it exit, then join its network, uts and ipc namespaces ourselves (the
// agent lives in the qube's network, as the commands do) and keep the user
// and mount namespaces open for the agent at the reserved descriptor numbers.
void CreateInnerNamespaces(const ChildPlan& plan) {
  // The set*id calls made us non-dumpable, which makes /proc/<pid>/* owned
  // by host root: the helper (which inherits the flag) must be dumpable for
  // us to write its maps. Cleared again below; exec recomputes it anyway.
  Check(plan, ChildStep::kLockMounts, ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
  int go[2];
  int ready[2];
  Check(plan, ChildStep::kLockMounts, ::pipe2(go, O_CLOEXEC));
  Check(plan, ChildStep::kLockMounts, ::pipe2(ready, O_CLOEXEC));
  long helper = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  Check(plan, ChildStep::kLockMounts, helper);
  if (helper == 0) {
    ::close(go[1]);
    ::close(ready[0]);
    int err = 0;
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC) != 0) {
      err = errno;
    }
    (void)!::write(ready[1], &err, sizeof(err));
    // Stay alive (and so keep the namespaces reachable through /proc) until
    // the parent has opened them or given up.
    char c;
    (void)!::read(go[0], &c, 1);
    _exit(0);
  }
  ::close(go[0]);
  ::close(ready[1]);
  int helper_err = ECHILD;
  ssize_t got = ::read(ready[0], &helper_err, sizeof(helper_err));
  ::close(ready[0]);
  int ns[5] = {-1, -1, -1, -1, -1};  // user, mnt, net, uts, ipc
  int err = 0;
  if (got != static_cast<ssize_t>(sizeof(helper_err))) {
    err = ECHILD;
  } else if (helper_err != 0) {
    err = helper_err;
  } else if (!WriteProcFile(helper, "uid_map", plan.identity_map) ||
             !WriteProcFile(helper, "gid_map", plan.identity_map)) {
    err = errno != 0 ? errno : EIO;
  } else {
    static const char* const kNs[5] = {"ns/user", "ns/mnt", "ns/net", "ns/uts", "ns/ipc"};
    for (int i = 0; i < 5 && err == 0; ++i) {
      ns[i] = OpenProcFile(helper, kNs[i]);
      if (ns[i] < 0) err = errno;
    }
  }
  // Closing without writing tells the helper to exit either way.
  ::close(go[1]);
  int status = 0;
  long waited;
  do {
    waited = ::syscall(SYS_wait4, helper, &status, __WALL, nullptr);
  } while (waited < 0 && errno == EINTR);
  Check(plan, ChildStep::kLockMounts, ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0));
  if (err != 0) Fail(plan, ChildStep::kLockMounts, err);
  Check(plan, ChildStep::kJoinInnerNamespaces, ::setns(ns[2], CLONE_NEWNET));
  Check(plan, ChildStep::kJoinInnerNamespaces, ::setns(ns[3], CLONE_NEWUTS));
  Check(plan, ChildStep::kJoinInnerNamespaces, ::setns(ns[4], CLONE_NEWIPC));
  Check(plan, ChildStep::kJoinInnerNamespaces, ::dup3(ns[0], plan.inner_userns_fd, O_CLOEXEC));
  Check(plan, ChildStep::kJoinInnerNamespaces, ::dup3(ns[1], plan.inner_mntns_fd, O_CLOEXEC));
  for (int fd : ns) ::close(fd);
}

// Moves prepared detached mounts onto their targets beneath the new root.
static void MovePrepared(const ChildPlan& plan, int root_fd,
                         const std::vector<PreparedMount>& mounts) {
  for (const PreparedMount& pm : mounts) {
    int t = OpenTarget(root_fd, pm.target, pm.is_file);
    if (t < 0) Fail(plan, ChildStep::kBindMount, -t);
    int rc = MoveOnto(pm.fd, t);
    if (rc < 0) Fail(plan, ChildStep::kBindMount, -rc);
    ::close(t);
    ::close(pm.fd);
  }
}

void RunChild(const ChildPlan& plan) {
  // 1. Wait until the parent has written uid_map/gid_map, idmapped the
  //    template tree and put us into the cell's cgroups: before that our ids
  //    are unmapped and our allocations uncharged. EOF = the parent died.
  // 0. The clone copied the parent's end of the sync socket too: close it, or
  //    our recv below would never see EOF when the parent dies. Die with the
  //    starting thread until the agent is exec'd (cleared in step 15), and
  //    leave the starter's session and process group, so a Ctrl-C meant for
  //    the daemon in a terminal never reaches a qube.
  ::close(plan.parent_sync_fd);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  ::setsid();
  char go = 0;
  ssize_t n;
  do {
    n = ::recv(plan.sync_fd, &go, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n != 1) _exit(1);

  // 2. chdir into R/cells/<n>/mnt while we are still host uid 0: the scratch
  //    dir above it is 0700 root, which the qube's own uid (next steps) cannot
  //    traverse. All later host-side paths are relative to this directory.
  Check(plan, ChildStep::kChdirScratch, ::chdir(plan.mnt_dir));

  // 3. Become the qube's root. Host supplementary groups go first (they would
  //    still grant host group 0's access), then gid, then uid.
  // Raw syscalls, not the libc wrappers: glibc's set*id broadcast the change to
  // every thread it believes exists, and after a raw clone3 from a
  // multi-threaded parent it still lists the parent's threads (and may hold
  // their locks), which deadlocks the child.
  Check(plan, ChildStep::kSetgroups, static_cast<int>(::syscall(SYS_setgroups, 0, nullptr)));
  Check(plan, ChildStep::kSetgid, static_cast<int>(::syscall(SYS_setresgid, 0, 0, 0)));
  Check(plan, ChildStep::kSetuid, static_cast<int>(::syscall(SYS_setresuid, 0, 0, 0)));

  // 4. A cgroup namespace rooted at the cell's cgroup: only now, after the
  //    parent moved us into it (at clone time we were still in its cgroup).
  Check(plan, ChildStep::kUnshareCgroup, ::unshare(CLONE_NEWCGROUP));

  // 5. No mount event may propagate back to the host (the namespace copy
  //    already made shared mounts slaves; private is stricter).
  Check(plan, ChildStep::kMakeMountsPrivate, ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));

  // 6. (Hostname and loopback: step 12b, in the namespaces the qube's root owns.)

  // 7. The root filesystem, assembled under mnt/root in our own mount namespace.
  if (plan.overlay && plan.upper_tree_fd >= 0) {
    // The template qube: writes persist in the template's changes directory
    // (committed into a new generation when it stops), never in the lower one.
    Check(plan, ChildStep::kMoveUpper,
          ::move_mount(plan.upper_tree_fd, "", AT_FDCWD, "upper", MOVE_MOUNT_F_EMPTY_PATH));
    ::close(plan.upper_tree_fd);
  } else if (plan.overlay) {
    const FsOption upper[] = {{"size", plan.upper_size}, {"mode", "0755"}};
    int m = NewMount("tmpfs", upper, 2, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (m < 0) Fail(plan, ChildStep::kMountUpperTmpfs, -m);
    Check(plan, ChildStep::kMountUpperTmpfs,
          ::move_mount(m, "", AT_FDCWD, "upper", MOVE_MOUNT_F_EMPTY_PATH));
    ::close(m);
    Check(plan, ChildStep::kMakeUpperDirs, ::mkdir("upper/u", 0755));
    Check(plan, ChildStep::kMakeUpperDirs, ::mkdir("upper/w", 0755));
  }
  if (plan.overlay) {
    // The template tree, idmapped by the parent so host root appears as the
    // qube's root, becomes the overlay's read-only lower layer.
    Check(plan, ChildStep::kMoveLower,
          ::move_mount(plan.root_tree_fd, "", AT_FDCWD, "lower", MOVE_MOUNT_F_EMPTY_PATH));
    Check(plan, ChildStep::kMountOverlay,
          ::mount("overlay", "root", "overlay", MS_NOSUID | MS_NODEV, plan.overlay_options));
  } else {
    Check(plan, ChildStep::kMoveRoot,
          ::move_mount(plan.root_tree_fd, "", AT_FDCWD, "root", MOVE_MOUNT_F_EMPTY_PATH));
  }
  ::close(plan.root_tree_fd);
  int root_fd = ::open("root", O_PATH | O_DIRECTORY | O_CLOEXEC);
  Check(plan, ChildStep::kOpenRoot, root_fd);

  // 8. /proc of the new pid namespace. Before pivot_root: the kernel allows a
  //    new proc mount in a user namespace only while a fully visible proc
  //    (the host's) is in the mount namespace.
  static const FsOption kNoOptions[] = {};
  MountAt(plan, ChildStep::kMountProc, root_fd, "proc", "proc", kNoOptions, 0,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  MaskProc(plan, root_fd);

  // 9. /dev: a small tmpfs with only the allowed nodes (bound from the host
  //    in step 10), a private devpts and /dev/shm.
  MountDev(plan, root_fd);

  // 10. Prepared binds: dev nodes, host read-only paths, /home and /rw.
  MovePrepared(plan, root_fd, plan.mounts);

  // 11. Throwaway /tmp and /run; /sys is an empty read-only tmpfs (host
  //     devices and kernel tunables stay invisible).
  static const FsOption kTmp[] = {{"size", "25%"}, {"mode", "1777"}};
  MountAt(plan, ChildStep::kMountTmp, root_fd, "tmp", "tmpfs", kTmp, 2,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  static const FsOption kRun[] = {{"size", "64m"}, {"mode", "0755"}};
  MountAt(plan, ChildStep::kMountRun, root_fd, "run", "tmpfs", kRun, 2,
          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  // 11b. What is mounted on the fresh /run: the qube tools (read-only).
  MovePrepared(plan, root_fd, plan.run_mounts);
  static const FsOption kSys[] = {{"size", "4k"}, {"mode", "0555"}, {"nr_inodes", "1"}};
  MountAt(plan, ChildStep::kMountSys, root_fd, "sys", "tmpfs", kSys, 3,
          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);

  // 12. Switch roots and drop every host mount from this namespace
  //    (pivot_root(".", ".") stacks the old root on the new one; the lazy
  //    unmount then detaches it, including the scratch paths).
  Check(plan, ChildStep::kPivotRoot, ::fchdir(root_fd));
  Check(plan, ChildStep::kPivotRoot, syscall(SYS_pivot_root, ".", "."));
  Check(plan, ChildStep::kDetachOldRoot, ::umount2(".", MNT_DETACH));
  Check(plan, ChildStep::kDetachOldRoot, ::chdir("/"));
  ::close(root_fd);

  // 12b. The qube's inner namespaces (user, mount: every mount made above is
  //      locked in it; network, uts, ipc, which we join), then the identity
  //      and loopback of the new uts/network namespaces. Commands run there;
  //      we, the agent-to-be, stay in the outer user and mount namespaces.
  CreateInnerNamespaces(plan);
  Check(plan, ChildStep::kSetHostname, ::sethostname(plan.hostname, std::strlen(plan.hostname)));
  {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    Check(plan, ChildStep::kLoopbackUp, s);
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, "lo", 3);
    Check(plan, ChildStep::kLoopbackUp, ::ioctl(s, SIOCGIFFLAGS, &ifr));
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    Check(plan, ChildStep::kLoopbackUp, ::ioctl(s, SIOCSIFFLAGS, &ifr));
    ::close(s);
  }

  // 13. Privileges last-but-one: everything above needed CAP_SYS_ADMIN in the
  //     user namespace.
  SetCaps(plan);
  Check(plan, ChildStep::kNoNewPrivs, ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));

  // 14. stdio is the cell's /dev/null; only the control socket and the inner
  //     namespaces (and, until exec, the sync socket and the agent image)
  //     stay open.
  {
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    Check(plan, ChildStep::kStdio, null_fd);
    for (int i = 0; i < 3; ++i) Check(plan, ChildStep::kStdio, ::dup2(null_fd, i));
    if (null_fd > 2) ::close(null_fd);
    Check(plan, ChildStep::kStdio, ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC));
    Check(plan, ChildStep::kStdio, ::fcntl(plan.control_fd, F_SETFD, 0));
    Check(plan, ChildStep::kStdio, ::fcntl(plan.inner_userns_fd, F_SETFD, 0));
    Check(plan, ChildStep::kStdio, ::fcntl(plan.inner_mntns_fd, F_SETFD, 0));
  }

  // 14b. Resource limits last-but-one: none of the setup above (the helper
  //      clone of 12b, the fds it opens) is bound by the qube's limits.
  SetRlimits(plan);

  // 14c. StarterDeath::kCellDies: die with the starting thread. Set again
  //      here because the credential changes of step 3 cleared step 0's. A
  //      starter that died before this line sends no signal any more; its
  //      end of the sync socket is then closed (EOF), so check that.
  if (plan.die_with_starter) {
    Check(plan, ChildStep::kDieWithStarter, ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
    char peek = 0;
    if (::recv(plan.sync_fd, &peek, 1, MSG_DONTWAIT | MSG_PEEK) == 0) _exit(1);
  }

  // 15. seccomp last: the filter also constrains this setup code otherwise.
  //     kNotify: installed with a new listener, which goes to the parent.
  int rc = ApplySeccompProgram(*plan.seccomp);
  if (rc < 0) Fail(plan, ChildStep::kSeccomp, -rc);
  if (plan.seccomp->mode == SeccompMode::kNotify) SendSeccompListener(plan, rc);

  // The agent outlives whoever started it, unless told otherwise (14c).
  if (!plan.die_with_starter) ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  syscall(SYS_execveat, plan.agent_fd, "", plan.agent_argv, plan.agent_envp, AT_EMPTY_PATH);
  Fail(plan, ChildStep::kExecAgent, errno);
}

}  // namespace tessera::cell
