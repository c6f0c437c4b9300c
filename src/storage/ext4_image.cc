// ext4 images on loop devices: see ext4_image.h.

#include "storage/ext4_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/fs.h"
#include "common/log.h"
#include "common/scope_guard.h"
#include "common/spawn.h"
#include "common/syscall.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "storage/internal.h"

#ifndef EXT4_IOC_RESIZE_FS
#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)
#endif

namespace tessera::storage {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr int kLoopAttempts = 16;  // LOOP_CTL_GET_FREE races with other users
// After the last unmount the kernel detaches an autoclear loop device a
// moment later (a workqueue): an image still bound is waited for this long.
constexpr int kDetachWaits = 50;
constexpr useconds_t kDetachWaitUs = 20000;

Result<UniqueFd> OpenPath(const std::string& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC));
  if (!fd) return Err(Error::FromErrno("open " + path));
  return fd;
}

// The loop devices the kernel has bound to a file, by name ("loop3").
Result<std::vector<std::string>> BoundLoopDevices() {
  std::vector<std::string> names;
  DIR* dir = ::opendir("/sys/block");
  if (dir == nullptr) return Err(Error::FromErrno("open /sys/block"));
  auto close_dir = ScopeGuard([&] { ::closedir(dir); });
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.rfind("loop", 0) != 0) continue;
    struct stat st {};
    // loop/ exists only while a file is bound.
    if (::stat(("/sys/block/" + name + "/loop").c_str(), &st) == 0) names.push_back(name);
  }
  return names;
}

Result<uint64_t> BlockSize(int fd, const std::string& what) {
  struct statfs sf {};
  if (::fstatfs(fd, &sf) != 0) return Err(Error::FromErrno("statfs " + what));
  return static_cast<uint64_t>(sf.f_bsize);
}

// /sbin/NAME, else /usr/sbin/NAME (merged-/usr systems have both).
std::string SbinTool(const std::string& name) {
  std::string sbin = "/sbin/" + name;
  return ::access(sbin.c_str(), X_OK) == 0 ? sbin : "/usr/sbin/" + name;
}

}  // namespace

Status MakeExt4Image(const std::string& path, uint64_t bytes, const Ext4ImageOptions& options) {
  if (bytes < kMinExt4ImageBytes || bytes % kBlock != 0) {
    return Err(Error(path + ": an image of " + std::to_string(bytes) +
                         " bytes: at least 32 MiB in whole 4 KiB blocks",
                     EINVAL));
  }
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Err(Error::FromErrno("create " + path));
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
      int saved = errno;
      ::unlink(path.c_str());
      return Err(Error("size " + path, saved));
    }
  }
  auto remove = ScopeGuard([&] { ::unlink(path.c_str()); });
  std::vector<std::string> argv = {"/sbin/mkfs.ext4",
                                   "-q",
                                   "-F",
                                   "-b",
                                   "4096",
                                   "-m",
                                   "0",
                                   "-L",
                                   "private",
                                   "-E",
                                   "root_owner=" + std::to_string(options.root_uid) + ":" +
                                       std::to_string(options.root_gid) +
                                       ",lazy_itable_init=1,lazy_journal_init=1"};
  if (!options.populate_from.empty()) {
    argv.push_back("-d");
    argv.push_back(options.populate_from);
  }
  argv.push_back(path);
  argv[0] = SbinTool("mkfs.ext4");
  TRY_CTX(internal::RunCommand(argv, nullptr), "make the file system of " + path);
  {
    UniqueFd fd = TRY(OpenPath(path, O_RDONLY));
    if (::fsync(fd.get()) != 0) return Err(Error::FromErrno("sync " + path));
  }
  remove.Dismiss();
  return Ok();
}

Result<std::optional<std::string>> LoopDeviceOf(const std::string& image) {
  struct stat img {};
  if (::stat(image.c_str(), &img) != 0) return Err(Error::FromErrno("stat " + image));
  for (const std::string& name : TRY(BoundLoopDevices())) {
    std::string dev = "/dev/" + name;
    UniqueFd fd(::open(dev.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;  // gone meanwhile, or no node: not ours to judge
    loop_info64 info{};
    if (::ioctl(fd.get(), LOOP_GET_STATUS64, &info) != 0) continue;
    if (info.lo_device == img.st_dev && info.lo_inode == img.st_ino) return dev;
  }
  return std::optional<std::string>{};
}

Result<LoopDevice> AttachLoopDevice(int image_fd, const std::string& image, uint32_t flags) {
  UniqueFd control = TRY(OpenPath("/dev/loop-control", O_RDWR));
  for (int attempt = 0; attempt < kLoopAttempts; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return Err(Error::FromErrno("find a free loop device"));
    std::string dev = "/dev/loop" + std::to_string(n);
    bool read_only = (flags & LO_FLAGS_READ_ONLY) != 0;
    UniqueFd loop(::open(dev.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (!loop) return Err(Error::FromErrno("open " + dev));
    loop_config config{};
    config.fd = static_cast<uint32_t>(image_fd);
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | flags;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), image.c_str(),
                 LO_NAME_SIZE - 1);
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) != 0) {
      if (errno == EBUSY) continue;  // taken between GET_FREE and CONFIGURE
      return Err(Error::FromErrno("attach " + image + " to " + dev));
    }
    return LoopDevice{std::move(loop), dev};
  }
  return Err(Error("attach " + image + ": no free loop device after retries", EBUSY));
}

