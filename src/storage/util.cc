// Small fd-relative file helpers and a process runner for src/storage.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <ctime>

#include <memory>

#include "common/fs.h"
#include "common/spawn.h"
#include "common/syscall.h"
#include "storage/internal.h"

namespace tessera::storage::internal {

Result<UniqueFd> OpenDir(const std::string& path, int flags) {
  int fd = TRY(Syscall("open directory " + path, [&] {
    return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | flags);
  }));
  return UniqueFd(fd);
}

Result<UniqueFd> OpenDirAt(int dir_fd, const std::string& name, const std::string& what) {
  int fd = TRY(Syscall("open directory " + what, [&] {
    return ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }));
  return UniqueFd(fd);
}

Result<bool> EnsureDirAt(int dir_fd, const std::string& name, mode_t mode, uid_t uid, gid_t gid,
                         const std::string& what) {
  if (::mkdirat(dir_fd, name.c_str(), mode) != 0) {
    if (errno != EEXIST) return Err(Error::FromErrno("mkdir " + what));
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Err(Error::FromErrno("stat " + what));
    }
    if (!S_ISDIR(st.st_mode)) {
      return Err(Error(what + ": exists and is not a directory (refusing to follow it)", ENOTDIR));
    }
    return false;
  }
  // mkdir's mode is filtered by the umask; set the exact one, then the owner.
  // Both through a fresh O_NOFOLLOW fd so a racing rename cannot redirect them.
  UniqueFd fd = TRY(OpenDirAt(dir_fd, name, what));
  TRY(Syscall("chown " + what, [&] { return ::fchown(fd.get(), uid, gid); }));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd.get(), mode); }));
  return true;
}

namespace {

// Drops group/other bits of an open directory and, as root, makes root its owner.
Status Tighten(int fd, const struct stat& st, const std::string& what) {
  if (::geteuid() == 0 && (st.st_uid != 0 || st.st_gid != 0)) {
    TRY(Syscall("chown " + what, [&] { return ::fchown(fd, 0, 0); }));
  }
  if ((st.st_mode & 077) != 0 || (st.st_mode & 07000) != 0) {
    mode_t mode = st.st_mode & 0700;
    TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd, mode); }));
  }
  return Ok();
}

}  // namespace

Status ForEachEntry(int dir_fd, const std::string& path,
                    const std::function<Status(const std::string& name)>& fn) {
  int scan_fd = TRY(Syscall("open " + path, [&] {
    return ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }));
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(scan_fd), ::closedir);
  if (!dir) {
    ::close(scan_fd);
    return Err(Error::FromErrno("opendir " + path));
  }
  for (;;) {
    errno = 0;
    struct dirent* ent = ::readdir(dir.get());
    if (ent == nullptr) {
      if (errno != 0) return Err(Error::FromErrno("readdir " + path));
      return Ok();
    }
    std::string name = ent->d_name;
    if (name == "." || name == "..") continue;
    TRY(fn(name));
  }
}

Result<UniqueFd> EnsurePrivateStateDir(const std::string& path) {
  TRY(MakeDirs(DirName(path), 0755));
  uid_t owner = ::geteuid();
  gid_t group = owner == 0 ? 0 : ::getegid();
  std::string parent = DirName(path);
  std::string base = path.substr(path.find_last_of('/') + 1);
  UniqueFd parent_fd = TRY(OpenDir(parent));
  TRY(EnsureDirAt(parent_fd.get(), base, 0700, owner, group, path));
  UniqueFd fd = TRY(OpenDirAt(parent_fd.get(), base, path));
  struct stat st {};
  TRY(Syscall("stat " + path, [&] { return ::fstat(fd.get(), &st); }));
  TRY(Tighten(fd.get(), st, path));

  // Children: only directories with group/other bits need a look (a cheap
  // readdir + fstatat per entry; no qube can write here).
  // A named lambda: TRY inside a TRY argument would shadow its own temporary.
  auto tighten_child = [&](const std::string& name) -> Status {
    struct stat child {};
    if (::fstatat(fd.get(), name.c_str(), &child, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Ok();  // removed meanwhile
      return Err(Error::FromErrno("stat " + path + "/" + name));
    }
    if (!S_ISDIR(child.st_mode) || (child.st_mode & 077) == 0) return Ok();
    auto child_fd = OpenDirAt(fd.get(), name, path + "/" + name);
    if (!child_fd) {
      if (child_fd.error().errno_value() == ENOENT) return Ok();
      return Err(std::move(child_fd).error());
    }
    struct stat now {};
    TRY(Syscall("stat " + path + "/" + name, [&] { return ::fstat(child_fd->get(), &now); }));
    // Only the mode is tightened here: the owner of a child is left alone.
    if ((now.st_mode & 077) != 0) {
      mode_t mode = now.st_mode & 07700;
      TRY(Syscall("chmod " + path + "/" + name, [&] { return ::fchmod(child_fd->get(), mode); }));
    }
    return Ok();
  };
  TRY(ForEachEntry(fd.get(), path, tighten_child));
  return fd;
}

Status WriteFileAt(int dir_fd, const std::string& name, const std::string& content, mode_t mode,
                   const std::string& what) {
  UniqueFd fd(TRY(Syscall("create " + what, [&] {
    return ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    mode);
  })));
  TRY(WriteAll(fd.get(), content, what));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd.get(), mode); }));
  return Ok();
}

Status RunCommand(const std::vector<std::string>& argv, std::string* capture) {
  if (argv.empty()) return Err("RunCommand: empty argv");
  ProcessOptions options;
  options.argv = argv;
  options.out = capture != nullptr ? Output::kCapture : Output::kInherit;
  options.max_capture_bytes = 16u << 20;
  ProcessResult result = TRY(RunProcess(options));
  if (result.output_limit_exceeded) {
    return Err(Error(argv[0] + ": output larger than 16 MiB", EFBIG));
  }
  if (!result.Succeeded()) return Err(result.Describe(argv[0]));
  if (capture != nullptr) *capture = std::move(result.out);
  return Ok();
}

namespace {
FileId FromStatx(const struct statx& stx) {
  FileId id;
  id.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  id.ino = static_cast<ino_t>(stx.stx_ino);
  id.mnt_id = (stx.stx_mask & STATX_MNT_ID) != 0 ? stx.stx_mnt_id : 0;
  id.mode = stx.stx_mode;
  id.uid = stx.stx_uid;
  id.gid = stx.stx_gid;
  return id;
}
}  // namespace

Result<FileId> StatAt(int dir_fd, const std::string& name, const std::string& what) {
  struct statx stx {};
  TRY(Syscall("statx " + what, [&] {
    return ::statx(dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                   STATX_BASIC_STATS | STATX_MNT_ID, &stx);
  }));
  return FromStatx(stx);
}

Result<FileId> StatFd(int fd, const std::string& what) {
  struct statx stx {};
  TRY(Syscall("statx " + what, [&] {
    return ::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_MNT_ID,
                   &stx);
  }));
  return FromStatx(stx);
}

bool OnDifferentMount(const FileId& a, const FileId& b) {
  if (a.mnt_id != 0 && b.mnt_id != 0) return a.mnt_id != b.mnt_id;
  return a.dev != b.dev;
}

Result<std::string> RealPath(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return Err(Error::FromErrno("resolve " + path));
  std::string out(resolved);
  std::free(resolved);
  return out;
}

std::string NowRfc3339() {
  std::time_t now = std::time(nullptr);
  std::tm tm {};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace tessera::storage::internal
