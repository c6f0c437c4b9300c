#pragma once
// What happens to private volumes beyond a qube's own starts: orphans (the
// storage of a qube removed from the description, kept until purged), taking
// an orphan back, and copying one qube's volume to another (qvm-clone).
// Nothing here deletes data a user could want back without being asked to:
// a volume that is in the way is orphaned, never removed.
//
//   // apply removed "vault": its storage becomes an orphan.
//   std::optional<OrphanInfo> o = TRY(OrphanQubeStorage(layout, "vault", "removed from ..."));
//   // later: `tessera volume adopt vault` (the qube re-added and halted)
//   AdoptOutcome a = TRY(AdoptOrphan(layout, "vault", "vault", ids, Displace::kRefuse));
//   // `tessera volume copy work work2 --force`
//   CopyOutcome c = TRY(CopyPrivateVolume(layout, "work", "work2", Displace::kOrphan));
//
// On disk: S/orphans/ (root 0700) holds one directory per orphan,
// S/orphans/<qube>@<YYYYMMDDTHHMMSSZ>[-N]/, with orphan.json and what the
// qube directory held (private/, a standalone root/). Every change is a
// rename under the flock S/orphans/.lock; see docs/STORAGE.md "Orphans".
//
// Callers make sure the qubes involved are halted (the daemon holds them);
// these functions only touch files. Need root.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage {

struct OrphanInfo {
  std::string id;       // directory name below S/orphans: "vault@20261122T132528Z"
  std::string qube;     // the qube it belonged to
  std::string removed;  // RFC 3339, when it became an orphan
  std::string reason;   // why ("removed from the system description", ...)
  uid_t id_base = 0;    // host id base its files are owned by
  uint64_t bytes = 0;   // disk usage when it became an orphan
};

// What to do with a destination volume that holds data.
enum class Displace {
  kRefuse,  // fail with EEXIST naming it
  kOrphan,  // make it an orphan first (never deleted)
};

// True for a well-formed orphan id (the qube name rule, '@', the timestamp,
// an optional -N); the gate before an id becomes a path component.
bool IsOrphanId(const std::string& id);

// Moves everything of S/qubes/<qube> (private volume, standalone root) into
// a new orphan with one rename. nullopt when the qube has no storage.
// Leftover hidden temporaries of the qube directory are dropped.
Result<std::optional<OrphanInfo>> OrphanQubeStorage(const Layout& layout, const std::string& qube,
                                                    const std::string& reason);

// Every orphan, oldest first. A corrupt orphan.json is an error naming the
// file and field.
Result<std::vector<OrphanInfo>> ListOrphans(const Layout& layout);

// `name` is an orphan id, or a qube name with exactly one orphan (several:
// EEXIST listing their ids; none: ENOENT).
Result<OrphanInfo> FindOrphan(const Layout& layout, const std::string& name);

// Deletes an orphan (FindOrphan rules): renamed out of its name first, so a
// crash leaves either the orphan or a hidden leftover the next orphan
// operation removes.
Result<OrphanInfo> PurgeOrphan(const Layout& layout, const std::string& name);

struct AdoptOutcome {
  OrphanInfo adopted;
  std::optional<OrphanInfo> displaced;  // the qube's previous storage, now an orphan
};

// Makes orphan `name` (FindOrphan rules) the storage of `qube`, its files
// shifted from the orphan's id range to `ids` (id_shift.h). The qube's
// current storage, if it holds data (HasData), is refused (kRefuse: EEXIST)
// or orphaned (kOrphan); an empty one (a fresh volume's skeleton) is
// removed. Crash-safe: the orphan is renamed into place with its
// orphan.json, and the shift is finished (FinishAdoption) before the qube's
// next start if it was interrupted.
Result<AdoptOutcome> AdoptOrphan(const Layout& layout, const std::string& name,
                                 const std::string& qube, const IdRange& ids, Displace displace);

// Finishes an interrupted adoption (S/qubes/<qube>/orphan.json present):
// shifts private/ and root/ from the recorded base to `ids`, then removes
// orphan.json. Nothing to do otherwise. PrepareQubeStorage calls it.
Status FinishAdoption(const Layout& layout, const std::string& qube, const IdRange& ids);

struct CopyOutcome {
  uint64_t bytes = 0;                   // disk usage of the copy
  std::optional<OrphanInfo> displaced;  // the destination's previous volume, now an orphan
};

// Copies S/qubes/<source>/private to S/qubes/<dest>/private, every id moved
// from the source's range to the destination's (allocated if new). A
// destination volume with data is refused (kRefuse: EEXIST) or orphaned
// (kOrphan); an empty one is replaced. Built in a hidden temporary directory
// and renamed into place: the destination has its old volume or the whole
// copy, never half of it. A source without a volume is ENOENT.
Result<CopyOutcome> CopyPrivateVolume(const Layout& layout, const std::string& source,
                                      const std::string& dest, Displace displace);

// True when S/qubes/<qube> holds anything a user made: a private volume with
// more than the empty skeleton (home/, home/user/, rw/), or a standalone
// root. False when the qube has no storage.
Result<bool> HasData(const Layout& layout, const std::string& qube);

// Disk usage (st_blocks) of the tree at `path`, without following symlinks
// or leaving its file system; 0 when it does not exist.
Result<uint64_t> DiskUsage(const std::string& path);

}  // namespace tessera::storage
