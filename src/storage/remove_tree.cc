// RemoveTree: deletes a directory tree that a qube may have shaped (its
// private volume, its scratch), so it must be safe against hostile content:
//
// - Every step is fd-relative (openat/statx/unlinkat with O_NOFOLLOW,
//   AT_SYMLINK_NOFOLLOW): a symlink is unlinked, never followed, and a
//   directory swapped for a symlink between two steps makes openat fail
//   rather than lead us outside.
// - Each directory we enter is checked to be the inode we stat'ed (dev+ino)
//   and to lie on the tree's own mount (statx mount id): a mount point inside
//   stops the removal with EBUSY naming it, before anything below it is touched.
// - Depth is handled iteratively with an explicit stack. Only the innermost
//   kMaxOpenDirs directories keep an fd open; an outer one is re-entered via
//   ".." from its child and checked against its recorded dev+ino (as fts
//   does), so a very deep tree needs neither deep recursion nor many fds.
// - A directory without write/search permission (a non-root caller meeting
//   mode 0500 dirs) is chmod'ed through its fd and retried.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/internal.h"
#include "storage/storage.h"

namespace tessera::storage {
namespace {

using internal::FileId;

constexpr size_t kMaxOpenDirs = 64;
constexpr int kMaxRescans = 16;  // a dir refilled concurrently this often: give up

struct Frame {
  UniqueFd fd;  // invalid when closed to bound fd usage
  FileId id;
  std::string name;  // name in the parent frame
  int rescans = 0;
};

class TreeRemover {
 public:
  TreeRemover(std::string root_path, const FileId& root_id)
      : root_path_(std::move(root_path)), root_id_(root_id) {}

  Status Run(int parent_fd, const std::string& base);

 private:
  // Path of frame `depth` (for messages); cur_path_ is that of the top frame,
  // kept incrementally so deep trees do not cost O(depth^2) string building.
  std::string PathOf(size_t depth, const std::string& leaf = "") const {
    std::string out = cur_path_;
    for (size_t i = frames_.size() - 1; i > depth; --i) out.resize(out.size() - frames_[i].name.size() - 1);
    if (!leaf.empty()) out += "/" + leaf;
    return out;
  }
  Status CheckSameInode(const FileId& expected, int fd, const std::string& path);
  Result<UniqueFd> OpenChildDir(int parent_fd, const std::string& name, const std::string& path);
  Status Unlink(int dir_fd, const std::string& name, int flags, const std::string& path);
  // Scans the top frame: unlinks non-directories, pushes the first directory.
  // Returns true when it pushed one (the caller loops again).
  Result<bool> ScanTop();
  Status PopTop(int root_parent_fd, const std::string& root_base);

