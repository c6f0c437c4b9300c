#pragma once
// Helpers shared by the storage sources; not part of the module's public API.

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/id_shift.h"

namespace tessera::storage::internal {

// Opens a directory the caller trusts (state/runtime dir paths), O_DIRECTORY |
// O_CLOEXEC; `flags` may add O_PATH or O_NOFOLLOW.
Result<UniqueFd> OpenDir(const std::string& path, int flags = 0);

// Opens `name` (one component) below `dir_fd` as a directory without following
// a symlink; `what` names it in errors.
Result<UniqueFd> OpenDirAt(int dir_fd, const std::string& name, const std::string& what);

// mkdirat + fchownat(owner) + fchmodat(mode) when missing; returns true if it
// created the directory. An existing non-directory (or symlink) is an error.
Result<bool> EnsureDirAt(int dir_fd, const std::string& name, mode_t mode, uid_t uid, gid_t gid,
                         const std::string& what);

// Calls fn(name) for each entry of the directory open as `dir_fd` but "."
// and ".." (readdir order; the directory is read through its own fd, so
// `dir_fd`'s offset is untouched), stopping at the first error. `path` names
// the directory in errors.
Status ForEachEntry(int dir_fd, const std::string& path,
                    const std::function<Status(const std::string& name)>& fn);

// Removes every entry of `dir` whose name starts with one of `prefixes`
// (hidden temporaries of an interrupted build or creation), logging each.
Status RemoveLeftovers(const std::string& dir, const std::vector<std::string>& prefixes);

// Opens (creating, mode 0600, never through a symlink) `name` below dir_fd
// and takes an exclusive flock on it; closing the fd releases it.
Result<UniqueFd> LockFileAt(int dir_fd, const std::string& name, const std::string& path);

// Makes the directory `name` below dir_fd (the directory dir_path) once and
// atomically (atomic_dir.cc): under a flock on .<name>.lock, removes
// .<name>.tmp-* leftovers, calls fill on a fresh .<name>.tmp-XXXXXX (0700)
// and renames it to `name` (RENAME_NOREPLACE). On failure the temporary
// directory is removed. Returns false (and calls nothing) if `name` exists
// already as a directory; anything else there is ENOTDIR.
Result<bool> MakeDirOnce(int dir_fd, const std::string& dir_path, const std::string& name,
                         const std::function<Status(int fd, const std::string& path)>& fill);

// Makes `path` (S/templates or S/qubes) a directory only its owner can enter:
// created (parents 0755) or tightened to 0700 and, when running as root, owned
// by root. Every directory directly inside it that grants group/other access
// is tightened to drop those bits too (S/templates/<name>, S/qubes/<name>),
// since older versions created them 0755. Returns an fd of the directory.
// Why: template roots are idmapped, so a file a template qube makes as its
// root is host-root owned on disk; no host user may reach it (docs/STORAGE.md).
Result<UniqueFd> EnsurePrivateStateDir(const std::string& path);

// Writes a small file below `dir_fd` (O_CREAT|O_EXCL|O_NOFOLLOW) with `mode`.
Status WriteFileAt(int dir_fd, const std::string& name, const std::string& content, mode_t mode,
                   const std::string& what);

// Copies the rest of `in` to `out` (copy_file_range, else read/write); `what`
// names the file in errors. Shared by the tree copy and the generation merge.
Status CopyData(int in, int out, const std::string& what);

// Runs argv[0] (absolute path) with argv through RunProcess (common/spawn.h:
// clean signal state, stdin from /dev/null, only fds 0-2); captures stdout
// (up to 16 MiB) when `capture` is non-null, otherwise inherits it. Fails with
// the exit status or signal in the message.
Status RunCommand(const std::vector<std::string>& argv, std::string* capture);

// Mount id (statx STATX_MNT_ID) and device of an fd or of name below dir_fd
// (AT_SYMLINK_NOFOLLOW). mnt_id is 0 when the kernel does not report it.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t mnt_id = 0;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<FileId> StatAt(int dir_fd, const std::string& name, const std::string& what);
Result<FileId> StatFd(int fd, const std::string& what);
// True when a and b lie on different mounts (mount id, or device as a fallback).
bool OnDifferentMount(const FileId& a, const FileId& b);

// Copies the tree at `source` into the existing empty directory `dest_fd`
// (see BuildTemplate kDirectory for the rules).
Status CopyTree(const std::string& source, int dest_fd, const std::string& dest_path);

// Like CopyTree, but every copy (and `dest_fd` itself, which takes the
// source's mode) is owned by the ids `shift` maps the source's to
// (id_shift.h; an id outside both ranges is an error naming the file) and
// keeps all its mode bits: setuid files stay setuid, but only ever for ids
// of the target range. Needs root.
Status CopyTreeShifted(const std::string& source, int dest_fd, const std::string& dest_path,
                       const IdShift& shift);

// Copies one file's content to `name` below dst_dir_fd (created, O_EXCL) with `mode`.
Status CopyFileAt(const std::string& source, int dst_dir_fd, const std::string& name, mode_t mode,
                  const std::string& what);

// True when the private volume `path` (S/qubes/<q>/private, "private"
// below qube_fd) holds more than the empty skeleton (volume_usage.cc).
Result<bool> PrivateVolumeHasData(int qube_fd, const std::string& path);

// The lexically canonical absolute form of an existing path (realpath).
Result<std::string> RealPath(const std::string& path);

// Current time as RFC 3339 UTC ("2026-11-22T13:09:24Z").
std::string NowRfc3339();

}  // namespace tessera::storage::internal
