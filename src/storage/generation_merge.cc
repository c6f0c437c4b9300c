// MergeOverlayLayers: a new template generation = the current one with the
// template qube's overlay upper applied (rules in generation_internal.h).
//
// Unchanged files are hard links to the current generation's inodes. That is
// safe only because generations are never written after they are published:
// app qubes mount them read-only, and the template qube writes to its upper
// layer (a change to such a file is a copy-up, a new inode).
//
// Every step is fd-relative with O_NOFOLLOW: the upper layer holds what a
// template qube wrote, and a symlink there is data, never a path to follow.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/generation_internal.h"
#include "storage/internal.h"
#include "storage/storage.h"

namespace tessera::storage::internal {
namespace {

// Three fds per level (lower, upper, out); the default soft limit is 1024.
constexpr int kMaxMergeDepth = 256;

bool IsWhiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0;
}

// The value of xattr `name` on the file open as `fd`; nullopt when absent.
Result<std::optional<std::string>> XattrOf(int fd, const char* name, const std::string& what) {
  char value[64];
  ssize_t n = ::fgetxattr(fd, name, value, sizeof(value));
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) return std::optional<std::string>();
    if (errno == ERANGE) return std::optional<std::string>("?");  // longer than any we read
    return Err(Error::FromErrno(std::string("getxattr ") + name + " of " + what));
  }
  return std::optional<std::string>(std::string(value, static_cast<size_t>(n)));
}

// Refuses entries whose meaning lives in overlay xattrs this merge does not
// apply (a renamed directory's redirect, a metadata-only copy-up).
Status CheckNoRedirect(int fd, const std::string& what) {
  for (const char* name : {"user.overlay.redirect", "trusted.overlay.redirect",
                           "user.overlay.metacopy", "trusted.overlay.metacopy"}) {
    if (TRY(XattrOf(fd, name, what))) {
      return Err(Error(what + ": carries the overlay attribute " + name +
                           ", which a commit cannot apply (refusing to make a wrong generation)",
                       EINVAL));
    }
  }
  return Ok();
}

Result<bool> IsOpaque(int dir_fd, const std::string& what) {
  for (const char* name : {"user.overlay.opaque", "trusted.overlay.opaque"}) {
    std::optional<std::string> value = TRY(XattrOf(dir_fd, name, what));
    if (value && *value == "y") return true;
  }
  return false;
}

// Upper entries were written through the idmapped upper, so their ids are
// 0..65535; anything else did not come from the template qube.
Status CheckIds(const struct stat& st, const std::string& what) {
  if (st.st_uid >= kIdsPerQube || st.st_gid >= kIdsPerQube) {
    return Err(Error(what + ": owned by host id " + std::to_string(st.st_uid) + ":" +
                         std::to_string(st.st_gid) +
                         ", outside a template's ids 0..65535 (refusing to commit it)",
                     EPERM));
  }
  return Ok();
}

// Owner, mode (after the chown, which clears setuid) and times of `st` on fd.
Status SetMeta(int fd, const struct stat& st, const std::string& what) {
  TRY(Syscall("chown " + what, [&] { return ::fchown(fd, st.st_uid, st.st_gid); }));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd, st.st_mode & 07777); }));
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  TRY(Syscall("utimens " + what, [&] { return ::futimens(fd, times); }));
  return Ok();
}

// The overlay's own bookkeeping (opaque, redirect, origin, ...), not the file's.
bool IsOverlayXattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