Status MountExt4Image(const std::string& image, const std::string& mount_point,
                      Durability durability) {
  std::optional<std::string> bound = TRY(LoopDeviceOf(image));
  for (int wait = 0; bound && wait < kDetachWaits; ++wait) {
    ::usleep(kDetachWaitUs);
    bound = TRY(LoopDeviceOf(image));
  }
  if (bound) {
    return Err(Error(image + ": already attached to " + *bound +
                         " (still mounted somewhere; a second mount would corrupt it)",
                     EBUSY));
  }
  UniqueFd img = TRY(OpenPath(image, O_RDWR | O_NOFOLLOW));
  LoopDevice loop = TRY(AttachLoopDevice(img.get(), image, LO_FLAGS_DIRECT_IO));
  // The loop fd stays open until the mount holds the device: closing it
  // first would let autoclear detach it at once.
  const char* options = durability == Durability::kThrowaway
                            ? "errors=remount-ro,nobarrier,noinit_itable"
                            : "errors=remount-ro";
  if (::mount(loop.path.c_str(), mount_point.c_str(), "ext4", MS_NOSUID | MS_NODEV, options) != 0) {
    int saved = errno;
    ::ioctl(loop.fd.get(), LOOP_CLR_FD, 0);
    return Err(Error("mount " + image + " (" + loop.path + ") at " + mount_point, saved));
  }
  Log(LogLevel::kDebug, "volume image mounted",
      {{"image", image}, {"device", loop.path}, {"at", mount_point}});
  return Ok();
}

Status UnmountExt4Image(const std::string& mount_point) {
  if (::umount2(mount_point.c_str(), UMOUNT_NOFOLLOW) != 0) {
    return Err(Error::FromErrno("unmount " + mount_point));
  }
  return Ok();
}

Result<bool> IsMountRoot(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return false;
    return Err(Error::FromErrno("open " + path));
  }
  internal::FileId self = TRY(internal::StatFd(fd.get(), path));
  internal::FileId parent = TRY(internal::StatAt(fd.get(), "..", path + "/.."));
  return internal::OnDifferentMount(self, parent);
}

Result<uint64_t> Ext4ImageSize(const std::string& image) {
  struct stat st {};
  if (::stat(image.c_str(), &st) != 0) return Err(Error::FromErrno("stat " + image));
  return static_cast<uint64_t>(st.st_size);
}

