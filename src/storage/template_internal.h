#pragma once
// Template-building pieces exposed for unit tests; not part of the public API.

#include <string>
#include <vector>

#include "common/error.h"

namespace tessera::storage::internal {

// The busybox tree of `--from busybox` (default busybox lookup), made in the
// existing empty directory root_fd; `detail` receives the busybox used.
Status BuildBusyboxTree(int root_fd, const std::string& root_path, std::string* detail);

// Fails unless `path` is a 64-bit ELF without a PT_INTERP (statically linked).
Status CheckStaticElf(const std::string& path);

struct Applet {
  std::string dir;   // bin, sbin, usr/bin or usr/sbin
  std::string name;  // sh, ls, ...
};
// Parses `busybox --list-full`; entries in other directories are skipped.
Result<std::vector<Applet>> ParseAppletList(const std::string& text);

// The first non-security http(s) archive URI in an apt sources file (one-line
// "deb URI suite ..." or deb822 "URIs:"), or "" if none.
std::string ParseAptMirror(const std::string& text);

}  // namespace tessera::storage::internal
