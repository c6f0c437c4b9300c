#pragma once
// The closure of a Nix template (storage/nix_template.h) as a detached,
// read-only mount that the child moves onto the qube's /nix/store.
//
//   UniqueFd store = TRY(MountClosureImage(prepared.closure_image,
//                                          prepared.closure_image_kind));
//
// erofs is mounted straight from its file where the kernel can (6.12+);
// otherwise, and for squashfs, through a read-only autoclear loop device,
// which detaches once the cell's mount is gone. Made in the host's mount
// namespace, by root: the qube's user namespace never mounts it.

#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/storage.h"

namespace tessera::cell {

Result<UniqueFd> MountClosureImage(const std::string& image, storage::ClosureImage kind);

}  // namespace tessera::cell
