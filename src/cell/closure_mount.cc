// A Nix template's closure image as a detached read-only mount
// (closure_mount.h).

#include "cell/closure_mount.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>

#include "storage/ext4_image.h"

namespace tessera::cell {
namespace {

// fsopen + source + ro + fsmount (read-only, nosuid, nodev), or errno.
Result<UniqueFd> NewReadOnlyMount(const char* type, const std::string& source,
                                  const std::string& what) {
  UniqueFd fs(::fsopen(type, FSOPEN_CLOEXEC));
  if (!fs) return Err(Error::FromErrno("fsopen " + std::string(type)));
  if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "source", source.c_str(), 0) != 0 ||
      ::fsconfig(fs.get(), FSCONFIG_SET_FLAG, "ro", nullptr, 0) != 0 ||
      ::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return Err(Error::FromErrno("mount " + what + " (" + type + ")"));
  }
  UniqueFd m(::fsmount(fs.get(), FSMOUNT_CLOEXEC,
                       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!m) return Err(Error::FromErrno("fsmount " + what));
  return m;
}

}  // namespace

Result<UniqueFd> MountClosureImage(const std::string& image, storage::ClosureImage kind) {
  if (kind == storage::ClosureImage::kNone || image.empty()) {
    return Err(Error("no closure image to mount", EINVAL));
  }
  const char* type = kind == storage::ClosureImage::kErofs ? "erofs" : "squashfs";
  if (kind == storage::ClosureImage::kErofs) {
    // File-backed erofs (Linux 6.12+): no loop device at all.
    auto direct = NewReadOnlyMount(type, image, image);
    if (direct) return direct;
  }
  UniqueFd file(::open(image.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!file) return Err(Error::FromErrno("open closure image " + image));
  storage::LoopDevice loop = TRY(storage::AttachLoopDevice(file.get(), image, LO_FLAGS_READ_ONLY));
  auto mounted = NewReadOnlyMount(type, loop.path, image + " on " + loop.path);
  if (!mounted) ::ioctl(loop.fd.get(), LOOP_CLR_FD, 0);
  return mounted;
}

}  // namespace tessera::cell
