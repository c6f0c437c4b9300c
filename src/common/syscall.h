#pragma once
// Syscall wrappers: run a raw call, retry EINTR, and turn -1 into an Error named
// after the call, so every failure says which syscall on which object failed.
//
//   int fd = TRY(Syscall("open " + path, [&] { return ::open(p, O_RDONLY | O_CLOEXEC); }));

#include <sys/types.h>

#include <cerrno>
#include <string>

#include "common/error.h"

namespace tessera {

template <class F>
Result<int> Syscall(const std::string& what, F&& call) {
  for (;;) {
    int rc = static_cast<int>(call());
    if (rc >= 0) return rc;
    if (errno != EINTR) return Err(Error::FromErrno(what));
  }
}

template <class F>
Result<ssize_t> SyscallSize(const std::string& what, F&& call) {
  for (;;) {
    ssize_t rc = call();
    if (rc >= 0) return rc;
    if (errno != EINTR) return Err(Error::FromErrno(what));
  }
}

}  // namespace tessera
