// CopyTree: imports a directory tree as a template root (`--from DIR`).
//
// Rules (documented in docs/STORAGE.md):
// - Regular files, directories, symlinks (as symlinks, target unchanged) and
//   FIFOs are copied with their permission bits and modification times.
//   Sockets and device nodes are skipped (a cell's /dev is its own tmpfs).
//   Hard links become separate copies; xattrs (file capabilities, ACLs) are
//   not copied.
// - Like `cp -x`, the copy stays on the source's mount: a directory that is
//   another mount's root is copied as an empty directory (a mount point).
// - Ownership (only when running as root): if the source's top directory is
//   owned by root, the tree is taken to be a root filesystem and each file
//   keeps its uid/gid (ids >= 65536, which no qube could map, become 0);
//   otherwise every file becomes root:root and setuid/setgid bits are dropped,
//   so importing a user's directory never creates root-owned setuid files.
// - Nothing below the source is followed: every step is openat/fstatat with
//   O_NOFOLLOW, so a symlink swapped in during the copy is copied as a link.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/internal.h"
#include "storage/storage.h"

namespace tessera::storage::internal {
namespace {

// Two fds per level; the default soft limit is 1024.
constexpr int kMaxCopyDepth = 256;

// kShift: ids below kIdsPerQube (others become 0) plus shift_base, with every
// mode bit kept: the copy belongs to one qube's id range (a standalone root).
enum class Ownership { kPreserve, kRoot, kShift };

struct CopyContext {
  Ownership ownership = Ownership::kRoot;
  uid_t shift_base = 0;
  bool can_chown = false;
  uint64_t source_mnt_id = 0;
  dev_t source_dev = 0;
};

Status CopyData(int in, int out, const std::string& what) {
  for (;;) {
    ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, 1u << 30, 0);
    if (n == 0) return Ok();
    if (n > 0) continue;
    if (errno == EINTR) continue;
    if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) break;
    return Err(Error::FromErrno("copy " + what));
  }
  // Fallback for file systems without copy_file_range between them.
  char buf[65536];
  for (;;) {
    ssize_t n = TRY(SyscallSize("read " + what, [&] { return ::read(in, buf, sizeof buf); }));
    if (n == 0) return Ok();
    ssize_t done = 0;
    while (done < n) {
      ssize_t w = TRY(SyscallSize("write " + what, [&] {
        return ::write(out, buf + done, static_cast<size_t>(n - done));
      }));
      done += w;
    }
  }
}

// Owner and mode the copy gets, per the ownership rule.
void TargetOwner(const CopyContext& ctx, const struct stat& st, uid_t* uid, gid_t* gid,
                 mode_t* mode) {
  *mode = st.st_mode & 07777;
  if (ctx.ownership == Ownership::kRoot) {
    *uid = 0;
    *gid = 0;
    *mode &= ~static_cast<mode_t>(S_ISUID | S_ISGID);
    if (S_ISDIR(st.st_mode)) *mode |= st.st_mode & S_ISGID;  // setgid dirs are harmless
    return;
  }
  *uid = st.st_uid < kIdsPerQube ? st.st_uid : 0;
  *gid = st.st_gid < kIdsPerQube ? st.st_gid : 0;
  if (ctx.ownership == Ownership::kShift) {
    *uid += ctx.shift_base;
    *gid += ctx.shift_base;
  }
}

Status ApplyMeta(const CopyContext& ctx, int fd, const struct stat& st, const std::string& what) {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;
  TargetOwner(ctx, st, &uid, &gid, &mode);
  // chown first: it clears setuid bits, which fchmod then sets as intended.
  if (ctx.can_chown) TRY(Syscall("chown " + what, [&] { return ::fchown(fd, uid, gid); }));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd, mode); }));
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  TRY(Syscall("utimens " + what, [&] { return ::futimens(fd, times); }));
  return Ok();
}

