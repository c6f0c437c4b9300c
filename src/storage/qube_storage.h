#pragma once
// The one entry point that makes a qube's storage ready before a backend
// starts it, and the list of qubes that have storage. DestroyQubeStorage
// (storage.h) is the one that removes it.
//
//   storage::QubeStorageRequest request;
//   request.qube = "disp4711";
//   request.template_name = "debian";
//   request.disposable = true;
//   request.snapshot_from = "debian-dvm";
//   storage::PreparedStorage prepared = TRY(storage::PrepareQubeStorage(layout, request));
//   // mount prepared.root_path (+ host_ro_binds), bind prepared.private_volume's home/rw,
//   // map uids/gids 0..65535 to prepared.ids
//   ...
//   TRY(storage::DestroyQubeStorage(layout, "disp4711"));   // disposables, at stop

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage {

// What the qube's root tree is.
enum class RootSource {
  kTemplateShared,  // app/disposable: the template's current generation, read-only, under an
                    // overlay
  kTemplateOwn,     // the template qube itself: its current generation under its persistent changes
  kStandalone,      // S/qubes/<n>/root, the qube's own (made at the first start)
};

struct QubeStorageRequest {
  std::string qube;
  RootSource root = RootSource::kTemplateShared;
  // kTemplateShared/kTemplateOwn: the template; kStandalone: copied from at
  // the first start ("" = a busybox tree).
  std::string template_name;
  bool disposable = false;
  // Disposables: the disposable template whose private volume they start
  // from ("" = an empty volume).
  std::string snapshot_from;
  // Bytes of the private volume, an ext4 image mounted at private/
  // (private_volume.h): made, migrated from a directory volume or grown to
  // this. 0 keeps a plain directory volume with no limit (storage tests;
  // every launch passes the qube's private_size).
  uint64_t private_size = 0;
};

struct PreparedStorage {
  IdRange ids;
  std::string root_path;  // tree the backend mounts as root (a generation)
  // kTemplateShared/kTemplateOwn: the generation root_path is (generations.h),
  // recorded as used by this qube until ReleaseGenerations.
  uint64_t generation = 0;
  // kTemplateOwn: S/templates/<t>/changes, whose upper/ and work/ are the
  // overlay's persistent upper and work directories.
  std::string changes_path;
  std::vector<std::string> host_ro_binds;  // from template.json (+ /nix/store: nix_template.h)
  // A Nix template's generation: the image of its closure, which the backend
  // mounts read-only at /nix/store ("" = none; nix_template.h).
  std::string closure_image;
  ClosureImage closure_image_kind = ClosureImage::kErofs;
  std::string private_volume;              // S/qubes/<n>/private, owned by the qube's range
  // An image volume is mounted at private_volume until ClosePrivateVolume
  // (Cell::ReleaseStorage at stop).
};

// In order: checks the request (names; a disposable is kTemplateShared; only
// a disposable takes snapshot_from: EINVAL otherwise), reads the template
// (ENOENT naming it if missing: building templates is not this function's
// job; nothing is allocated or created then), allocates or looks up the
// qube's id range, makes the standalone root at the first start, and makes
// sure the private volume exists and belongs to the range (a host-root-owned
// one of an older version is shifted), and last records the template's current
// generation as used by the qube (AcquireGeneration; the backend's stop or
// cleanup releases it with ReleaseGenerations).
//
// A disposable with snapshot_from gets, at its first preparation, a copy of
// S/qubes/<snapshot_from>/private with every id moved from the disposable
// template's range to its own (Qubes semantics: what the disposable
// template's home holds, every disposable starts with). The copy uses
// copy_file_range (reflink file systems share the data), is built in a
// hidden temporary directory and renamed into place, so a crash never leaves
// half a volume. A disposable template without a private volume gives an
// empty one. A file of an id outside the template's range is an error naming
// it (EPERM).
//
// On failure, storage made so far stays (a disposable's caller destroys it
// with DestroyQubeStorage). Needs root.
Result<PreparedStorage> PrepareQubeStorage(const Layout& layout, const QubeStorageRequest& request);

// Names of the qubes that have a directory S/qubes/<name>, sorted (entries
// that are not valid names, like temporaries, are skipped).
Result<std::vector<std::string>> ListQubeStorage(const Layout& layout);

}  // namespace tessera::storage