  std::string root_path_;
  FileId root_id_;
  std::vector<Frame> frames_;
  std::string cur_path_;
};

Status TreeRemover::CheckSameInode(const FileId& expected, int fd, const std::string& path) {
  FileId got = TRY(internal::StatFd(fd, path));
  if (got.dev != expected.dev || got.ino != expected.ino) {
    return Err(Error(path + ": changed while being removed (refusing to continue)", EAGAIN));
  }
  if (internal::OnDifferentMount(root_id_, got)) {
    return Err(Error(path + ": is a mount point; refusing to delete through it", EBUSY));
  }
  return Ok();
}

Result<UniqueFd> TreeRemover::OpenChildDir(int parent_fd, const std::string& name,
                                           const std::string& path) {
  int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) {
    // No read permission (only possible for a non-root caller): take an O_PATH
    // handle, which needs none, give ourselves access through it, and retry.
    UniqueFd path_fd(::openat(parent_fd, name.c_str(),
                              O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!path_fd.valid()) return Err(Error::FromErrno("open " + path));
    std::string proc = "/proc/self/fd/" + std::to_string(path_fd.get());
    TRY(Syscall("chmod " + path, [&] { return ::chmod(proc.c_str(), 0700); }));
    fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) return Err(Error::FromErrno("open " + path));
  return UniqueFd(fd);
}

Status TreeRemover::Unlink(int dir_fd, const std::string& name, int flags,
                           const std::string& path) {
  if (::unlinkat(dir_fd, name.c_str(), flags) == 0) return Ok();
  if (errno == ENOENT) return Ok();
  if (errno == EACCES || errno == EPERM) {
    // The directory holding `name` lacks write permission for us: add it.
    struct stat st {};
    if (::fstat(dir_fd, &st) == 0 && (st.st_mode & 0700) != 0700) {
      TRY(Syscall("chmod parent of " + path,
                  [&] { return ::fchmod(dir_fd, (st.st_mode & 07777) | 0700); }));
      if (::unlinkat(dir_fd, name.c_str(), flags) == 0 || errno == ENOENT) return Ok();
    }
  }
  if (errno == EBUSY) {
    return Err(Error::FromErrno(path + ": is a mount point; refusing to delete through it"));
  }
  return Err(Error::FromErrno((flags & AT_REMOVEDIR) != 0 ? "rmdir " + path : "unlink " + path));
}

Result<bool> TreeRemover::ScanTop() {
  size_t depth = frames_.size() - 1;
  Frame& top = frames_.back();
  int scan_fd = ::openat(top.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (scan_fd < 0 && errno == EACCES) {
    TRY(Syscall("chmod " + PathOf(depth), [&] { return ::fchmod(top.fd.get(), 0700); }));
    scan_fd = ::openat(top.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (scan_fd < 0) return Err(Error::FromErrno("open " + PathOf(depth)));
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(scan_fd), ::closedir);
  if (!dir) {
    ::close(scan_fd);
    return Err(Error::FromErrno("opendir " + PathOf(depth)));
  }
  for (;;) {
    errno = 0;
    struct dirent* ent = ::readdir(dir.get());
    if (ent == nullptr) {
      if (errno != 0) return Err(Error::FromErrno("readdir " + PathOf(depth)));
      return false;
    }
    std::string name = ent->d_name;
    if (name == "." || name == "..") continue;
    std::string path = PathOf(depth, name);
    auto child = internal::StatAt(top.fd.get(), name, path);
    if (!child) {
      if (child.error().errno_value() == ENOENT) continue;  // vanished meanwhile
      return Err(std::move(child).error());
    }
    if (internal::OnDifferentMount(root_id_, *child)) {
      return Err(Error(path + ": is a mount point; refusing to delete through it", EBUSY));
    }
    if (!S_ISDIR(child->mode)) {
      TRY(Unlink(top.fd.get(), name, 0, path));
      continue;
    }
    UniqueFd child_fd = TRY(OpenChildDir(top.fd.get(), name, path));
    TRY(CheckSameInode(*child, child_fd.get(), path));
    // Bound the open fds: the directory kMaxOpenDirs levels up lets its fd go
    // and is re-entered through ".." (verified) on the way back.
    if (frames_.size() >= kMaxOpenDirs) frames_[frames_.size() - kMaxOpenDirs].fd.reset();
    frames_.push_back(Frame{std::move(child_fd), *child, name, 0});
    cur_path_ = std::move(path);
    return true;
  }
}

Status TreeRemover::PopTop(int root_parent_fd, const std::string& root_base) {
  size_t depth = frames_.size() - 1;
  std::string path = PathOf(depth);
  if (depth == 0) {
    Status s = Unlink(root_parent_fd, root_base, AT_REMOVEDIR, path);
    if (!s && s.error().errno_value() == ENOTEMPTY && ++frames_.back().rescans < kMaxRescans) {
      return Ok();  // refilled meanwhile: scan again
    }
    TRY(s);
    frames_.pop_back();
    return Ok();
  }
  Frame& parent = frames_[depth - 1];
  if (!parent.fd.valid()) {
    int fd = ::openat(frames_.back().fd.get(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Err(Error::FromErrno("open " + PathOf(depth - 1)));
    parent.fd.reset(fd);
    TRY(CheckSameInode(parent.id, parent.fd.get(), PathOf(depth - 1)));
  }
  Status s = Unlink(parent.fd.get(), frames_.back().name, AT_REMOVEDIR, path);
  if (!s && s.error().errno_value() == ENOTEMPTY && ++frames_.back().rescans < kMaxRescans) {
    return Ok();
  }
  TRY(s);
  cur_path_.resize(cur_path_.size() - frames_.back().name.size() - 1);
  frames_.pop_back();
  return Ok();
}

Status TreeRemover::Run(int parent_fd, const std::string& base) {
  UniqueFd root_fd = TRY(OpenChildDir(parent_fd, base, root_path_));
  TRY(CheckSameInode(root_id_, root_fd.get(), root_path_));
  frames_.push_back(Frame{std::move(root_fd), root_id_, base, 0});
  cur_path_ = root_path_;
  while (!frames_.empty()) {
    bool pushed = TRY(ScanTop());
    if (!pushed) TRY(PopTop(parent_fd, base));
  }
  return Ok();
}

}  // namespace

Status RemoveTree(const std::string& input) {
  std::string path = input;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty() || path == "/") {
    return Err(Error("RemoveTree: refusing to remove \"" + input + "\"", EINVAL));
  }
  size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base == "." || base == "..") {
    return Err(Error("RemoveTree: refusing to remove \"" + input + "\"", EINVAL));
  }
  // The prefix is ours (state or runtime dir), so following symlinks in it is
  // fine; from the last component on nothing is followed.
  std::string parent = DirName(path);
  auto parent_fd = internal::OpenDir(parent);
  if (!parent_fd) {
    if (parent_fd.error().errno_value() == ENOENT) return Ok();
    return Err(std::move(parent_fd).error());
  }
  FileId parent_id = TRY(internal::StatFd(parent_fd->get(), parent));
  auto root = internal::StatAt(parent_fd->get(), base, path);
  if (!root) {
    if (root.error().errno_value() == ENOENT) return Ok();
    return Err(std::move(root).error());
  }
  if (internal::OnDifferentMount(parent_id, *root)) {
    return Err(Error(path + ": is a mount point; refusing to delete through it", EBUSY));
  }
  if (!S_ISDIR(root->mode)) {
    if (::unlinkat(parent_fd->get(), base.c_str(), 0) != 0 && errno != ENOENT) {
      return Err(Error::FromErrno("unlink " + path));
    }
    return Ok();
  }
  TreeRemover remover(path, *root);
  return remover.Run(parent_fd->get(), base);
}

}  // namespace tessera::storage
