#include "cell/seccomp_filter.h"

#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>

#include <seccomp.h>

#include "common/unique_fd.h"

namespace tessera::cell {
namespace {

struct CtxDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};

// What a general-purpose Linux userland needs on x86_64 (shells and
// coreutils, package managers, interpreters, servers on loopback, debuggers),
// measured with the workloads in docs/CELL.md "Seccomp" and cross-checked
// against the default profiles of Docker/moby and crun. Calls that are
// harmless only with a condition on their arguments are added separately
// (clone, clone3, unshare, personality, socket).
constexpr const char* kAllowed[] = {
    // Processes and threads.
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill",
    "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid",
    "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl",
    "set_thread_area", "get_thread_area", "prctl", "seccomp", "setns",
    // Scheduling, priorities and resource limits (raising hard limits still
    // needs CAP_SYS_RESOURCE, dropped in every cell).
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_getattr", "sched_setattr",
    "getpriority", "setpriority", "ioprio_get", "ioprio_set", "getrlimit", "setrlimit",
    "prlimit64", "getrusage", "times",
    // Credentials and capabilities (within the cell's user namespace).
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid",
    "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid",
    "setfsgid", "capget", "capset",
    // Debugging the cell's own processes (the pid namespace shows nothing
    // else; the user namespace stops the rest): strace, gdb, criu-like tools.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "process_madvise", "process_mrelease",
    // Signals.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack", "pause", "alarm",
    "getitimer", "setitimer", "restart_syscall", "signalfd", "signalfd4",
    // Time (reading clocks, sleeping, timers; setting clocks is denied below).
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
    "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
    "timerfd_create", "timerfd_settime", "timerfd_gettime",
    // Memory.
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "membarrier", "memfd_create", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "get_mempolicy", "set_mempolicy", "mbind", "map_shadow_stack",
    "futex", "futex_waitv",
    // File I/O.
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "dup",
    "dup2", "dup3", "pipe", "pipe2", "fcntl", "flock", "ioctl", "fsync", "fdatasync", "sync",
    "syncfs", "sync_file_range", "fallocate", "fadvise64", "readahead", "truncate", "ftruncate",
    "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "cachestat",
    // File metadata and the directory tree.
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat",
    "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir",
    "fchdir", "chroot", "umask", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2",
    "link", "linkat", "unlink", "unlinkat", "symlink", "symlinkat", "mknod", "mknodat", "chmod",
    "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime",
    "utimes", "utimensat", "futimesat", "name_to_handle_at",
    // Extended attributes.
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    // Waiting for events.
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "inotify_init",
    "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    // Sockets (the network namespace is the cell's own).
    "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
    "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "shutdown", "setsockopt", "getsockopt",
    // System V and POSIX IPC (the ipc namespace is the cell's own).
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget",
    "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
    // Mounts and identity in the cell's own namespaces: the user namespace
    // confines them (docs/CELL.md: mount is decided not filtered).
    "mount", "umount2", "pivot_root", "mount_setattr", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "sethostname", "setdomainname",
    // System information and randomness.
    "uname", "sysinfo", "getcpu", "getrandom",
    // Self-sandboxing.
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
};

// Calls newer than the libseccomp we build against (2.5.4 knows up to
// map_shadow_stack), by their x86_64 numbers. Each is a variant of an allowed
// call: the futex2 calls, mount listing/statting of the caller's own mount
// namespace, xattr calls relative to a directory fd, mseal (protects the
// caller's own mappings), open_tree with attributes, FS_IOC_FS[GS]ETXATTR as
// system calls.
struct NumberedCall {
  const char* name;
  int nr;
};
constexpr NumberedCall kAllowedByNumber[] = {
    {"futex_wake", 454},    {"futex_wait", 455},     {"futex_requeue", 456},
    {"statmount", 457},     {"listmount", 458},      {"mseal", 462},
    {"setxattrat", 463},    {"getxattrat", 464},     {"listxattrat", 465},
    {"removexattrat", 466}, {"open_tree_attr", 467}, {"file_getattr", 468},
    {"file_setattr", 469},
};

// Calls no qube needs and that reach past its namespaces (kernel image, module
// loading, global clocks and swap, kernel-wide tracing and keyrings): EPERM.
// Most are also refused by capability checks in the initial user namespace;
// the filter removes the attack surface of reaching that check at all. Names
// that do not exist on this architecture are skipped.
constexpr const char* kDenied[] = {
    // Kernel modules and kexec.
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    // eBPF and perf: large kernel attack surface, host-wide observation.
    "bpf", "perf_event_open",
    // userfaultfd: a classic exploitation primitive (stalls kernel copies).
    "userfaultfd",
    // Kernel keyrings are not namespaced.
    "keyctl", "add_key", "request_key",
    // File handles bypass the mount tree (the "shocker" escape).
    "open_by_handle_at",
    // Host power state, clocks, swap, accounting, kernel log.
    "reboot", "clock_settime", "clock_settime64", "settimeofday", "adjtimex", "clock_adjtime",
    "clock_adjtime64", "stime", "swapon", "swapoff", "acct", "syslog",
    // Legacy / raw hardware access.
    "iopl", "ioperm", "lookup_dcookie", "nfsservctl", "uselib", "vm86", "vm86old",
    "_sysctl", "quotactl", "quotactl_fd",
    // fanotify and name_to_handle are only useful together with handles.
    "fanotify_init",
    // io_uring: its work runs in kernel threads that no seccomp filter sees, and
    // it has a long CVE record; programs fall back to epoll/threads on EPERM
    // (as under Docker's and ChromeOS's default profiles).
    "io_uring_setup", "io_uring_enter", "io_uring_register",
};

// Kernel AIO: each context is charged to the host-wide fs.aio-max-nr, which
// one qube could exhaust (an attack run's io_setup reserved all of it). ENOSYS,
// as on a kernel without AIO: libaio users fall back to threads.
constexpr const char* kAio[] = {"io_setup",  "io_destroy",   "io_submit",
                                "io_cancel", "io_getevents", "io_pgetevents"};

// Adds the rules of one policy to `ctx`; `deny(errno)` is the action of each
// denial (an errno, or a notification in kNotify mode).
class PolicyWriter {
 public:
  PolicyWriter(scmp_filter_ctx ctx, SeccompMode mode) : ctx_(ctx), mode_(mode) {}

