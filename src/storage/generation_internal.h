#pragma once
// Generation pieces exposed for unit tests; not part of the public API.

#include <string>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage::internal {

// Builds in the empty directory out_fd the tree an overlay mount of `upper_fd`
// over `lower_fd` shows (overlayfs semantics, docs/STORAGE.md "Committing"):
// - an upper entry replaces the lower one; upper regular files, symlinks and
//   FIFOs are copied with owner, mode and times, regular files and
//   directories also with their xattrs (file capabilities, ACLs, user.*; not
//   the overlay's own trusted.overlay.* / user.overlay.*); hard links inside
//   the upper become separate files; sockets and device nodes are skipped;
// - a whiteout (character device 0:0) deletes the lower entry;
// - an upper directory is merged with the lower directory of the same name,
//   unless it is opaque (xattr user.overlay.opaque or trusted.overlay.opaque
//   "y") or the lower entry is not a directory: then it replaces it;
// - lower entries the upper does not name are hard-linked (files, symlinks)
//   or recreated and merged (directories, with their owner, mode, times and
//   xattrs).
// out_fd itself takes the upper root's owner, mode and times.
// Refused (EINVAL naming the file): overlay redirects and metacopy entries,
// which an overlay mounted with userxattr never makes and this merge cannot
// apply; (EPERM) an upper file owned by an id >= 65536, which no qube could
// have written through the idmapped upper. Depth is limited to 256 levels.
Status MergeOverlayLayers(int lower_fd, int upper_fd, int out_fd, const std::string& lower_path,
                          const std::string& upper_path, const std::string& out_path);

// EBUSY naming every qube recorded as using a generation of template `t`
// ("template t is in use by work (generation 3); stop it before you remove
// it"). The caller holds the template's lock (BuildTemplate, RemoveTemplate).
Status CheckTemplateUnused(const Layout& layout, const std::string& t, const std::string& action);

}  // namespace tessera::storage::internal
