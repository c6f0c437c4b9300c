#pragma once
// Moving a file tree from one qube id range to another: the one place that
// decides which host id a shifted file gets (private volumes, standalone
// roots, disposable snapshots, copies of templates).
//
//   IdShift shift{.from_base = 0, .to_base = ids.base};   // host root -> the qube's root
//   TRY(ShiftTreeOwnership(dir_fd, path, shift));
//
// The rule, for uids and gids alike:
//   - an id in [from_base, from_base + kIdsPerQube) moves to the same offset
//     in [to_base, to_base + kIdsPerQube);
//   - an id already in the target range stays (so an interrupted shift can
//     simply be run again);
//   - any other id is an error naming the file: a file is never left owned
//     by an id outside the qube's range.
// chown clears setuid/setgid; every non-symlink gets its mode bits back, so a
// setuid file stays setuid, but only ever for an id of the target range.

#include <sys/types.h>

#include <string>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage {

struct IdShift {
  uid_t from_base = 0;
  uid_t to_base = 0;

  // The id `id` (a uid or gid of `path`) maps to; EPERM naming `path` if it
  // lies in neither range.
  Result<uid_t> Map(uid_t id, const std::string& path) const;
};

// Deepest directory level ShiftTreeOwnership enters (two fds per level).
inline constexpr int kMaxShiftDepth = 256;

// Shifts the tree at `dir_fd` (named `path` in errors) in place, the
// directory itself last (so its owner tells whether a shift completed).
// Every step is fd-relative and never follows a symlink (a symlink's own
// owner is shifted); it stays on the file system of `dir_fd` (a directory on
// another one is an error, EXDEV) and refuses trees deeper than
// kMaxShiftDepth (ELOOP). Any failing stat, chown or chmod is an error naming
// the file. Needs root.
Status ShiftTreeOwnership(int dir_fd, const std::string& path, const IdShift& shift);

// Makes sure S/qubes/<qube>/private belongs to the qube's range: owned by
// ids.base already = nothing to do; owned by host root (created by an older
// version, or a shift that was interrupted) = shifted from host ids 0.. to
// the range; any other owner = EPERM naming it. Call EnsurePrivateVolume
// first.
Status ShiftPrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids);

}  // namespace tessera::storage
