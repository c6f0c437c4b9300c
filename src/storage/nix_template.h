#pragma once
// Templates Nix built (system description `source = "nix"`, docs/NIXOS.md
// "Templates from Nix"): a small skeleton tree per generation, and the
// template's closure, which its qubes see read-only at /nix/store and nothing
// else of the host's store.
//
//   NixSource src{"/nix/store/…-env", "/nix/store/…-closure-info/store-paths",
//                 ClosureImage::kErofs};
//   TRY(PublishNixGeneration(layout, "env", src));   // when the root changed
//   std::optional<NixSource> now = TRY(ReadNixSource(generation.path));
//   TRY(HoldNixRoot(layout, "work", now->root));      // qube start (storage does it)
//   TRY(ReleaseNixRoot(layout, "work"));              // qube stopped
//
// A generation of a Nix template, gen/<N>/:
//   sw -> <root> (a buildEnv) or <root>/sw (a NixOS system); bin, sbin,
//   usr/bin, usr/sbin -> sw/…; etc/ the minimal one, plus (a NixOS system)
//   etc/static -> <root>/etc and a link per entry of it;
//   nix/store/                   the mount point of the closure, hiding:
//   nix/store/.tessera/source.json   {root, closure, image}
//   nix/store/.tessera/store-paths   the paths in the image, one per line
//   nix/store/.tessera/closure.erofs | closure.squashfs
// The image is made from exactly the closure's paths (bound into a private
// staging tmpfs, so nothing else of the store can slip in) and never written
// after; the cell mounts it read-only (cell/closure_mount.h).
//
// GC roots: while a qube runs on a Nix generation, <gcroots>/<state>/<qube>
// -> <root> keeps Nix's garbage collector off its closure (<gcroots> =
// $TESSERA_NIX_GCROOTS or /nix/var/nix/gcroots/tessera, <state> the state
// directory's path escaped as systemd does: '/' as '-', other bytes but
// [A-Za-z0-9_.] as \xNN). Templates no qube runs on are rooted by
// the NixOS system that declares them.

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage {

Result<ClosureImage> ParseClosureImage(std::string_view text);  // "erofs", "squashfs", "none"
std::string_view ToString(ClosureImage image);

// The store paths a closure file lists (closureInfo's store-paths; a
// directory means its store-paths file), sorted and unique. Every line must
// be a store path (common/names.h IsStorePath) that exists; anything else is
// an error naming the file and line.
Result<std::vector<std::string>> ReadClosure(const std::string& closure);

// Fills the empty directory root_fd (root_path) with generation content for
// `source` (layout above): checks the closure holds the root, writes the
// skeleton and source.json, and builds the image. `mkfs.erofs` and
// `mksquashfs` come from PATH (Debian: erofs-utils, squashfs-tools).
Status BuildNixGeneration(const NixSource& source, int root_fd, const std::string& root_path);

// The Nix source a generation was built from; nullopt for a generation of
// another kind of template.
Result<std::optional<NixSource>> ReadNixSource(const std::string& generation_path);

// gen/<N>/nix/store/.tessera/closure.<erofs|squashfs>; "" for kNone.
std::string ClosureImagePath(const std::string& generation_path, ClosureImage image);

// Makes `source` the template's current generation unless it is already
// (a new generation otherwise: running qubes keep theirs; generations.h
// PublishGeneration). Returns whether a generation was made.
Result<bool> PublishNixGeneration(const Layout& layout, const std::string& template_name,
                                  const NixSource& source);

// The directory of this state directory's GC roots.
std::string NixGcRootsDir(const Layout& layout);
// Points the qube's GC root at `store_path` (atomically replacing an older one).
Status HoldNixRoot(const Layout& layout, const std::string& qube, const std::string& store_path);
// Removes the qube's GC root, if any.
Status ReleaseNixRoot(const Layout& layout, const std::string& qube);
// Removes the GC roots of every qube not in `running` (daemon start: after a
// host crash nothing else would, and the closures would stay uncollectable).
Status PruneNixRoots(const Layout& layout, const std::set<std::string>& running);

}  // namespace tessera::storage