  uint32_t Deny(int err) const {
    return mode_ == SeccompMode::kNotify ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(static_cast<uint32_t>(err));
  }
  // Unlisted calls: ENOSYS, the answer of a kernel that lacks them.
  uint32_t DefaultAction() const { return Deny(ENOSYS); }
  // The answer to a feature probe that libc makes on every use and falls back
  // from: an errno in both modes, never a notification (a report per thread
  // start would drown the real ones and cost a round trip each).
  static uint32_t Fallback(int err) { return SCMP_ACT_ERRNO(static_cast<uint32_t>(err)); }

  // A call by name; `required`: a name this architecture must have (a typo in
  // the allow-list is a build error of the filter, not a silent ENOSYS).
  Status Add(uint32_t action, const char* name, bool required, unsigned count = 0,
             const scmp_arg_cmp* args = nullptr) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
      if (required) return Err(Error(std::string("seccomp: unknown system call ") + name, EINVAL));
      return Ok();
    }
    return AddNumber(action, nr, name, count, args);
  }

  Status AddNumber(uint32_t action, int nr, const char* name, unsigned count = 0,
                   const scmp_arg_cmp* args = nullptr) {
    // The default covers it (libseccomp refuses rules that repeat the default
    // action): AIO and clone3 in kErrno mode, every denial in kNotify mode.
    // The allow rules of conditional calls are written so that what they do
    // not allow is exactly what is to be denied.
    if (action == DefaultAction()) return Ok();
    int rc = seccomp_rule_add_array(ctx_, action, nr, count, args);
    if (rc < 0) return Err(Error::FromErrno(std::string("seccomp_rule_add ") + name, -rc));
    return Ok();
  }

 private:
  scmp_filter_ctx ctx_;
  SeccompMode mode_;
};

