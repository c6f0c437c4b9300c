#pragma once
// A qube's private volume as a sized ext4 image (the `private_size` key):
// S/qubes/<q>/private.img, mounted at S/qubes/<q>/private while the qube
// runs, so everything that reads or binds private/ sees the volume's files
// (docs/STORAGE.md "Private volume size").
//
//   // start (PrepareQubeStorage does this): made, migrated, grown, mounted
//   TRY(OpenPrivateVolume(layout, "work", ids, 2ull << 30));
//   // stop (Cell::ReleaseStorage), recovery, before orphaning or removal
//   TRY(ClosePrivateVolume(layout, "work"));
//   // offline work on the files of a halted qube
//   TRY(WithPrivateVolume(layout, "work", [&] { return ...; }));
//   // tessera volume resize
//   uint64_t size = TRY(ResizePrivateVolume(layout, "work", 8ull << 30));
//
// A qube whose volume is still a plain directory (made by an older version)
// is migrated at its next start: a new image is filled from the directory
// (mkfs.ext4 -d keeps owners, modes, links, xattrs) and put in place before
// the directory is removed, so a crash at any point leaves one complete
// volume. Volumes grow, never shrink. Every change is made under the flock
// S/qubes/<q>/.volume.lock. Needs root.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage {

inline constexpr uint64_t kDefaultPrivateSizeBytes = 2ull << 30;  // as Qubes

// Makes the qube's volume an image of at least `bytes` (a multiple of 1 MiB,
// at least 32 MiB) and mounts it at private/ (nosuid, nodev; its root owned
// by the qube's root). A directory volume is migrated first; a smaller image
// is grown online; a larger one keeps its size. Already mounted: only the
// size is checked. A private/ directory holding files beside an image (put
// there while it was not mounted) is refused with EEXIST naming both: which
// one is right is the user's call.
Status OpenPrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids,
                         uint64_t bytes);

// Unmounts the qube's volume if it is mounted. Nothing to do for a
// directory volume or a qube without storage.
Status ClosePrivateVolume(const Layout& layout, const std::string& qube);

// Calls fn with private/ holding the volume's files: an image not mounted is
// mounted for the call and unmounted after; a mounted one (its qube running)
// or a directory volume is used as it is.
Status WithPrivateVolume(const Layout& layout, const std::string& qube,
                         const std::function<Status()>& fn);

// True when the qube's volume is an image (S/qubes/<q>/private.img).
bool HasPrivateImage(const Layout& layout, const std::string& qube);

// The image's size in bytes; nullopt for a directory volume or none.
Result<std::optional<uint64_t>> PrivateVolumeSize(const Layout& layout, const std::string& qube);

struct VolumeResize {
  uint64_t size = 0;     // the volume's size now
  bool pending = false;  // mounted, and the kernel would not grow it online
                         // (no CAP_SYS_RESOURCE): the qube sees it after a restart
};

// Grows the qube's image to `bytes`: online when it is mounted (see
// VolumeResize::pending), else offline (e2fsck + resize2fs). Smaller than
// the current size is EINVAL naming both (volumes never shrink: shrinking
// could cut files); a qube without an image is ENOENT (it gets one of its
// private_size at its next start).
Result<VolumeResize> ResizePrivateVolume(const Layout& layout, const std::string& qube,
                                         uint64_t bytes);

// A disposable's first volume: a crash-consistent copy of the image of its
// disposable template `dvm` (frozen for the copy if it is mounted), holes
// kept, every id moved from dvm_ids to ids, mounted at the disposable's
// private/. A template with no volume at all gets an empty image of `bytes`
// first (unmounted), so only its first disposable pays for mkfs. Returns
// false (nothing done) when `dvm` still has a directory volume (an older
// version's, migrated at its own next start) or the disposable has a volume
// already.
Result<bool> SnapshotPrivateImage(const Layout& layout, const std::string& qube, const IdRange& ids,
                                  const std::string& dvm, const IdRange& dvm_ids, uint64_t bytes);

}  // namespace tessera::storage
