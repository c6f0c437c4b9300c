#pragma once
// Template-building pieces exposed for unit tests; not part of the public API.

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/error.h"

namespace tessera::storage::internal {

// mkdir `rel` below dir_fd with exactly `mode` (not filtered by the umask).
Status MakeDir(int dir_fd, const std::string& rel, mode_t mode, const std::string& root_path);
// The empty mount points every cell fills (proc, dev, tmp, ...) and etc/.
Status MakeMountPoints(int root_fd, const std::string& root_path);
// etc/passwd, group, shadow (root, the qube user, nobody), hostname, hosts,
// resolv.conf (Qubes' virtual DNS), shells, profile.
Status WriteMinimalEtc(int root_fd, const std::string& root_path);

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

// What /etc/passwd, group and shadow need appended so that the qube user
// `user` (uid/gid 1000, home /home/user) exists; empty strings where nothing
// is needed, and nothing at all when uid 1000 already belongs to another name.
struct QubeUserEntries {
  std::string passwd;
  std::string group;
  std::string shadow;
};
QubeUserEntries MissingQubeUser(const std::string& passwd, const std::string& group,
                                const std::string& shadow);

// Appends those entries in the tree at root_fd (debootstrap and directory
// templates; busybox and host trees are written with the user).
Status EnsureQubeUser(int root_fd, const std::string& root_path);

}  // namespace tessera::storage::internal