Status CopyDir(const CopyContext& ctx, int src_fd, int dst_fd, const std::string& src_path,
               const std::string& dst_path, int depth) {
  if (depth > kMaxCopyDepth) {
    return Err(Error(src_path + ": deeper than " + std::to_string(kMaxCopyDepth) + " levels",
                     ELOOP));
  }
  int scan_fd = TRY(Syscall("open " + src_path, [&] {
    return ::openat(src_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }));
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(scan_fd), ::closedir);
  if (!dir) {
    ::close(scan_fd);
    return Err(Error::FromErrno("opendir " + src_path));
  }
  for (;;) {
    errno = 0;
    struct dirent* ent = ::readdir(dir.get());
    if (ent == nullptr) {
      if (errno != 0) return Err(Error::FromErrno("readdir " + src_path));
      return Ok();
    }
    std::string name = ent->d_name;
    if (name == "." || name == "..") continue;
    std::string src = src_path + "/" + name;
    std::string dst = dst_path + "/" + name;
    struct stat st {};
    TRY(Syscall("stat " + src,
                [&] { return ::fstatat(src_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW); }));
    if (S_ISREG(st.st_mode)) {
      UniqueFd in(TRY(Syscall("open " + src, [&] {
        return ::openat(src_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      })));
      UniqueFd out(TRY(Syscall("create " + dst, [&] {
        return ::openat(dst_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0600);
      })));
      TRY(CopyData(in.get(), out.get(), src));
      TRY(ApplyMeta(ctx, out.get(), st, dst));
    } else if (S_ISDIR(st.st_mode)) {
      UniqueFd in(TRY(Syscall("open " + src, [&] {
        return ::openat(src_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      })));
      TRY(Syscall("mkdir " + dst, [&] { return ::mkdirat(dst_fd, name.c_str(), 0700); }));
      UniqueFd out = TRY(OpenDirAt(dst_fd, name, dst));
      FileId in_id = TRY(StatFd(in.get(), src));
      bool other_mount = (ctx.source_mnt_id != 0 && in_id.mnt_id != 0)
                             ? in_id.mnt_id != ctx.source_mnt_id
                             : in_id.dev != ctx.source_dev;
      if (!other_mount) TRY(CopyDir(ctx, in.get(), out.get(), src, dst, depth + 1));
      // Mode last: a read-only directory must still receive its entries.
      TRY(ApplyMeta(ctx, out.get(), st, dst));
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = TRY(SyscallSize("readlink " + src, [&] {
        return ::readlinkat(src_fd, name.c_str(), target.data(), target.size());
      }));
      if (static_cast<size_t>(n) >= target.size()) {
        return Err(Error(src + ": symlink changed while being copied", EAGAIN));
      }
      target.resize(static_cast<size_t>(n));
      TRY(Syscall("symlink " + dst,
                  [&] { return ::symlinkat(target.c_str(), dst_fd, name.c_str()); }));
      if (ctx.can_chown) {
        uid_t uid = 0;
        gid_t gid = 0;
        mode_t mode = 0;
        TargetOwner(ctx, st, &uid, &gid, &mode);
        TRY(Syscall("chown " + dst, [&] {
          return ::fchownat(dst_fd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
        }));
      }
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      TRY(Syscall("utimens " + dst, [&] {
        return ::utimensat(dst_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
      }));
    } else if (S_ISFIFO(st.st_mode)) {
      TRY(Syscall("mkfifo " + dst, [&] { return ::mkfifoat(dst_fd, name.c_str(), 0600); }));
      UniqueFd out(TRY(Syscall("open " + dst, [&] {
        return ::openat(dst_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
      })));
      // fchmod/fchown do not work on O_PATH fds; go through /proc/self/fd.
      std::string proc = "/proc/self/fd/" + std::to_string(out.get());
      uid_t uid = 0;
      gid_t gid = 0;
      mode_t mode = 0;
      TargetOwner(ctx, st, &uid, &gid, &mode);
      if (ctx.can_chown) TRY(Syscall("chown " + dst, [&] { return ::chown(proc.c_str(), uid, gid); }));
      TRY(Syscall("chmod " + dst, [&] { return ::chmod(proc.c_str(), mode); }));
    }
    // Sockets and device nodes: skipped on purpose.
  }
}

}  // namespace

Status CopyTree(const std::string& source, int dest_fd, const std::string& dest_path) {
  UniqueFd src = TRY(OpenDir(source, O_NOFOLLOW));
  struct stat st {};
  TRY(Syscall("stat " + source, [&] { return ::fstat(src.get(), &st); }));
  FileId src_id = TRY(StatFd(src.get(), source));
  CopyContext ctx;
  ctx.ownership = st.st_uid == 0 ? Ownership::kPreserve : Ownership::kRoot;
  ctx.can_chown = ::geteuid() == 0;
  ctx.source_mnt_id = src_id.mnt_id;
  ctx.source_dev = src_id.dev;
  TRY(CopyDir(ctx, src.get(), dest_fd, source, dest_path, 0));
  // The root directory itself keeps the template's 0755 root:root.
  return Ok();
}

Status CopyTreeShifted(const std::string& source, int dest_fd, const std::string& dest_path,
                       uid_t base) {
  if (::geteuid() != 0) {
    return Err(Error("copy " + source + ": shifting ownership needs root", EPERM));
  }
  UniqueFd src = TRY(OpenDir(source, O_NOFOLLOW));
  struct stat st {};
  TRY(Syscall("stat " + source, [&] { return ::fstat(src.get(), &st); }));
  FileId src_id = TRY(StatFd(src.get(), source));
  CopyContext ctx;
  ctx.ownership = Ownership::kShift;
  ctx.shift_base = base;
  ctx.can_chown = true;
  ctx.source_mnt_id = src_id.mnt_id;
  ctx.source_dev = src_id.dev;
  TRY(CopyDir(ctx, src.get(), dest_fd, source, dest_path, 0));
  // The top directory too: it is the qube's "/", owned by its root.
  TRY(ApplyMeta(ctx, dest_fd, st, dest_path));
  return Ok();
}

namespace {

Status ShiftEntries(int dir_fd, uid_t base, const std::string& path, int depth) {
  if (depth > kMaxCopyDepth) {
    return Err(Error(path + ": deeper than " + std::to_string(kMaxCopyDepth) + " levels", ELOOP));
  }
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
    std::string what = path + "/" + name;
    struct stat st {};
    TRY(Syscall("stat " + what,
                [&] { return ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW); }));
    uid_t uid = (st.st_uid < kIdsPerQube ? st.st_uid : 0) + base;
    gid_t gid = (st.st_gid < kIdsPerQube ? st.st_gid : 0) + base;
    TRY(Syscall("chown " + what, [&] {
      return ::fchownat(dir_fd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
    }));
    if (S_ISLNK(st.st_mode)) continue;
    // chown cleared setuid/setgid bits; they are safe again with shifted ids.
    TRY(Syscall("chmod " + what,
                [&] { return ::fchmodat(dir_fd, name.c_str(), st.st_mode & 07777, 0); }));
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub = TRY(OpenDirAt(dir_fd, name, what));
      TRY(ShiftEntries(sub.get(), base, what, depth + 1));
    }
  }
}

}  // namespace

Status ShiftTree(int dir_fd, uid_t base, const std::string& path) {
  struct stat st {};
  TRY(Syscall("stat " + path, [&] { return ::fstat(dir_fd, &st); }));
  TRY(ShiftEntries(dir_fd, base, path, 0));
  uid_t uid = (st.st_uid < kIdsPerQube ? st.st_uid : 0) + base;
  gid_t gid = (st.st_gid < kIdsPerQube ? st.st_gid : 0) + base;
  TRY(Syscall("chown " + path, [&] { return ::fchown(dir_fd, uid, gid); }));
  TRY(Syscall("chmod " + path, [&] { return ::fchmod(dir_fd, st.st_mode & 07777); }));
  return Ok();
}

Status CopyFileAt(const std::string& source, int dst_dir_fd, const std::string& name, mode_t mode,
                  const std::string& what) {
  UniqueFd in(TRY(Syscall("open " + source,
                          [&] { return ::open(source.c_str(), O_RDONLY | O_CLOEXEC); })));
  UniqueFd out(TRY(Syscall("create " + what, [&] {
    return ::openat(dst_dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
  })));
  TRY(CopyData(in.get(), out.get(), source));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(out.get(), mode); }));
  return Ok();
}

}  // namespace tessera::storage::internal
