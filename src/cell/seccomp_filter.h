#pragma once
// The seccomp filter of every cell, compiled in the parent with libseccomp and
// applied in the child after clone (no libseccomp calls, no allocation there).
// An allow-list: what a general-purpose x86_64 userland needs runs; dangerous
// calls fail with EPERM, everything else (unknown, unlisted, kernel AIO) with
// ENOSYS, as on an older kernel; foreign-ABI calls kill the process. The
// policy and why: docs/CELL.md "Seccomp".
//
//   SeccompProgram prog = TRY(BuildSeccompFilter({.nested_userns = false}));
//   ... in the child: ApplySeccompProgram(prog) (async-signal-safe)
//
// With SeccompMode::kNotify every denial goes to a listener fd instead
// (SECCOMP_RET_USER_NOTIF); a SeccompMonitor (seccomp_monitor.h) answers each
// with the errno kErrno would have returned and reports it.

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tessera::cell {

// How a cell's denials are delivered (CellSpec::seccomp_mode).
enum class SeccompMode {
  // Deny with the errno in the filter itself; nothing is reported (default).
  kErrno,
  // Deny through SECCOMP_RET_USER_NOTIF: the child installs the filter with
  // SECCOMP_FILTER_FLAG_NEW_LISTENER and hands the listener to its starter,
  // which must serve it (SeccompMonitor). While nobody answers, a denied call
  // waits; once the listener is closed, denied calls fail with ENOSYS.
  kNotify,
};

struct SeccompOptions {
  // Feature "nested-userns": allow unshare/clone with CLONE_NEWUSER (and clone3).
  bool nested_userns = false;
  SeccompMode mode = SeccompMode::kErrno;
};

struct SeccompProgram {
  SeccompMode mode = SeccompMode::kErrno;
  // The program to install.
  std::vector<sock_filter> instructions;
  // kNotify only: the same policy compiled in kErrno mode. The monitor runs it
  // on each notification's seccomp_data to learn the errno to answer, so the
  // filter and the monitor cannot disagree.
  std::vector<sock_filter> answers;
};

Result<SeccompProgram> BuildSeccompFilter(const SeccompOptions& options);

// BuildSeccompFilter, once per process and options (every cell of a daemon
// shares the few variants); seccomp_cache.cc. With `disk_cache_dir` (a
// root-only directory: the runtime dir's `seccomp/`), also once per binary
// across processes: compiling costs milliseconds of CPU, a large share of a
// one-shot `tessera cell run`. The file is keyed by the running executable
// (device, inode, size, mtime) and the options, checksummed, and rebuilt when
// it does not match.
Result<std::shared_ptr<const SeccompProgram>> CachedSeccompFilter(
    const SeccompOptions& options, const std::string& disk_cache_dir = "");

// The disk cache alone: the program of `options` from `dir` when a valid file
// of this binary is there, else built and stored there (best effort).
Result<SeccompProgram> LoadOrBuildSeccompFilter(const SeccompOptions& options,
                                                const std::string& dir);

// The cache file's contents for `program`, and back (nullopt when `bytes`
// are not exactly a well-formed, checksummed file of `options`).
std::string SerializeSeccompProgram(const SeccompOptions& options, const SeccompProgram& program);
std::optional<SeccompProgram> ParseSeccompProgram(const SeccompOptions& options,
                                                  std::string_view bytes);

// Runs a classic BPF seccomp program on `data` as the kernel would and returns
// its SECCOMP_RET_* value; SECCOMP_RET_KILL_PROCESS for anything the kernel
// would not have accepted (bad opcode, load outside seccomp_data, no return).
uint32_t EvaluateSeccompProgram(const std::vector<sock_filter>& program, const seccomp_data& data);

// Installs the program for the calling thread (seccomp(SECCOMP_SET_MODE_FILTER)).
// Needs no_new_privs or CAP_SYS_ADMIN. Returns -errno on failure; for a
// kNotify program the new listener fd (O_CLOEXEC), else 0. Async-signal-safe,
// and inline so that its one system call is part of the post-clone child's
// object (the symbol check of child_setup.cc sees what it calls).
inline int ApplySeccompProgram(const SeccompProgram& program) {
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(program.instructions.size());
  fprog.filter = const_cast<sock_filter*>(program.instructions.data());
  unsigned long flags =
      program.mode == SeccompMode::kNotify ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
  if (rc < 0) return -errno;
  return static_cast<int>(rc);
}

}  // namespace tessera::cell
