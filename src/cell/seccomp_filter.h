#pragma once
// The seccomp filter of every cell, compiled in the parent with libseccomp and
// applied in the child after clone (no libseccomp calls, no allocation there).
// The denied calls and why: docs/CELL.md "Seccomp".
//
//   SeccompProgram prog = TRY(BuildSeccompFilter({.nested_userns = false}));
//   ... in the child: ApplySeccompProgram(prog) (async-signal-safe)

#include <linux/filter.h>

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
int ApplySeccompProgram(const SeccompProgram& program);

}  // namespace tessera::cell