// Copies the extended attributes of the file open as in_fd to out_fd: file
// capabilities (security.capability), ACLs (system.posix_acl_*), user.* and
// the rest, but not the overlay's own. After SetMeta: a chown clears
// security.capability.
Status CopyXattrs(int in_fd, int out_fd, const std::string& what) {
  ssize_t size = ::flistxattr(in_fd, nullptr, 0);
  if (size < 0) {
    if (errno == ENOTSUP) return Ok();
    return Err(Error::FromErrno("list xattrs of " + what));
  }
  if (size == 0) return Ok();
  std::vector<char> names(static_cast<size_t>(size));
  size = TRY(SyscallSize("list xattrs of " + what,
                         [&] { return ::flistxattr(in_fd, names.data(), names.size()); }));
  for (size_t i = 0; i < static_cast<size_t>(size);) {
    std::string name(names.data() + i);
    i += name.size() + 1;
    if (name.empty() || IsOverlayXattr(name)) continue;
    ssize_t length = TRY(SyscallSize("read xattr " + name + " of " + what,
                                     [&] { return ::fgetxattr(in_fd, name.c_str(), nullptr, 0); }));
    std::vector<char> value(static_cast<size_t>(length));
    length = TRY(SyscallSize("read xattr " + name + " of " + what, [&] {
      return ::fgetxattr(in_fd, name.c_str(), value.data(), value.size());
    }));
    TRY(Syscall("set xattr " + name + " on " + what, [&] {
      return ::fsetxattr(out_fd, name.c_str(), value.data(), static_cast<size_t>(length), 0);
    }));
  }
  return Ok();
}

struct Paths {
  std::string lower, upper, out;
  Paths Child(const std::string& name) const {
    return {lower + "/" + name, upper + "/" + name, out + "/" + name};
  }
};

Status MergeDir(int lower_fd, int upper_fd, int out_fd, const Paths& p, int depth);