Status AddPolicy(PolicyWriter& w, const SeccompOptions& options) {
  // A denied call that is also on the allow-list would be decided by rule
  // order (or, where a denial repeats the default, silently allowed): refuse.
  std::set<int> allowed;
  for (const char* name : kAllowed) allowed.insert(seccomp_syscall_resolve_name(name));
  for (const NumberedCall& call : kAllowedByNumber) allowed.insert(call.nr);
  auto check = [&](const char* name) -> Status {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr != __NR_SCMP_ERROR && allowed.count(nr) != 0) {
      return Err(Error(std::string("seccomp: ") + name + " is both allowed and denied", EINVAL));
    }
    return Ok();
  };
  for (const char* name : kDenied) TRY(check(name));
  for (const char* name : kAio) TRY(check(name));
  for (const char* name : kAllowed) TRY(w.Add(SCMP_ACT_ALLOW, name, true));
  for (const NumberedCall& call : kAllowedByNumber) {
    TRY(w.AddNumber(SCMP_ACT_ALLOW, call.nr, call.name));
  }
  for (const char* name : kDenied) TRY(w.Add(w.Deny(EPERM), name, false));
  for (const char* name : kAio) TRY(w.Add(w.Deny(ENOSYS), name, true));

  // personality: the flag bits that weaken exploit mitigations
  // (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
  // ADDR_LIMIT_*, ...) are refused; plain persona changes (PER_LINUX32,
  // UNAME26) and the query 0xffffffff are allowed. libseccomp allows one
  // comparison per argument and rule, so the rules partition the values: no
  // dangerous bit and bit 31 clear (allowed); all 32 bits set (the query,
  // allowed); a dangerous bit with bit 31 clear (denied); bit 31 with any
  // lower bit clear (denied).
  {
    const uint64_t kBit31 = 0x80000000u;
    const uint64_t dangerous[] = {ADDR_NO_RANDOMIZE, FDPIC_FUNCPTRS, MMAP_PAGE_ZERO,
                                  ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC, ADDR_LIMIT_32BIT,
                                  SHORT_INODE, WHOLE_SECONDS, STICKY_TIMEOUTS, ADDR_LIMIT_3GB};
    uint64_t all_dangerous = 0;
    for (uint64_t bit : dangerous) {
      all_dangerous |= bit;
      scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, bit | kBit31, bit);
      TRY(w.Add(w.Deny(EPERM), "personality", true, 1, &cmp));
    }
    for (uint64_t k = 0; k < 31; ++k) {
      scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, (uint64_t{1} << k) | kBit31, kBit31);
      TRY(w.Add(w.Deny(EPERM), "personality", true, 1, &cmp));
    }
    scmp_arg_cmp plain = SCMP_A0(SCMP_CMP_MASKED_EQ, all_dangerous | kBit31, 0);
    TRY(w.Add(SCMP_ACT_ALLOW, "personality", true, 1, &plain));
    scmp_arg_cmp query = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, 0xffffffffu);
    TRY(w.Add(SCMP_ACT_ALLOW, "personality", true, 1, &query));
  }

  // AF_VSOCK sockets reach the hypervisor's and the host's vsock services,
  // which no network namespace separates (Docker and crun refuse them too).
  {
    const uint64_t kAfVsock = 40;
    // Spelled out: clang's -Wmissing-field-initializers rejects the SCMP_A0 macro.
    scmp_arg_cmp vsock{.arg = 0, .op = SCMP_CMP_EQ, .datum_a = kAfVsock, .datum_b = 0};
    scmp_arg_cmp other{.arg = 0, .op = SCMP_CMP_NE, .datum_a = kAfVsock, .datum_b = 0};
    TRY(w.Add(w.Deny(EPERM), "socket", true, 1, &vsock));
    TRY(w.Add(SCMP_ACT_ALLOW, "socket", true, 1, &other));
  }

  if (!options.nested_userns) {
    // New user namespaces inside a cell give its processes a fresh full
    // capability set against many more kernel code paths; off unless the
    // qube has the feature. clone3 passes flags in memory a filter cannot
    // read, so it fails with ENOSYS and libc falls back to clone. glibc
    // (>= 2.34) tries clone3 for every thread and process it starts, so that
    // ENOSYS is a fallback, not a violation: never notified.
    scmp_arg_cmp user = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
    scmp_arg_cmp no_user = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, 0);
    for (const char* call : {"unshare", "clone"}) {
      TRY(w.Add(w.Deny(EPERM), call, true, 1, &user));
      TRY(w.Add(SCMP_ACT_ALLOW, call, true, 1, &no_user));
    }
    TRY(w.Add(PolicyWriter::Fallback(ENOSYS), "clone3", true));
  } else {
    for (const char* call : {"unshare", "clone", "clone3"}) TRY(w.Add(SCMP_ACT_ALLOW, call, true));
  }
  return Ok();
}

Result<std::vector<sock_filter>> Compile(const SeccompOptions& options, SeccompMode mode) {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(PolicyWriter(nullptr, mode).DefaultAction()));
  if (!ctx) return Err("seccomp_init failed");
  // Foreign-architecture syscalls (int 0x80, x32) kill the process: their
  // numbers differ and a filter that forgets one is a bypass.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0) {
    return Err(Error::FromErrno("seccomp_attr_set BADARCH", -rc));
  }
  // We set no_new_privs ourselves, in a fixed place of the setup script.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0) {
    return Err(Error::FromErrno("seccomp_attr_set NNP", -rc));
  }
  // A binary search over the ~300 allowed numbers instead of a linear scan.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0) {
    return Err(Error::FromErrno("seccomp_attr_set OPTIMIZE", -rc));
  }
  PolicyWriter writer(ctx.get(), mode);
  TRY(AddPolicy(writer, options));

  // Export into memory through a memfd (libseccomp 2.5 has no export-to-buffer).
  UniqueFd memfd(static_cast<int>(syscall(SYS_memfd_create, "seccomp", MFD_CLOEXEC)));
  if (!memfd) return Err(Error::FromErrno("memfd_create"));
  if (int rc = seccomp_export_bpf(ctx.get(), memfd.get()); rc < 0) {
    return Err(Error::FromErrno("seccomp_export_bpf", -rc));
  }
  off_t size = lseek(memfd.get(), 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    return Err("seccomp_export_bpf produced a malformed program");
  }
  std::vector<sock_filter> out(static_cast<size_t>(size) / sizeof(sock_filter));
  ssize_t n = pread(memfd.get(), out.data(), static_cast<size_t>(size), 0);
  if (n != size) return Err(Error::FromErrno("read back seccomp program"));
  return out;
}

}  // namespace

