#pragma once
// Whole reads and writes on blocking descriptors, for the static qube tools
// and a service's socket relay (no allocation: safe after fork).

#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace tessera::agent {

// All of `size` bytes, retrying EINTR; false on an error or a closed end.
inline bool WriteFull(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Exactly `size` bytes; false on an error or an end before them.
inline bool ReadFull(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace tessera::agent
