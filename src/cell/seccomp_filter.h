#pragma once
// The seccomp filter of every cell, compiled in the parent with libseccomp and
// applied in the child after clone (no libseccomp calls, no allocation there).
// The denied calls and why: docs/CELL.md "Seccomp".
//
//   SeccompProgram prog = TRY(BuildSeccompFilter({.nested_userns = false}));
//   ... in the child: ApplySeccompProgram(prog) (async-signal-safe)

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "common/error.h"

namespace tessera::cell {

struct SeccompOptions {
  // Feature "nested-userns": allow unshare/clone with CLONE_NEWUSER (and clone3).
  bool nested_userns = false;
};

struct SeccompProgram {
  std::vector<sock_filter> instructions;
};

Result<SeccompProgram> BuildSeccompFilter(const SeccompOptions& options);

// Installs the program for the calling thread (seccomp(SECCOMP_SET_MODE_FILTER)).
// Needs no_new_privs or CAP_SYS_ADMIN. Async-signal-safe: returns -errno.
// Inline so that its one system call is part of the post-clone child's object
// (the symbol check of child_setup.cc sees what it calls).
inline int ApplySeccompProgram(const SeccompProgram& program) {
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(program.instructions.size());
  fprog.filter = const_cast<sock_filter*>(program.instructions.data());
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) return -errno;
  return 0;
}

}  // namespace tessera::cell
