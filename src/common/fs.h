#pragma once
// Small file helpers shared by every module.
//
//   TRY(WriteFileAtomic(state_dir + "/qubes.json", json_text, 0600));
//   TRY(WriteFileAtomic(runtime_dir + "/cell.json", record, 0600, Durability::kCrashSafe));
//   std::string text = TRY(ReadFile("/etc/tessera/system.toml"));

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tessera {

// Reads a whole file; refuses files larger than `max_bytes` (bad input must not
// exhaust memory).
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 64u << 20);

// ReadFile for input a user names (a system description, a policy file):
// refuses anything but a regular file — a FIFO, socket or device — without
// blocking on it (opened O_NONBLOCK, checked with fstat), so a FIFO given as a
// config is an error ("PATH is a FIFO, not a regular file"), not a hang.
Result<std::string> ReadRegularFile(const std::string& path, size_t max_bytes = 64u << 20);

// How far WriteFileAtomic goes to make a write survive.
enum class Durability {
  // fsync the file before the rename and the directory after it: after a
  // crash of the host the file is the old or the new one, never half-written.
  kSynced,
  // Only write + rename: atomic against a crash of the writing process (the
  // page cache survives it), microseconds instead of milliseconds; after a
  // host crash the file may be old, empty or missing. For files whose loss a
  // reboot makes moot (runtime dir) or that are rewritten constantly and
  // recovered from (the daemon's state file).
  kCrashSafe,
};

// The one way tessera replaces a file: writes `content` to a temporary file
// created beside `path` (O_EXCL|O_CLOEXEC, unique random name, so concurrent
// writers never share one), sets exactly `mode` (not filtered by the umask),
// renames it over `path`. A failure at any step removes the temporary file
// and leaves `path` as it was. A symlink at `path` is replaced, not followed.
Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode = 0644,
                       Durability durability = Durability::kSynced);

// Writes all of `data` to `fd` (short writes and EINTR retried); `what` names
// the file in the error.
Status WriteAll(int fd, std::string_view data, const std::string& what);

// mkdir -p with `mode` for created directories; existing directories are fine.
Status MakeDirs(const std::string& path, mode_t mode = 0755);

// Directory part of a path ("a/b/c" -> "a/b", "c" -> ".").
std::string DirName(const std::string& path);

}  // namespace tessera