Result<SeccompProgram> BuildSeccompFilter(const SeccompOptions& options) {
  SeccompProgram prog;
  prog.mode = options.mode;
  prog.instructions = TRY(Compile(options, options.mode));
  if (options.mode == SeccompMode::kNotify) prog.answers = TRY(Compile(options, SeccompMode::kErrno));
  return prog;
}

uint32_t EvaluateSeccompProgram(const std::vector<sock_filter>& program, const seccomp_data& data) {
  constexpr uint32_t kReject = SECCOMP_RET_KILL_PROCESS;
  uint32_t a = 0;
  uint32_t x = 0;
  uint32_t mem[BPF_MEMWORDS] = {};
  const auto* bytes = reinterpret_cast<const unsigned char*>(&data);
  for (size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& f = program[pc];
    uint32_t src = BPF_SRC(f.code) == BPF_X ? x : f.k;
    switch (BPF_CLASS(f.code)) {
      case BPF_LD:
      case BPF_LDX: {
        uint32_t& reg = BPF_CLASS(f.code) == BPF_LD ? a : x;
        switch (BPF_MODE(f.code)) {
          case BPF_ABS:  // 32-bit words of seccomp_data, into A only
            if (BPF_CLASS(f.code) != BPF_LD || BPF_SIZE(f.code) != BPF_W || f.k % 4 != 0 ||
                f.k > sizeof(data) - 4) {
              return kReject;
            }
            std::memcpy(&reg, bytes + f.k, 4);
            break;
          case BPF_LEN:
            if (BPF_SIZE(f.code) != BPF_W) return kReject;
            reg = sizeof(data);
            break;
          case BPF_IMM:
            reg = f.k;
            break;
          case BPF_MEM:
            if (f.k >= BPF_MEMWORDS) return kReject;
            reg = mem[f.k];
            break;
          default:
            return kReject;
        }
        break;
      }
      case BPF_ST:
      case BPF_STX:
        if (f.k >= BPF_MEMWORDS) return kReject;
        mem[f.k] = BPF_CLASS(f.code) == BPF_ST ? a : x;
        break;
      case BPF_ALU:
        switch (BPF_OP(f.code)) {
          case BPF_ADD: a += src; break;
          case BPF_SUB: a -= src; break;
          case BPF_MUL: a *= src; break;
          case BPF_DIV: if (src == 0) return kReject; a /= src; break;
          case BPF_MOD: if (src == 0) return kReject; a %= src; break;
          case BPF_AND: a &= src; break;
          case BPF_OR: a |= src; break;
          case BPF_XOR: a ^= src; break;
          case BPF_LSH: a = src >= 32 ? 0 : a << src; break;
          case BPF_RSH: a = src >= 32 ? 0 : a >> src; break;
          case BPF_NEG: a = 0u - a; break;
          default: return kReject;
        }
        break;
      case BPF_JMP: {
        size_t offset;
        switch (BPF_OP(f.code)) {
          case BPF_JA: offset = f.k; break;
          case BPF_JEQ: offset = a == src ? f.jt : f.jf; break;
          case BPF_JGT: offset = a > src ? f.jt : f.jf; break;
          case BPF_JGE: offset = a >= src ? f.jt : f.jf; break;
          case BPF_JSET: offset = (a & src) != 0 ? f.jt : f.jf; break;
          default: return kReject;
        }
        if (offset >= program.size() - pc) return kReject;
        pc += offset;
        break;
      }
      case BPF_RET:
        if (BPF_RVAL(f.code) == BPF_K) return f.k;
        if (BPF_RVAL(f.code) == BPF_A) return a;
        return kReject;
      case BPF_MISC:
        if (BPF_MISCOP(f.code) == BPF_TAX) {
          x = a;
        } else if (BPF_MISCOP(f.code) == BPF_TXA) {
          a = x;
        } else {
          return kReject;
        }
        break;
      default:
        return kReject;
    }
  }
  return kReject;  // fell off the end: the kernel refuses such a program
}

}  // namespace tessera::cell