// An upper entry that is not a directory: copied into out_fd.
Status CopyUpperEntry(int upper_fd, int out_fd, const std::string& name, const struct stat& st,
                      const Paths& p) {
  std::string src = p.upper + "/" + name;
  std::string dst = p.out + "/" + name;
  if (S_ISREG(st.st_mode)) {
    UniqueFd in(TRY(Syscall("open " + src, [&] {
      return ::openat(upper_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    })));
    TRY(CheckNoRedirect(in.get(), src));
    UniqueFd out(TRY(Syscall("create " + dst, [&] {
      return ::openat(out_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0600);
    })));
    TRY(CopyData(in.get(), out.get(), src));
    TRY(SetMeta(out.get(), st, dst));
    return CopyXattrs(in.get(), out.get(), src);
  }
  if (S_ISLNK(st.st_mode)) {
    std::vector<char> target(static_cast<size_t>(st.st_size) + 2);
    ssize_t n = TRY(SyscallSize("readlink " + src, [&] {
      return ::readlinkat(upper_fd, name.c_str(), target.data(), target.size());
    }));
    if (static_cast<size_t>(n) >= target.size()) {
      return Err(Error(src + ": symlink changed while it was copied", EAGAIN));
    }
    std::string link(target.data(), static_cast<size_t>(n));
    TRY(Syscall("symlink " + dst, [&] { return ::symlinkat(link.c_str(), out_fd, name.c_str()); }));
    TRY(Syscall("chown " + dst, [&] {
      return ::fchownat(out_fd, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
    }));
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    TRY(Syscall("utimens " + dst,
                [&] { return ::utimensat(out_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW); }));
    return Ok();
  }
  if (S_ISFIFO(st.st_mode)) {
    TRY(Syscall("mkfifo " + dst, [&] { return ::mkfifoat(out_fd, name.c_str(), 0600); }));
    UniqueFd out(TRY(Syscall("open " + dst, [&] {
      return ::openat(out_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    })));
    // An O_PATH fd cannot fchown/fchmod: go through its /proc link.
    std::string proc = "/proc/self/fd/" + std::to_string(out.get());
    TRY(Syscall("chown " + dst, [&] { return ::chown(proc.c_str(), st.st_uid, st.st_gid); }));
    TRY(Syscall("chmod " + dst, [&] { return ::chmod(proc.c_str(), st.st_mode & 07777); }));
    return Ok();
  }
  return Ok();  // sockets and device nodes: a cell's /dev is its own
}

Result<UniqueFd> MakeOutDir(int out_fd, const std::string& name, const std::string& what) {
  TRY(Syscall("mkdir " + what, [&] { return ::mkdirat(out_fd, name.c_str(), 0700); }));
  return OpenDirAt(out_fd, name, what);
}

// A lower entry the upper leaves alone.
Status KeepLowerEntry(int lower_fd, int out_fd, const std::string& name, const Paths& p,
                      int depth) {
  std::string src = p.lower + "/" + name;
  std::string dst = p.out + "/" + name;
  struct stat st {};
  TRY(Syscall("stat " + src,
              [&] { return ::fstatat(lower_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW); }));
  if (!S_ISDIR(st.st_mode)) {
    // Without AT_SYMLINK_FOLLOW a symlink is linked itself.
    TRY(Syscall("link " + src + " to " + dst,
                [&] { return ::linkat(lower_fd, name.c_str(), out_fd, name.c_str(), 0); }));
    return Ok();
  }
  UniqueFd lower_sub = TRY(OpenDirAt(lower_fd, name, src));
  UniqueFd out_sub = TRY(MakeOutDir(out_fd, name, dst));
  TRY(MergeDir(lower_sub.get(), -1, out_sub.get(), p.Child(name), depth + 1));
  TRY(SetMeta(out_sub.get(), st, dst));
  return CopyXattrs(lower_sub.get(), out_sub.get(), src);
}

Status MergeDir(int lower_fd, int upper_fd, int out_fd, const Paths& p, int depth) {
  if (depth > kMaxMergeDepth) {
    return Err(Error(p.out + ": deeper than " + std::to_string(kMaxMergeDepth) + " levels", ELOOP));
  }
  std::set<std::string> named_by_upper;
  if (upper_fd >= 0) {
    std::vector<std::string> names;
    TRY(ForEachEntry(upper_fd, p.upper, [&](const std::string& name) {
      names.push_back(name);
      return Ok();
    }));
    for (const std::string& name : names) {
      named_by_upper.insert(name);
      std::string src = p.upper + "/" + name;
      struct stat st {};
      TRY(Syscall("stat " + src,
                  [&] { return ::fstatat(upper_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW); }));
      if (IsWhiteout(st)) continue;  // deleted in the template qube
      TRY(CheckIds(st, src));
      if (!S_ISDIR(st.st_mode)) {
        TRY(CopyUpperEntry(upper_fd, out_fd, name, st, p));
        continue;
      }
      UniqueFd upper_sub = TRY(OpenDirAt(upper_fd, name, src));
      TRY(CheckNoRedirect(upper_sub.get(), src));
      UniqueFd lower_sub;
      if (lower_fd >= 0 && !TRY(IsOpaque(upper_sub.get(), src))) {
        struct stat lst {};
        if (::fstatat(lower_fd, name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(lst.st_mode)) {
          lower_sub = TRY(OpenDirAt(lower_fd, name, p.lower + "/" + name));
        }
      }
      std::string dst = p.out + "/" + name;
      UniqueFd out_sub = TRY(MakeOutDir(out_fd, name, dst));
      TRY(MergeDir(lower_sub ? lower_sub.get() : -1, upper_sub.get(), out_sub.get(), p.Child(name),
                   depth + 1));
      TRY(SetMeta(out_sub.get(), st, dst));
      TRY(CopyXattrs(upper_sub.get(), out_sub.get(), src));
    }
  }
  if (lower_fd < 0) return Ok();
  std::vector<std::string> kept;
  TRY(ForEachEntry(lower_fd, p.lower, [&](const std::string& name) {
    if (named_by_upper.count(name) == 0) kept.push_back(name);
    return Ok();
  }));
  for (const std::string& name : kept) TRY(KeepLowerEntry(lower_fd, out_fd, name, p, depth));
  return Ok();
}

}  // namespace

Status MergeOverlayLayers(int lower_fd, int upper_fd, int out_fd, const std::string& lower_path,
                          const std::string& upper_path, const std::string& out_path) {
  Paths p{lower_path, upper_path, out_path};
  struct stat st {};
  TRY(Syscall("stat " + upper_path, [&] { return ::fstat(upper_fd, &st); }));
  TRY(CheckIds(st, upper_path));
  TRY(MergeDir(lower_fd, upper_fd, out_fd, p, 0));
  return SetMeta(out_fd, st, out_path);
}

}  // namespace tessera::storage::internal
