#include "cell/seccomp_filter.h"

#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <seccomp.h>

#include "common/unique_fd.h"

namespace tessera::cell {
namespace {

struct CtxDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};

// Calls no qube needs and that reach past its namespaces (kernel image, module
// loading, global clocks and swap, kernel-wide tracing and keyrings). Most are
// also refused by capability checks in the initial user namespace; the filter
// removes the attack surface of reaching that check at all.
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

Status Add(scmp_filter_ctx ctx, uint32_t action, const char* name, unsigned count = 0,
           const scmp_arg_cmp* args = nullptr) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return Ok();  // not a syscall on this architecture
  int rc = seccomp_rule_add_array(ctx, action, nr, count, args);
  if (rc < 0) return Err(Error::FromErrno(std::string("seccomp_rule_add ") + name, -rc));
  return Ok();
}

}  // namespace

Result<SeccompProgram> BuildSeccompFilter(const SeccompOptions& options) {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
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
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDenied) TRY(Add(ctx.get(), eperm, name));

  // ptrace stays allowed: the pid namespace shows only the cell's processes and
  // the user namespace stops anything else, so strace/gdb work inside a qube.

  // personality: the flag bits that weaken exploit mitigations
  // (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
  // ADDR_LIMIT_*, ...) are refused; plain persona changes (PER_LINUX32,
  // UNAME26) and the query 0xffffffff stay allowed. libseccomp allows one
  // comparison per argument and rule, so each rule tests one bit together with
  // bit 31, which is set only in the query value among meaningful calls.
  {
    const uint64_t kBit31 = 0x80000000u;
    const uint64_t dangerous[] = {ADDR_NO_RANDOMIZE, FDPIC_FUNCPTRS, MMAP_PAGE_ZERO,
                                  ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC, ADDR_LIMIT_32BIT,
                                  SHORT_INODE, WHOLE_SECONDS, STICKY_TIMEOUTS, ADDR_LIMIT_3GB};
    for (uint64_t bit : dangerous) {
      scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, bit | kBit31, bit);
      TRY(Add(ctx.get(), eperm, "personality", 1, &cmp));
    }
    // Bit 31 set but not the query: deny if any lower bit is clear.
    for (uint64_t k = 0; k < 31; ++k) {
      scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, (uint64_t{1} << k) | kBit31, kBit31);
      TRY(Add(ctx.get(), eperm, "personality", 1, &cmp));
    }
  }

  if (!options.nested_userns) {
    // New user namespaces inside a cell give its processes a fresh full
    // capability set against many more kernel code paths; off unless the
    // qube has the feature. clone3 passes flags in memory a filter cannot
    // read, so it fails with ENOSYS and libc falls back to clone.
    scmp_arg_cmp user = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
    TRY(Add(ctx.get(), eperm, "unshare", 1, &user));
    TRY(Add(ctx.get(), eperm, "clone", 1, &user));
    TRY(Add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), "clone3"));
  }

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
  SeccompProgram prog;
  prog.instructions.resize(static_cast<size_t>(size) / sizeof(sock_filter));
  ssize_t n = pread(memfd.get(), prog.instructions.data(), static_cast<size_t>(size), 0);
  if (n != size) return Err(Error::FromErrno("read back seccomp program"));
  return prog;
}

}  // namespace tessera::cell
