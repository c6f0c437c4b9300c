// PrepareQubeStorage / ListQubeStorage: see qube_storage.h.

#include "storage/qube_storage.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "common/log.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/generations.h"
#include "storage/id_shift.h"
#include "storage/internal.h"
#include "storage/nix_template.h"
#include "storage/private_volume.h"
#include "storage/volume_ops.h"

namespace tessera::storage {
namespace {

Status CheckRequest(const QubeStorageRequest& r) {
  TRY(ValidateName(r.qube));
  if (!r.template_name.empty()) TRY(ValidateName(r.template_name, "template"));
  if (!r.snapshot_from.empty()) TRY(ValidateName(r.snapshot_from, "disposable template"));
  if (r.root != RootSource::kStandalone && r.template_name.empty()) {
    return Err(Error("qube " + r.qube + ": no template named for its root", EINVAL));
  }
  if (r.disposable && r.root != RootSource::kTemplateShared) {
    return Err(Error("qube " + r.qube + ": a disposable's root is its template's, shared", EINVAL));
  }
  if (!r.disposable && !r.snapshot_from.empty()) {
    return Err(Error("qube " + r.qube + ": only a disposable starts from a snapshot", EINVAL));
  }
  return Ok();
}

// The disposable's private volume as a copy of the disposable template's,
// shifted into the disposable's range; made once (internal::MakeDirOnce).
Status SnapshotPrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids,
                             const std::string& dvm) {
  std::string source = layout.PrivateVolume(dvm);
  struct stat st {};
  if (::lstat(source.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();  // nothing to carry over: an empty volume
    return Err(Error::FromErrno("stat " + source));
  }
  IdRange dvm_ids = TRY_CTX(LookupIdRange(layout, dvm),
                            "snapshot the private volume of " + dvm + " for " + qube);
  std::string qube_dir = layout.QubeDir(qube);
  UniqueFd qubes_fd = TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/qubes"));
  TRY(internal::EnsureDirAt(qubes_fd.get(), qube, 0700, 0, 0, qube_dir));
  UniqueFd qube_fd = TRY(internal::OpenDirAt(qubes_fd.get(), qube, qube_dir));
  IdShift shift{.from_base = dvm_ids.base, .to_base = ids.base};
  auto fill = [&](int tmp_fd, const std::string& tmp) -> Status {
    TRY_CTX(internal::CopyTreeShifted(source, tmp_fd, tmp, shift),
            "snapshot the private volume of " + dvm + " for " + qube);
    return Ok();
  };
  if (TRY(internal::MakeDirOnce(qube_fd.get(), qube_dir, "private", fill))) {
    Log(LogLevel::kDebug, "private volume snapshot made", {{"qube", qube}, {"from", dvm}});
  }
  return Ok();
}

}  // namespace

Result<PreparedStorage> PrepareQubeStorage(const Layout& layout, const QubeStorageRequest& r) {
  TRY(CheckRequest(r));
  PreparedStorage out;
  // The template first: a missing one fails before anything is allocated.
  std::optional<TemplateInfo> info;
  if (r.root != RootSource::kStandalone) {
    info = TRY_CTX(ReadTemplateInfo(layout, r.template_name), "prepare storage of qube " + r.qube);
  }
  out.ids = TRY_CTX(AllocateIdRange(layout, r.qube), "prepare storage of qube " + r.qube);
  // An adoption a crash interrupted is finished before anything looks at
  // the volume (its files may still carry the orphan's ids).
  TRY_CTX(FinishAdoption(layout, r.qube, out.ids), "prepare storage of qube " + r.qube);

  if (r.root == RootSource::kStandalone) {
    // Reads the template (ENOENT naming it) only when the root is still to be made.
    TRY(EnsureStandaloneRoot(layout, r.qube, r.template_name, out.ids));
    out.root_path = layout.StandaloneRoot(r.qube);
    if (!r.template_name.empty()) {
      // The root is the qube's own now; a template removed since takes its
      // host binds along, which are the template's to give.
      auto standalone_info = ReadTemplateInfo(layout, r.template_name);
      if (standalone_info) {
        info = std::move(*standalone_info);
      } else if (standalone_info.error().errno_value() != ENOENT) {
        return Err(std::move(standalone_info).error());
      }
    }
  }
  if (info) out.host_ro_binds = info->host_ro_binds;

  if (!r.snapshot_from.empty()) {
    bool imaged = false;
    if (r.private_size != 0) {
      IdRange dvm_ids =
          TRY_CTX(AllocateIdRange(layout, r.snapshot_from),
                  "snapshot the private volume of " + r.snapshot_from + " for " + r.qube);
      imaged = TRY(
          SnapshotPrivateImage(layout, r.qube, out.ids, r.snapshot_from, dvm_ids, r.private_size));
    }
    if (!imaged) TRY(SnapshotPrivateVolume(layout, r.qube, out.ids, r.snapshot_from));
  }
  // An opened volume is closed again if a later step fails: the caller
  // starts nothing then, and nothing else would unmount it.
  bool opened = false;
  auto close = ScopeGuard([&] {
    if (opened) (void)ClosePrivateVolume(layout, r.qube);
  });
  if (r.private_size != 0) {
    TRY_CTX(OpenPrivateVolume(layout, r.qube, out.ids, r.private_size),
            "prepare storage of qube " + r.qube);
    opened = true;
  }
  TRY(EnsurePrivateVolume(layout, r.qube, out.ids));
  TRY(ShiftPrivateVolume(layout, r.qube, out.ids));
  out.private_volume = layout.PrivateVolume(r.qube);
  if (r.root != RootSource::kStandalone) {
    // Last: a failure above leaves no record of a generation in use.
    bool own = r.root == RootSource::kTemplateOwn;
    Generation g =
        TRY_CTX(AcquireGeneration(layout, r.template_name, r.qube,
                                  own ? GenerationRole::kTemplateQube : GenerationRole::kApp),
                "prepare storage of qube " + r.qube);
    out.root_path = g.path;
    out.generation = g.number;
    if (own) out.changes_path = TemplateChangesDir(layout, r.template_name);
    // A Nix template's closure: its image (or the whole store, read-only),
    // kept from Nix's garbage collector while the qube runs on it.
    auto release = ScopeGuard([&] { (void)ReleaseGenerations(layout, r.qube); });
    std::optional<NixSource> nix =
        TRY_CTX(ReadNixSource(g.path), "prepare storage of qube " + r.qube);
    if (nix) {
      if (nix->image == ClosureImage::kNone) {
        out.host_ro_binds.push_back(std::string(kNixStoreDir));
      } else {
        out.closure_image = ClosureImagePath(g.path, nix->image);
        out.closure_image_kind = nix->image;
      }
      TRY_CTX(HoldNixRoot(layout, r.qube, nix->root), "prepare storage of qube " + r.qube);
    }
    release.Dismiss();
  }
  close.Dismiss();
  return out;
}

Result<std::vector<std::string>> ListQubeStorage(const Layout& layout) {
  std::string dir = layout.state_dir + "/qubes";
  auto dir_fd = internal::OpenDir(dir);
  if (!dir_fd) {
    if (dir_fd.error().errno_value() == ENOENT) return std::vector<std::string>{};
    return Err(std::move(dir_fd).error());
  }
  std::vector<std::string> names;
  TRY(internal::ForEachEntry(dir_fd->get(), dir, [&](const std::string& name) -> Status {
    if (!IsValidName(name)) return Ok();
    struct stat st {};
    if (::fstatat(dir_fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Ok();  // removed meanwhile
      return Err(Error::FromErrno("stat " + dir + "/" + name));
    }
    if (S_ISDIR(st.st_mode)) names.push_back(name);
    return Ok();
  }));
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace tessera::storage
