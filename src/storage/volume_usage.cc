// How much a volume holds: disk usage of a tree and whether a qube's storage
// holds anything a user made (volume_ops.h).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/id_shift.h"
#include "storage/internal.h"
#include "storage/private_volume.h"
#include "storage/volume_ops.h"

namespace tessera::storage {
namespace {

// Sums st_blocks below dir_fd (hard links once), staying on `dev` and never
// following a symlink; depth-limited like every walk of a qube-shaped tree.
class UsageWalk {
 public:
  explicit UsageWalk(dev_t dev) : dev_(dev) {}

  Status Dir(int dir_fd, const std::string& path, int depth) {
    if (depth > kMaxShiftDepth) return Err(Error(path + ": deeper than the walk allows", ELOOP));
    return internal::ForEachEntry(dir_fd, path, [&](const std::string& name) -> Status {
      std::string child = path + "/" + name;
      struct stat st {};
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return Ok();
        return Err(Error::FromErrno("stat " + child));
      }
      if (st.st_dev != dev_) return Ok();  // another mount: not this volume's
      if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !seen_.insert({st.st_dev, st.st_ino}).second) {
        return Ok();
      }
      bytes_ += static_cast<uint64_t>(st.st_blocks) * 512;
      if (!S_ISDIR(st.st_mode)) return Ok();
      UniqueFd sub = TRY(internal::OpenDirAt(dir_fd, name, child));
      return Dir(sub.get(), child, depth + 1);
    });
  }

  uint64_t bytes() const { return bytes_; }

 private:
  dev_t dev_;
  uint64_t bytes_ = 0;
  std::set<std::pair<dev_t, ino_t>> seen_;
};

// The entry names of the directory open as `fd` (`path` in errors).
Result<std::vector<std::string>> Entries(int fd, const std::string& path) {
  std::vector<std::string> names;
  TRY(internal::ForEachEntry(fd, path, [&](const std::string& name) {
    names.push_back(name);
    return Ok();
  }));
  return names;
}

// An empty directory named `name` below dir_fd (anything else: false).
Result<bool> IsEmptyDirAt(int dir_fd, const std::string& name, const std::string& path) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Err(Error::FromErrno("stat " + path));
  }
  if (!S_ISDIR(st.st_mode)) return false;
  UniqueFd fd = TRY(internal::OpenDirAt(dir_fd, name, path));
  return TRY(Entries(fd.get(), path)).empty();
}

// True when the private volume at `path` holds more than the skeleton
// EnsurePrivateVolume makes: home/, home/user/, rw/ and usrlocal/, all empty.
Result<bool> PrivateHasData(int qube_fd, const std::string& path) {
  UniqueFd priv = TRY(internal::OpenDirAt(qube_fd, "private", path));
  for (const std::string& name : TRY(Entries(priv.get(), path))) {
    if (name == "rw" || name == "usrlocal") {
      if (!TRY(IsEmptyDirAt(priv.get(), name, path + "/" + name))) return true;
    } else if (name == "lost+found") {
      // Made by mkfs in an image volume; only fsck puts anything there.
      if (!TRY(IsEmptyDirAt(priv.get(), name, path + "/lost+found"))) return true;
    } else if (name == "home") {
      struct stat st {};
      if (::fstatat(priv.get(), "home", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
        return true;
      }
      UniqueFd home = TRY(internal::OpenDirAt(priv.get(), "home", path + "/home"));
      for (const std::string& entry : TRY(Entries(home.get(), path + "/home"))) {
        if (entry != "user" || !TRY(IsEmptyDirAt(home.get(), entry, path + "/home/user"))) {
          return true;
        }
      }
    } else {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<uint64_t> DiskUsage(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return uint64_t{0};
    return Err(Error::FromErrno("stat " + path));
  }
  if (!S_ISDIR(st.st_mode)) return static_cast<uint64_t>(st.st_blocks) * 512;
  UniqueFd fd = TRY(internal::OpenDir(path, O_NOFOLLOW));
  UsageWalk walk(st.st_dev);
  TRY(walk.Dir(fd.get(), path, 0));
  return walk.bytes() + static_cast<uint64_t>(st.st_blocks) * 512;
}

Result<bool> HasData(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  std::string dir = layout.QubeDir(qube);
  auto qube_fd = internal::OpenDir(dir, O_NOFOLLOW);
  if (!qube_fd) {
    if (qube_fd.error().errno_value() == ENOENT) return false;
    return Err(std::move(qube_fd).error());
  }
  struct stat st {};
  if (::fstatat(qube_fd->get(), "root", &st, AT_SYMLINK_NOFOLLOW) == 0) return true;
  if (errno != ENOENT) return Err(Error::FromErrno("stat " + dir + "/root"));
  if (::fstatat(qube_fd->get(), "private", &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    return Err(Error::FromErrno("stat " + dir + "/private"));
  }
  bool has_data = false;
  Status checked = WithPrivateVolume(layout, qube, [&]() -> Status {
    has_data = TRY(PrivateHasData(qube_fd->get(), layout.PrivateVolume(qube)));
    return Ok();
  });
  TRY(std::move(checked));
  return has_data;
}

namespace internal {

Result<bool> PrivateVolumeHasData(int qube_fd, const std::string& path) {
  return PrivateHasData(qube_fd, path);
}

}  // namespace internal
}  // namespace tessera::storage
