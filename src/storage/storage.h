#pragma once
// Storage: where qube filesystems live on the host, and the stable host uid/gid
// range of each qube. Bookkeeping and file trees; no namespaces, and no
// mounts but the private volume images (private_volume.h; the rest is
// src/cell/).
//
//   storage::Layout layout = storage::Layout::FromEnvironment();
//   storage::IdRange ids = TRY(storage::AllocateIdRange(layout, "work"));
//   std::string lower = layout.TemplateRoot("debian");
//   TRY(storage::EnsurePrivateVolume(layout, "work"));
//   storage::Scratch scratch = TRY(storage::CreateScratch(layout, "disp1234"));
//
// On-disk layout (state dir S, runtime dir R):
//   S/templates/<name>/gen/<N>/         template generations (generations.h)
//   S/templates/<name>/root -> gen/<N>  the current one
//   S/templates/<name>/changes/         the template qube's overlay upper/work
//   S/templates/<name>/template.json    {"name", "built_from", "source", "created"}
//   S/qubes/<name>/private.img          persistent private volume: ext4 image of
//                                       private_size (private_volume.h)
//   S/qubes/<name>/private/             its mount point while in use (/home, /rw)
//   S/qubes/<name>/root/                persistent root of a standalone qube
//                                       (shifted into its id range on disk)
//   S/idmap.json                        qube name -> host id base (stable forever)
//   /var/lib/tessera-ids/ranges.json    host-wide: base -> {state dir, qube}
//   R/cells/<name>/                     per-run scratch (overlay upper/work, ...)
//                                       removed when the qube stops

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/names.h"

namespace tessera::storage {

struct Layout {
  std::string state_dir;    // TESSERA_STATE_DIR or /var/lib/tessera
  std::string runtime_dir;  // TESSERA_RUNTIME_DIR or /run/tessera

  static Layout FromEnvironment();

  std::string TemplateDir(const std::string& name) const;   // S/templates/<name>
  // S/templates/<name>/root: the current generation (a symlink; generations.h).
  std::string TemplateRoot(const std::string& name) const;
  std::string QubeDir(const std::string& name) const;       // S/qubes/<name>
  std::string PrivateVolume(const std::string& name) const; // S/qubes/<name>/private
  std::string StandaloneRoot(const std::string& name) const;// S/qubes/<name>/root
  std::string ScratchDir(const std::string& name) const;    // R/cells/<name>
};

// A qube's own slice of host ids: uid/gid 0..count-1 inside map to
// base..base+count-1 outside. Ranges of different qubes never overlap and never
// include host ids below kFirstHostId.
struct IdRange {
  uid_t base = 0;
  uint32_t count = 0;
};
bool operator==(const IdRange& a, const IdRange& b);
inline constexpr uid_t kFirstHostId = 0x10000000;  // far above any real user
inline constexpr uint32_t kIdsPerQube = 65536;

// The host-wide registry of id ranges (ranges.json, ranges.lock): every
// range any state directory on this host uses or retired, so two state
// directories (two daemons, test runs) never hand out the same host ids.
// Fixed on purpose: a second registry would bring the collisions back.
inline constexpr std::string_view kHostIdRegistryDir = "/var/lib/tessera-ids";

// Returns the qube's range, allocating and persisting (atomically, under the
// registry's and then the state directory's lock) a fresh one on first use:
// free in S/idmap.json and in the host registry. Stable across restarts and
// daemon crashes. A range recorded before the registry existed is registered
// now; one that another state directory holds is refused (EEXIST, naming
// both). Needs write access to kHostIdRegistryDir (root).
Result<IdRange> AllocateIdRange(const Layout& layout, const std::string& qube);
// Forgets a qube's range. If its storage (S/qubes/<name>, R/cells/<name>) is
// verified gone, the range is recycled: the next AllocateIdRange of any name
// (in any state directory) may get it. Otherwise it is retired: never handed
// out again while this state directory exists (files of those ids may
// remain). DestroyQubeStorage calls this after removing the storage.
Status ReleaseIdRange(const Layout& layout, const std::string& qube);
// The qube's recorded range without allocating one (ENOENT if it has none).
Result<IdRange> LookupIdRange(const Layout& layout, const std::string& qube);

// Qube and template names: common/names.h. Re-exported so callers that spell
// it storage::ValidateName keep compiling.
using ::tessera::ValidateName;

// How a template's root tree is made.
enum class TemplateSource { kBusybox, kDebootstrap, kDirectory, kHost, kNix };

// How a Nix template's closure reaches its qubes (nix_template.h).
enum class ClosureImage {
  kErofs,     // an erofs image of the closure per generation
  kSquashfs,  // a squashfs image (where erofs is not available)
  kNone,      // no image: the host's whole /nix/store, read-only (an explicit opt-in)
};
// A template Nix built: what the system description's `nix` table says.
struct NixSource {
  std::string root;     // a store path: a buildEnv or a NixOS system
  std::string closure;  // file listing the store paths of root's closure
  ClosureImage image = ClosureImage::kErofs;
  bool operator==(const NixSource&) const = default;
};

struct TemplateBuildOptions {
  TemplateSource source = TemplateSource::kBusybox;
  std::string directory;  // kDirectory: tree to import
  std::string suite = "bookworm";  // kDebootstrap
  std::string mirror;     // kDebootstrap: optional; default Debian's
  NixSource nix;          // kNix
  bool replace = false;   // rebuild an existing template
  // Added: kBusybox: the static busybox to use (default: $TESSERA_BUSYBOX,
  // else /bin/busybox, else /usr/bin/busybox; must be statically linked).
  std::string busybox;
  // Tests: runs once the tree is built, before it is published; an error
  // aborts the build as any failure would (atomicity tests).
  std::function<Status()> before_publish;
};

struct TemplateInfo {
  std::string name;
  std::string built_from;  // "busybox", "debootstrap", "dir:/path", "host", "nix"
  std::string created;     // RFC 3339
  // Host paths a cell must bind read-only at the same place inside (kHost:
  // {"/usr"}; the template tree then holds only the skeleton around it).
  std::vector<std::string> host_ro_binds;
  // Added beside the original fields:
  std::string source;   // detail: busybox binary, suite+mirror, directory
  int format = 1;       // template.json format version
};

// Builds S/templates/<name>/ into a temporary directory and renames it into
// place, so a failed build leaves nothing half-made.
Result<TemplateInfo> BuildTemplate(const Layout& layout, const std::string& name,
                                   const TemplateBuildOptions& options);
Result<TemplateInfo> ReadTemplateInfo(const Layout& layout, const std::string& name);
Result<std::vector<TemplateInfo>> ListTemplates(const Layout& layout);
// Renames the template aside (so it vanishes from its name atomically), then
// deletes it. Refused (EBUSY, naming them) while a qube runs on one of its
// generations (generations.h); so is a replacing BuildTemplate.
Status RemoveTemplate(const Layout& layout, const std::string& name);

// Creates the private volume directory tree (home/user, rw) if missing; never
// touches existing content.
// Created directories belong to the qube's mapped ids (see docs/STORAGE.md):
// private/, private/home and private/rw to its root (range base), home/user to
// its uid/gid 1000. This overload allocates/looks up the range itself.
Status EnsurePrivateVolume(const Layout& layout, const std::string& qube);
Status EnsurePrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids);

