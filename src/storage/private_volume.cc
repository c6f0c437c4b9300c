// Private volumes as sized ext4 images: see private_volume.h.
//
// On disk, S/qubes/<q>/:
//   private.img             the volume (ext4, sparse), owned by host root, 0600
//   private/                its mount point while in use (an empty directory otherwise)
//   .volume.lock            flock held for every change below
//   .private.img.tmp-*      an image being made (removed when found)
//   .private.migrating      a directory volume being moved into a new image
//
// Migration order: private/ is renamed to .private.migrating, the image is
// made from it in a temporary and renamed to private.img, and only then is
// .private.migrating removed. Found at the next open: with private.img it is
// a finished migration's leftover (removed); without, the migration is
// started again from it.

#include "storage/private_volume.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "common/log.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "storage/ext4_image.h"
#include "storage/id_shift.h"
#include "storage/internal.h"
#include "storage/volume_ops.h"

namespace tessera::storage {
namespace {

constexpr const char* kImage = "private.img";
constexpr const char* kMountPoint = "private";
constexpr const char* kMigrating = ".private.migrating";
constexpr const char* kImageTmp = ".private.img.tmp-";

struct QubeVolume {
  std::string dir;    // S/qubes/<q>
  std::string image;  // dir/private.img
  std::string mount;  // dir/private
  UniqueFd dir_fd;
  UniqueFd lock;
};

// Opens S/qubes/<q> (created when `create`) and takes its volume lock.
// nullopt when it does not exist and !create.
Result<std::optional<QubeVolume>> LockVolume(const Layout& layout, const std::string& qube,
                                             bool create) {
  TRY(ValidateName(qube));
  QubeVolume v;
  v.dir = layout.QubeDir(qube);
  v.image = v.dir + "/" + kImage;
  v.mount = v.dir + "/" + kMountPoint;
  if (create) {
    UniqueFd qubes_fd = TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/qubes"));
    TRY(internal::EnsureDirAt(qubes_fd.get(), qube, 0700, 0, 0, v.dir));
  }
  auto fd = internal::OpenDir(v.dir, O_NOFOLLOW);
  if (!fd) {
    if (fd.error().errno_value() == ENOENT && !create) return std::optional<QubeVolume>();
    return Err(std::move(fd).error());
  }
  v.dir_fd = std::move(*fd);
  v.lock = TRY(internal::LockFileAt(v.dir_fd.get(), ".volume.lock", v.dir + "/.volume.lock"));
  return std::optional<QubeVolume>(std::move(v));
}

bool ExistsAt(int dir_fd, const char* name) {
  struct stat st {};
  return ::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// True when the directory `name` below dir_fd has entries (missing: false).
Result<bool> HasEntries(int dir_fd, const std::string& name, const std::string& path) {
  if (!ExistsAt(dir_fd, name.c_str())) return false;
  UniqueFd fd = TRY(internal::OpenDirAt(dir_fd, name, path));
  bool any = false;
  TRY(internal::ForEachEntry(fd.get(), path, [&](const std::string&) {
    any = true;
    return Ok();
  }));
  return any;
}

Status MakeMountPoint(const QubeVolume& v) {
  TRY(internal::EnsureDirAt(v.dir_fd.get(), kMountPoint, 0700, 0, 0, v.mount));
  return Ok();
}

// The image mounted at private/ unless it is already; refuses files in
// the mount point (see OpenPrivateVolume).
Status MountLocked(const QubeVolume& v) {
  TRY(MakeMountPoint(v));
  if (TRY(IsMountRoot(v.mount))) {
    if (!TRY(LoopDeviceOf(v.image))) {
      return Err(Error(v.mount + ": something else is mounted there, not " + v.image, EBUSY));
    }
    return Ok();
  }
  if (TRY(HasEntries(v.dir_fd.get(), kMountPoint, v.mount))) {
    return Err(Error(v.mount + " holds files although the volume is " + v.image +
                         " (written while it was not mounted?): move them out, then start again",
                     EEXIST));
  }
  return MountExt4Image(v.image, v.mount);
}

Status UnmountLocked(const QubeVolume& v) {
  if (!TRY(IsMountRoot(v.mount))) return Ok();
  return UnmountExt4Image(v.mount);
}

// lost+found, made by mkfs as host root, joins the qube's range (its root)
// so id shifts of copies accept it.
Status OwnLostAndFound(int root_fd, const std::string& mount, uid_t base) {
  struct stat st {};
  if (::fstatat(root_fd, "lost+found", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
      st.st_uid < kFirstHostId) {
    TRY(Syscall("chown " + mount + "/lost+found", [&] {
      return ::fchownat(root_fd, "lost+found", base, base, AT_SYMLINK_NOFOLLOW);
    }));
  }
  return Ok();
}

// The mounted root belongs to the qube's root and is 0700, as a directory
// volume's private/ is.
Status OwnMountedRoot(const QubeVolume& v, const IdRange& ids) {
  UniqueFd root = TRY(internal::OpenDirAt(v.dir_fd.get(), kMountPoint, v.mount));
  TRY(Syscall("chown " + v.mount, [&] { return ::fchown(root.get(), ids.base, ids.base); }));
  TRY(Syscall("chmod " + v.mount, [&] { return ::fchmod(root.get(), 0700); }));
  return OwnLostAndFound(root.get(), v.mount, ids.base);
}

// A fresh hidden temporary name for an image below v.dir.
std::string TempImagePath(const QubeVolume& v) {
  std::string path = v.dir + "/" + kImageTmp + "XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd >= 0) {
    ::close(fd);
    ::unlink(path.c_str());  // MakeExt4Image creates it O_EXCL
  }
  return path;
}

// `durable`: the directory is synced, so the rename survives a host crash
// (not needed for a disposable's volume, which recovery destroys anyway).
Status RenameInto(const QubeVolume& v, const std::string& tmp_path, const char* name,
                  bool durable = true) {
  std::string tmp = tmp_path.substr(v.dir.size() + 1);
  TRY(Syscall("rename " + tmp_path + " to " + v.dir + "/" + name, [&] {
    return ::renameat2(v.dir_fd.get(), tmp.c_str(), v.dir_fd.get(), name, RENAME_NOREPLACE);
  }));
  if (durable) ::fsync(v.dir_fd.get());
  return Ok();
}

// Makes private.img (see the file comment for the migration order).
Status CreateImageLocked(const QubeVolume& v, const IdRange& ids, uint64_t bytes) {
  std::string migrating = v.dir + "/" + kMigrating;
  bool from_dir = ExistsAt(v.dir_fd.get(), kMigrating);
  if (!from_dir && !TRY(IsMountRoot(v.mount)) &&
      TRY(HasEntries(v.dir_fd.get(), kMountPoint, v.mount))) {
    TRY(Syscall("rename " + v.mount + " to " + migrating, [&] {
      return ::renameat2(v.dir_fd.get(), kMountPoint, v.dir_fd.get(), kMigrating, RENAME_NOREPLACE);
    }));
    ::fsync(v.dir_fd.get());
    from_dir = true;
  }
  Ext4ImageOptions options{.root_uid = ids.base, .root_gid = ids.base, .populate_from = ""};
  uint64_t size = bytes;
  if (from_dir) {
    options.populate_from = migrating;
    // Room for what is there: a volume that already holds more than
    // private_size is migrated whole, never cut.
    uint64_t used = TRY(DiskUsage(migrating));
    uint64_t needed =
        (used + used / 4 + kMinExt4ImageBytes + (1u << 20) - 1) & ~uint64_t{(1u << 20) - 1};
    if (needed > size) {
      Log(LogLevel::kWarn, "private volume larger than private_size: migrated at its size",
          {{"dir", migrating}, {"size", FormatBytes(needed)}});
      size = needed;
    }
  }
  std::string tmp = TempImagePath(v);
  TRY_CTX(MakeExt4Image(tmp, size, options), "make the private volume " + v.image);
  auto drop = ScopeGuard([&] { ::unlink(tmp.c_str()); });
  TRY(RenameInto(v, tmp, kImage));
  drop.Dismiss();
  if (from_dir) {
    TRY_CTX(RemoveTree(migrating), "remove the migrated directory volume");
    Log(LogLevel::kInfo, "private volume migrated to an image",
        {{"image", v.image}, {"size", FormatBytes(size)}});
  }
  return Ok();
}

// Grows a mounted volume. Without CAP_SYS_RESOURCE the kernel refuses
// (EPERM): the file is extended then, and the file system fills it before
// the next mount. True when the running file system has the new size.
Result<bool> GrowOnline(const QubeVolume& v, uint64_t bytes) {
  Status grown = GrowMountedExt4(v.image, v.mount, bytes);
  if (grown) return true;
  if (grown.error().errno_value() != EPERM) return Err(std::move(grown).error());
  Log(LogLevel::kWarn,
      "private volume grows at the next start (growing a mounted ext4 needs CAP_SYS_RESOURCE)",
      {{"image", v.image}, {"to", FormatBytes(bytes)}});
  return false;
}

Status CheckSize(uint64_t bytes, const std::string& qube) {
  if (bytes < kMinExt4ImageBytes || bytes % (1u << 20) != 0) {
    return Err(Error("qube " + qube + ": a private volume of " + FormatBytes(bytes) +
                         ": at least 32 MiB in whole MiB",
                     EINVAL));
  }
  return Ok();
}

}  // namespace

bool HasPrivateImage(const Layout& layout, const std::string& qube) {
  struct stat st {};
  return ::lstat((layout.QubeDir(qube) + "/" + kImage).c_str(), &st) == 0;
}

Status OpenPrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids,
                         uint64_t bytes) {
  TRY(CheckSize(bytes, qube));
  std::string what = "open the private volume of qube " + qube;
  QubeVolume v = std::move(*TRY_CTX(LockVolume(layout, qube, true), what));
  TRY_CTX(internal::RemoveLeftovers(v.dir, {kImageTmp}), what);
  bool has_image = ExistsAt(v.dir_fd.get(), kImage);
  if (has_image && ExistsAt(v.dir_fd.get(), kMigrating)) {
    TRY_CTX(RemoveTree(v.dir + "/" + kMigrating), what);  // a finished migration's leftover
  }
  if (!has_image) TRY_CTX(CreateImageLocked(v, ids, bytes), what);
  uint64_t size = TRY(Ext4ImageSize(v.image));
  uint64_t target = std::max(size, bytes);
  if (!TRY(IsMountRoot(v.mount))) {
    // Grown before it is mounted: to private_size, or to fill a file that
    // a resize of the running qube extended.
    uint64_t fs = TRY_CTX(Ext4FsBytes(v.image), what);
    if (fs < target) {
      TRY_CTX(GrowExt4Offline(v.image, target), what);
      Log(LogLevel::kInfo, "private volume grown",
          {{"qube", qube}, {"from", FormatBytes(fs)}, {"to", FormatBytes(target)}});
    }
  } else if (size < bytes) {
    TRY_CTX(GrowOnline(v, bytes), what);
  }
  TRY_CTX(MountLocked(v), what);
  // Not left mounted if the open fails after all: the caller starts nothing.
  if (auto owned = OwnMountedRoot(v, ids); !owned) {
    (void)UnmountLocked(v);
    return Err(std::move(owned).error().Wrap(what));
  }
  return Ok();
}

Status ClosePrivateVolume(const Layout& layout, const std::string& qube) {
  auto v = TRY(LockVolume(layout, qube, false));
  if (!v) return Ok();
  TRY_CTX(UnmountLocked(*v), "close the private volume of qube " + qube);
  return Ok();
}

Status WithPrivateVolume(const Layout& layout, const std::string& qube,
                         const std::function<Status()>& fn) {
  auto v = TRY(LockVolume(layout, qube, false));
  if (!v || !ExistsAt(v->dir_fd.get(), kImage) || TRY(IsMountRoot(v->mount))) return fn();
  TRY_CTX(MountLocked(*v), "mount the private volume of qube " + qube);
  Status result = fn();
  Status unmounted = UnmountLocked(*v);
  if (!result) return result;
  return unmounted;
}

Result<std::optional<uint64_t>> PrivateVolumeSize(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  if (!HasPrivateImage(layout, qube)) return std::optional<uint64_t>();
  return std::optional<uint64_t>(TRY(Ext4ImageSize(layout.QubeDir(qube) + "/" + kImage)));
}

Result<VolumeResize> ResizePrivateVolume(const Layout& layout, const std::string& qube,
                                         uint64_t bytes) {
  std::string what = "resize the private volume of qube " + qube;
  TRY_CTX(CheckSize(bytes, qube), what);
  auto v = TRY(LockVolume(layout, qube, false));
  if (!v || !ExistsAt(v->dir_fd.get(), kImage)) {
    return Err(Error(what + ": it has no volume image yet (it gets one of its private_size "
                            "at its next start)",
                     ENOENT));
  }
  uint64_t size = TRY(Ext4ImageSize(v->image));
  if (bytes < size) {
    return Err(Error(what + ": " + FormatBytes(bytes) + " is smaller than its " +
                         FormatBytes(size) + " (volumes grow, never shrink)",
                     EINVAL));
  }
  VolumeResize out{.size = bytes, .pending = false};
  if (TRY(IsMountRoot(v->mount))) {
    if (bytes == size) return out;
    out.pending = !TRY_CTX(GrowOnline(*v, bytes), what);
  } else {
    if (TRY_CTX(Ext4FsBytes(v->image), what) >= bytes) return out;
    TRY_CTX(GrowExt4Offline(v->image, bytes), what);
  }
  Log(LogLevel::kInfo, "private volume grown",
      {{"qube", qube},
       {"from", FormatBytes(size)},
       {"to", FormatBytes(bytes)},
       {"pending", out.pending ? "until the next start" : "no"}});
  return out;
}

Result<bool> SnapshotPrivateImage(const Layout& layout, const std::string& qube, const IdRange& ids,
                                  const std::string& dvm, const IdRange& dvm_ids, uint64_t bytes) {
  std::string what = "snapshot the private volume of " + dvm + " for " + qube;
  TRY(CheckSize(bytes, qube));
  if (!HasPrivateImage(layout, dvm)) {
    // A template without any volume yet gets its image now (not mounted),
    // once, instead of every disposable making one. One with a directory
    // volume keeps it until its own next start migrates it: it may be
    // running on it.
    auto source = TRY_CTX(LockVolume(layout, dvm, true), what);
    if (!ExistsAt(source->dir_fd.get(), kImage)) {
      if (TRY(HasEntries(source->dir_fd.get(), kMountPoint, source->mount)) ||
          ExistsAt(source->dir_fd.get(), kMigrating)) {
        return false;
      }
      TRY_CTX(CreateImageLocked(*source, dvm_ids, bytes), what);
    }
  }
  QubeVolume v = std::move(*TRY_CTX(LockVolume(layout, qube, true), what));
  if (ExistsAt(v.dir_fd.get(), kImage) || TRY(HasEntries(v.dir_fd.get(), kMountPoint, v.mount))) {
    return false;
  }
  TRY_CTX(internal::RemoveLeftovers(v.dir, {kImageTmp}), what);
  std::string tmp = TempImagePath(v);
  {
    // The template's lock after the disposable's: nothing takes them the
    // other way round.
    auto source = TRY_CTX(LockVolume(layout, dvm, false), what);
    if (!source) return false;
    std::optional<std::string> frozen;
    if (TRY(IsMountRoot(source->mount))) frozen = source->mount;
    TRY_CTX(CopyExt4Image(source->image, tmp, frozen), what);
  }
  auto drop = ScopeGuard([&] { ::unlink(tmp.c_str()); });
  // A disposable with a larger private_size than its template's volume
  // gets it before the mount (offline growth needs no capability).
  if (TRY(Ext4ImageSize(tmp)) < bytes) TRY_CTX(GrowExt4Offline(tmp, bytes), what);
  TRY(MakeMountPoint(v));
  TRY_CTX(MountExt4Image(tmp, v.mount, Durability::kThrowaway), what);
  auto unmount = ScopeGuard([&] { (void)UnmountExt4Image(v.mount); });
  {
    UniqueFd root = TRY(internal::OpenDirAt(v.dir_fd.get(), kMountPoint, v.mount));
    TRY_CTX(OwnLostAndFound(root.get(), v.mount, dvm_ids.base), what);
    TRY_CTX(ShiftTreeOwnership(root.get(), v.mount,
                               IdShift{.from_base = dvm_ids.base, .to_base = ids.base}),
            what);
  }
  // Renamed while mounted: the loop device holds the file, not its name.
  TRY(RenameInto(v, tmp, kImage, /*durable=*/false));
  drop.Dismiss();
  unmount.Dismiss();
  return true;
}

}  // namespace tessera::storage
