// ShiftTreeOwnership: see id_shift.h for the rule. Each entry is opened
// O_PATH|O_NOFOLLOW and everything afterwards goes through that fd (fstat,
// fchownat AT_EMPTY_PATH, chmod through /proc/self/fd), so a name swapped for
// a symlink between two steps cannot redirect a chown or chmod outside the
// tree. Directories are reopened from their O_PATH fd to be read.

#include "storage/id_shift.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/internal.h"

namespace tessera::storage {
namespace {

bool InRange(uid_t id, uid_t base) {
  return id >= base && static_cast<uint64_t>(id) < static_cast<uint64_t>(base) + kIdsPerQube;
}

// Shifts the owner of the file open as `fd` (stat'ed as `st`) and restores
// its mode bits when chown could have cleared them.
Status ShiftOne(int fd, const struct stat& st, const IdShift& shift, const std::string& path) {
  uid_t uid = TRY(shift.Map(st.st_uid, path));
  gid_t gid = TRY(shift.Map(st.st_gid, path));
  if (uid == st.st_uid && gid == st.st_gid) return Ok();
  TRY(Syscall("chown " + path, [&] { return ::fchownat(fd, "", uid, gid, AT_EMPTY_PATH); }));
  if (S_ISLNK(st.st_mode)) return Ok();  // a symlink has no mode of its own
  // fchmod does not take O_PATH fds; the /proc link reaches the same inode.
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  TRY(Syscall("chmod " + path, [&] { return ::chmod(proc.c_str(), st.st_mode & 07777); }));
  return Ok();
}

class Shifter {
 public:
  Shifter(const IdShift& shift, dev_t dev) : shift_(shift), dev_(dev) {}

  // Shifts everything below the directory `dir_fd`, not the directory itself.
  Status Entries(int dir_fd, const std::string& path, int depth) {
    if (depth >= kMaxShiftDepth) {
      return Err(Error(path + ": deeper than " + std::to_string(kMaxShiftDepth) + " levels",
                       ELOOP));
    }
    return internal::ForEachEntry(dir_fd, path, [&](const std::string& name) {
      return Entry(dir_fd, name, path + "/" + name, depth);
    });
  }

 private:
  Status Entry(int dir_fd, const std::string& name, const std::string& path, int depth) {
    UniqueFd fd(TRY(Syscall("open " + path, [&] {
      return ::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    })));
    struct stat st {};
    TRY(Syscall("stat " + path, [&] { return ::fstat(fd.get(), &st); }));
    if (st.st_dev != dev_) {
      return Err(Error(path + ": on another file system; refusing to shift across it", EXDEV));
    }
    if (S_ISDIR(st.st_mode)) {
      // The readable fd replaces the O_PATH one (two fds per level, not three).
      fd.reset(TRY(Syscall("open " + path, [&] {
        return ::openat(fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      })));
      TRY(Entries(fd.get(), path, depth + 1));
    }
    return ShiftOne(fd.get(), st, shift_, path);
  }

  IdShift shift_;
  dev_t dev_;
};

}  // namespace

Result<uid_t> IdShift::Map(uid_t id, const std::string& path) const {
  if (InRange(id, to_base)) return id;
  if (InRange(id, from_base)) return to_base + (id - from_base);
  return Err(Error(path + ": owned by id " + std::to_string(id) + ", outside both " +
                       std::to_string(from_base) + ".." +
                       std::to_string(uint64_t{from_base} + kIdsPerQube - 1) + " and " +
                       std::to_string(to_base) + ".." +
                       std::to_string(uint64_t{to_base} + kIdsPerQube - 1) +
                       " (refusing to leave a file of a foreign id)",
                   EPERM));
}

Status ShiftTreeOwnership(int dir_fd, const std::string& path, const IdShift& shift) {
  UniqueFd top(TRY(Syscall("open " + path, [&] {
    return ::openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  })));
  struct stat st {};
  TRY(Syscall("stat " + path, [&] { return ::fstat(top.get(), &st); }));
  Shifter shifter(shift, st.st_dev);
  TRY(shifter.Entries(dir_fd, path, 0));
  return ShiftOne(top.get(), st, shift, path);
}

Status ShiftPrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids) {
  TRY(ValidateName(qube));
  if (ids.base < kFirstHostId || ids.count < kIdsPerQube) {
    return Err(Error("qube " + qube + ": private volume needs a full id range at or above " +
                         std::to_string(kFirstHostId),
                     EINVAL));
  }
  std::string path = layout.PrivateVolume(qube);
  UniqueFd qube_fd = TRY(internal::OpenDir(layout.QubeDir(qube), O_NOFOLLOW));
  UniqueFd fd = TRY(internal::OpenDirAt(qube_fd.get(), "private", path));
  struct stat st {};
  TRY(Syscall("stat " + path, [&] { return ::fstat(fd.get(), &st); }));
  if (st.st_uid == ids.base) return Ok();  // shifted (the top is shifted last)
  if (st.st_uid != 0) {
    return Err(Error("private volume " + path + " is owned by uid " + std::to_string(st.st_uid) +
                         ", neither root nor the qube's id base " + std::to_string(ids.base),
                     EPERM));
  }
  return ShiftTreeOwnership(fd.get(), path, IdShift{.from_base = 0, .to_base = ids.base});
}

}  // namespace tessera::storage