// Creates S/templates and S/qubes mode 0700 root, or tightens them (and any
// S/templates/<name>, S/qubes/<name> with group/other bits) if an older
// version made them wider. BuildTemplate and EnsurePrivateVolume do this
// themselves; the daemon may call it once at startup. Why: a template qube's
// root is idmapped, so files it creates as root (setuid ones too) are host
// root on disk; no host user may be able to reach them.
Status SecureStateDirs(const Layout& layout);

// Makes the persistent root of a standalone qube, S/qubes/<qube>/root/, if it
// does not exist yet: a copy of template `template_name`'s root tree, or, if
// template_name is empty, a fresh busybox tree (as `--from busybox`). Every
// file is owned on disk by ids.base + its id (shifted like a private volume,
// id_shift.h: setuid bits kept only with those shifted ids; a template file
// of an id >= 65536 is refused, EPERM), so the cell must mount it
// WITHOUT an idmap. Atomic: built in a hidden temp directory beside it and
// renamed into place, under a per-qube lock; a failure or crash leaves no
// `root`. An existing root is never touched (the second call is a no-op).
// Needs root. A template's host_ro_binds are not part of the copy: the cell
// must still bind them (see docs/STORAGE.md).
// `before_publish` (tests): runs once the tree is built, before it is renamed
// into place; an error aborts the creation as any failure would.
Status EnsureStandaloneRoot(const Layout& layout, const std::string& qube,
                            const std::string& template_name, const IdRange& ids,
                            const std::function<Status()>& before_publish = {});

// Per-run scratch directory R/cells/<name>/ (mode 0700), created fresh: a
// leftover from a crashed run is removed first.
Result<std::string> CreateScratch(const Layout& layout, const std::string& qube);

// Deletes a tree without following symlinks and without crossing into other
// mounts (a still-mounted path inside makes it fail with EBUSY rather than
// delete through the mount). Missing tree is fine.
Status RemoveTree(const std::string& path);

// Removes R/cells/<name>/ (RemoveTree).
Status RemoveScratch(const Layout& layout, const std::string& qube);

// Removes everything a qube had: S/qubes/<name>/ (private volume and
// standalone root), its scratch, and then its id range (recycled, see
// ReleaseIdRange).
Status DestroyQubeStorage(const Layout& layout, const std::string& qube);

}  // namespace tessera::storage
