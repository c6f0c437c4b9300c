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

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/id_shift.h"
#include "storage/internal.h"
#include "storage/storage.h"

namespace tessera::storage::internal {

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

namespace {

// Two fds per level; the default soft limit is 1024.
constexpr int kMaxCopyDepth = 256;

// kShift: ids moved by `shift` (id_shift.h: the one rule), with every mode
// bit kept: the copy belongs to one qube's id range (a standalone root, a
// disposable's private volume).
enum class Ownership { kPreserve, kRoot, kShift };

struct CopyContext {
  Ownership ownership = Ownership::kRoot;
  IdShift shift;
  bool can_chown = false;
  uint64_t source_mnt_id = 0;
  dev_t source_dev = 0;
};

// Owner and mode the copy gets, per the ownership rule; `what` names the
// source in errors.
Status TargetOwner(const CopyContext& ctx, const struct stat& st, const std::string& what,
                   uid_t* uid, gid_t* gid, mode_t* mode) {
  *mode = st.st_mode & 07777;
  switch (ctx.ownership) {
    case Ownership::kRoot:
      *uid = 0;
      *gid = 0;
      *mode &= ~static_cast<mode_t>(S_ISUID | S_ISGID);
      if (S_ISDIR(st.st_mode)) *mode |= st.st_mode & S_ISGID;  // setgid dirs are harmless
      return Ok();
    case Ownership::kPreserve:
      *uid = st.st_uid < kIdsPerQube ? st.st_uid : 0;
      *gid = st.st_gid < kIdsPerQube ? st.st_gid : 0;
      return Ok();
    case Ownership::kShift:
      *uid = TRY(ctx.shift.Map(st.st_uid, what));
      *gid = TRY(ctx.shift.Map(st.st_gid, what));
      return Ok();
  }
  return Ok();
}

Status ApplyMeta(const CopyContext& ctx, int fd, const struct stat& st, const std::string& src,
                 const std::string& what) {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;
  TRY(TargetOwner(ctx, st, src, &uid, &gid, &mode));
  // chown first: it clears setuid bits, which fchmod then sets as intended.
  if (ctx.can_chown) TRY(Syscall("chown " + what, [&] { return ::fchown(fd, uid, gid); }));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd, mode); }));
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  TRY(Syscall("utimens " + what, [&] { return ::futimens(fd, times); }));
  return Ok();
}

Status CopyDir(const CopyContext& ctx, int src_fd, int dst_fd, const std::string& src_path,
               const std::string& dst_path, int depth);

// Copies the entry `name` of src_fd (the directory src_path) into dst_fd.
Status CopyEntry(const CopyContext& ctx, int src_fd, int dst_fd, const std::string& name,
                 const std::string& src_path, const std::string& dst_path, int depth) {
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
    TRY(ApplyMeta(ctx, out.get(), st, src, dst));
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
    TRY(ApplyMeta(ctx, out.get(), st, src, dst));
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
      TRY(TargetOwner(ctx, st, src, &uid, &gid, &mode));
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
    TRY(TargetOwner(ctx, st, src, &uid, &gid, &mode));
    if (ctx.can_chown) TRY(Syscall("chown " + dst, [&] { return ::chown(proc.c_str(), uid, gid); }));
    TRY(Syscall("chmod " + dst, [&] { return ::chmod(proc.c_str(), mode); }));
  }
  // Sockets and device nodes: skipped on purpose.
  return Ok();
}

Status CopyDir(const CopyContext& ctx, int src_fd, int dst_fd, const std::string& src_path,
               const std::string& dst_path, int depth) {
  if (depth > kMaxCopyDepth) {
    return Err(Error(src_path + ": deeper than " + std::to_string(kMaxCopyDepth) + " levels",
                     ELOOP));
  }
  return ForEachEntry(src_fd, src_path, [&](const std::string& name) {
    return CopyEntry(ctx, src_fd, dst_fd, name, src_path, dst_path, depth);
  });
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
                       const IdShift& shift) {
  if (::geteuid() != 0) {
    return Err(Error("copy " + source + ": shifting ownership needs root", EPERM));
  }
  UniqueFd src = TRY(OpenDir(source, O_NOFOLLOW));
  struct stat st {};
  TRY(Syscall("stat " + source, [&] { return ::fstat(src.get(), &st); }));
  FileId src_id = TRY(StatFd(src.get(), source));
  CopyContext ctx;
  ctx.ownership = Ownership::kShift;
  ctx.shift = shift;
  ctx.can_chown = true;
  ctx.source_mnt_id = src_id.mnt_id;
  ctx.source_dev = src_id.dev;
  TRY(CopyDir(ctx, src.get(), dest_fd, source, dest_path, 0));
  // The top directory too: it is the qube's "/" (or private/), owned by its root.
  TRY(ApplyMeta(ctx, dest_fd, st, source, dest_path));
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
