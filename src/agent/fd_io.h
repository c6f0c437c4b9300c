#pragma once
// Whole reads and writes on blocking descriptors, for the static qube tools
// and a service's socket relay (no allocation: safe after fork), and exact
// copies between them.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

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

// How CopyExactly ended.
enum class Copied { kAll, kShort, kWriteError };

// Exactly `size` bytes from `in` to `out`, spliced when one of them is a
// pipe (the data never passes through this process), else read and
// written. kShort: `in` ended first; kWriteError: errno says why.
inline Copied CopyExactly(int in, int out, uint64_t size) {
  bool splice_works = true;
  char buf[1 << 16];
  while (size > 0) {
    size_t want = size < (uint64_t{1} << 20) ? static_cast<size_t>(size) : size_t{1} << 20;
    if (splice_works) {
      ssize_t n = ::splice(in, nullptr, out, nullptr, want, SPLICE_F_MOVE);
      if (n > 0) {
        size -= static_cast<uint64_t>(n);
        continue;
      }
      if (n == 0) return Copied::kShort;
      if (errno == EINTR) continue;
      if (errno != EINVAL) return Copied::kWriteError;
      splice_works = false;  // neither is a pipe, or one cannot splice
    }
    want = want < sizeof(buf) ? want : sizeof(buf);
    if (!ReadFull(in, buf, want)) return Copied::kShort;
    if (!WriteFull(out, buf, want)) return Copied::kWriteError;
    size -= want;
  }
  return Copied::kAll;
}

}  // namespace tessera::agent
