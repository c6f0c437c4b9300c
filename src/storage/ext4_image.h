#pragma once
// An ext4 file system in a sparse image file, mounted through a loop device:
// what gives a private volume its size limit (docs/STORAGE.md "Private
// volume size"). Mechanics only; which image belongs where is
// private_volume.cc's business.
//
//   TRY(MakeExt4Image(tmp, 2ull << 30, {.root_uid = base, .root_gid = base}));
//   TRY(MountExt4Image(image, mount_point));    // loop device, autoclear
//   TRY(GrowMountedExt4(image, mount_point, 4ull << 30));
//   TRY(UnmountExt4Image(mount_point));          // the loop device goes with it
//
// Needs root (loop devices, mount).

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::storage {

// ext4 needs room for its journal and metadata; smaller images are refused.
inline constexpr uint64_t kMinExt4ImageBytes = 32ull << 20;

struct Ext4ImageOptions {
  uid_t root_uid = 0;  // owner of the file system's root directory
  gid_t root_gid = 0;
  // A directory whose tree the new file system starts with (mkfs.ext4 -d:
  // owners, modes, hard links, xattrs and special files kept). "" = empty.
  std::string populate_from;
};

// Creates `path` (O_EXCL; it must not exist) as a sparse file of `bytes`
// (a multiple of 4096, at least kMinExt4ImageBytes) holding a fresh ext4
// (mkfs.ext4, no reserved blocks, lazy init). On failure the file is removed.
Status MakeExt4Image(const std::string& path, uint64_t bytes, const Ext4ImageOptions& options);

enum class Durability {
  kDurable,    // write barriers: what was synced survives a host crash
  kThrowaway,  // nobarrier,noinit_itable: no cache flushes and no background
               // zeroing of inode tables (a disposable's volume, which no crash
               // may bring back); unmounting it is about twice as fast
};

// A loop device this process attached; autoclear: it detaches once no fd
// and no mount holds it.
struct LoopDevice {
  UniqueFd fd;
  std::string path;  // "/dev/loop3"
};
// Attaches the open image (`image` names it) to a free loop device
// (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, retried when another user takes the
// device in between) with LO_FLAGS_AUTOCLEAR | `flags` (LO_FLAGS_READ_ONLY
// opens the device read-only).
Result<LoopDevice> AttachLoopDevice(int image_fd, const std::string& image, uint32_t flags);

// Attaches `image` to a free loop device (LOOP_CTL_GET_FREE +
// LOOP_CONFIGURE, autoclear, direct I/O) and mounts it at `mount_point`
// (nosuid,nodev,errors=remount-ro). Refused (EBUSY, naming the device) when
// the image is attached to a loop device already: a second mount of one
// ext4 would corrupt it.
Status MountExt4Image(const std::string& image, const std::string& mount_point,
                      Durability durability = Durability::kDurable);

// Unmounts `mount_point` (the autoclear loop device detaches with it).
Status UnmountExt4Image(const std::string& mount_point);

// True when `path` is the root of a mount (its mount id differs from its
// parent's). A missing path is false.
Result<bool> IsMountRoot(const std::string& path);

// The loop device `image` is attached to ("/dev/loop3"), or nullopt.
Result<std::optional<std::string>> LoopDeviceOf(const std::string& image);

// Grows the image mounted at `mount_point` to `bytes` while mounted: the
// file is extended, the loop device told (LOOP_SET_CAPACITY) and ext4 grown
// online (EXT4_IOC_RESIZE_FS). Smaller than the current size is EINVAL.
// The kernel grows a mounted ext4 only for a caller with CAP_SYS_RESOURCE:
// without it this fails with EPERM after the file was extended, and the
// file system fills the file at the next GrowExt4Offline.
Status GrowMountedExt4(const std::string& image, const std::string& mount_point, uint64_t bytes);

// Grows the unmounted image's file system to fill the file, after extending
// the file to `bytes` if it is smaller (e2fsck -f -p, then resize2fs).
Status GrowExt4Offline(const std::string& image, uint64_t bytes);

// Size in bytes of the image file (its apparent size, the volume's size).
Result<uint64_t> Ext4ImageSize(const std::string& image);

// Size in bytes of the file system in the image, from its superblock (less
// than the file after a growth not finished yet). EINVAL naming the image
// when it holds no ext4.
Result<uint64_t> Ext4FsBytes(const std::string& image);

// Copies the image `from` to `to` (created O_EXCL, mode 0600), holes kept
// (SEEK_DATA/SEEK_HOLE). When `frozen_mount` is set, that mount of `from`
// is frozen (FIFREEZE) for the copy and thawed after: a crash-consistent
// snapshot of a file system in use. On failure `to` is removed. Not synced:
// the copies are disposables' volumes, which no crash may bring back.
Status CopyExt4Image(const std::string& from, const std::string& to,
                     const std::optional<std::string>& frozen_mount);

}  // namespace tessera::storage
