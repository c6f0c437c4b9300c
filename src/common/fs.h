#pragma once
// Small file helpers shared by every module.
//
//   TRY(WriteFileAtomic(state_dir + "/qubes.json", json_text, 0600));
//   std::string text = TRY(ReadFile("/etc/tessera/system.toml"));

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "common/error.h"

namespace tessera {

// Reads a whole file; refuses files larger than `max_bytes` (bad input must not
// exhaust memory).
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 64u << 20);

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it over
// `path` and fsyncs the directory: after a crash the file is either old or new,
// never half-written.
Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode = 0644);

// mkdir -p with `mode` for created directories; existing directories are fine.
Status MakeDirs(const std::string& path, mode_t mode = 0755);

// Directory part of a path ("a/b/c" -> "a/b", "c" -> ".").
std::string DirName(const std::string& path);

}  // namespace tessera