Status GrowMountedExt4(const std::string& image, const std::string& mount_point, uint64_t bytes) {
  uint64_t current = TRY(Ext4ImageSize(image));
  if (bytes < current || bytes % kBlock != 0) {
    return Err(Error(image + ": cannot grow from " + std::to_string(current) + " to " +
                         std::to_string(bytes) + " bytes",
                     EINVAL));
  }
  std::optional<std::string> dev = TRY(LoopDeviceOf(image));
  if (!dev) return Err(Error(image + ": not attached to a loop device", ENXIO));
  UniqueFd root = TRY(OpenPath(mount_point, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  uint64_t block = TRY(BlockSize(root.get(), mount_point));
  {
    UniqueFd img = TRY(OpenPath(image, O_RDWR | O_NOFOLLOW));
    if (::ftruncate(img.get(), static_cast<off_t>(bytes)) != 0) {
      return Err(Error::FromErrno("extend " + image));
    }
    if (::fsync(img.get()) != 0) return Err(Error::FromErrno("sync " + image));
  }
  UniqueFd loop = TRY(OpenPath(*dev, O_RDONLY));
  if (::ioctl(loop.get(), LOOP_SET_CAPACITY, 0) != 0) {
    return Err(Error::FromErrno("tell " + *dev + " its new size"));
  }
  uint64_t blocks = bytes / block;
  if (::ioctl(root.get(), EXT4_IOC_RESIZE_FS, &blocks) != 0) {
    return Err(Error::FromErrno("grow the file system at " + mount_point));
  }
  return Ok();
}

Status GrowExt4Offline(const std::string& image, uint64_t bytes) {
  uint64_t size = TRY(Ext4ImageSize(image));
  if (bytes % kBlock != 0) return Err(Error(image + ": a size in whole 4 KiB blocks", EINVAL));
  if (bytes > size) {
    UniqueFd img = TRY(OpenPath(image, O_RDWR | O_NOFOLLOW));
    if (::ftruncate(img.get(), static_cast<off_t>(bytes)) != 0) {
      return Err(Error::FromErrno("extend " + image));
    }
    if (::fsync(img.get()) != 0) return Err(Error::FromErrno("sync " + image));
  }
  // resize2fs wants a file system checked since its last mount; -p repairs
  // only what is safe without asking (exit 1: something was fixed).
  ProcessOptions check;
  check.argv = {SbinTool("e2fsck"), "-f", "-p", image};
  check.out = Output::kCapture;
  check.err = Output::kCapture;
  ProcessResult checked = TRY(RunProcess(check));
  if (checked.term_signal != 0 || (checked.exit_code != 0 && checked.exit_code != 1)) {
    return Err(
        Error(checked.Describe("e2fsck") + " on " + image + ": " + checked.out + checked.err, EIO));
  }
  std::string output;  // its progress report is not ours to print
  TRY_CTX(internal::RunCommand({SbinTool("resize2fs"), "-f", image}, &output),
          "grow the file system of " + image);
  return Ok();
}

Result<uint64_t> Ext4FsBytes(const std::string& image) {
  UniqueFd fd = TRY(OpenPath(image, O_RDONLY | O_NOFOLLOW));
  unsigned char sb[1024];
  ssize_t n = ::pread(fd.get(), sb, sizeof sb, 1024);
  if (n < 0) return Err(Error::FromErrno("read " + image));
  auto le32 = [&](size_t off) {
    return static_cast<uint32_t>(sb[off]) | static_cast<uint32_t>(sb[off + 1]) << 8 |
           static_cast<uint32_t>(sb[off + 2]) << 16 | static_cast<uint32_t>(sb[off + 3]) << 24;
  };
  // s_magic at 0x38, s_log_block_size at 0x18, s_blocks_count_lo at 0x4,
  // s_blocks_count_hi at 0x150 when INCOMPAT_64BIT (0x80 of s_feature_incompat at 0x60).
  if (n != static_cast<ssize_t>(sizeof sb) || sb[0x38] != 0x53 || sb[0x39] != 0xef ||
      le32(0x18) > 6) {
    return Err(Error(image + ": not an ext4 file system", EINVAL));
  }
  uint64_t blocks = le32(0x4);
  if (le32(0x60) & 0x80) blocks |= static_cast<uint64_t>(le32(0x150)) << 32;
  return blocks << (10 + le32(0x18));
}

Status CopyExt4Image(const std::string& from, const std::string& to,
                     const std::optional<std::string>& frozen_mount) {
  UniqueFd in = TRY(OpenPath(from, O_RDONLY | O_NOFOLLOW));
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return Err(Error::FromErrno("stat " + from));
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return Err(Error::FromErrno("create " + to));
  auto remove = ScopeGuard([&] { ::unlink(to.c_str()); });
  if (::ftruncate(out.get(), st.st_size) != 0) return Err(Error::FromErrno("size " + to));

  UniqueFd frozen;
  auto thaw = ScopeGuard([&] {
    if (frozen) ::ioctl(frozen.get(), FITHAW, 0);
  });
  if (frozen_mount) {
    UniqueFd fd = TRY(OpenPath(*frozen_mount, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    if (::ioctl(fd.get(), FIFREEZE, 0) != 0) {
      return Err(Error::FromErrno("freeze " + *frozen_mount + " for a snapshot"));
    }
    frozen = std::move(fd);
  }
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(in.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return Err(Error::FromErrno("read " + from));
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) return Err(Error::FromErrno("read " + from));
    off_t src = data;
    off_t dst = data;
    while (src < hole) {
      ssize_t n =
          ::copy_file_range(in.get(), &src, out.get(), &dst, static_cast<size_t>(hole - src), 0);
      if (n < 0) return Err(Error::FromErrno("copy " + from + " to " + to));
      if (n == 0) return Err(Error(from + ": shorter than it was", EIO));
    }
    pos = hole;
  }
  remove.Dismiss();
  return Ok();
}

}  // namespace tessera::storage
