// Directories made once and atomically (a standalone root, a disposable's
// private volume): under a flock on .<name>.lock beside it, leftovers of a
// crashed attempt (.<name>.tmp-*) are removed, a fresh .<name>.tmp-XXXXXX is
// filled and renamed to <name> with RENAME_NOREPLACE. A failure removes the
// temporary directory; a crash leaves only a hidden one that the next attempt
// removes. <name> therefore either does not exist or is complete.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "storage/internal.h"
#include "storage/storage.h"

namespace tessera::storage::internal {
namespace {

// True if `name` below dir_fd is a directory, false if it does not exist; an
// error if it is anything else (a symlink is never followed).
Result<bool> DirExists(int dir_fd, const std::string& name, const std::string& path) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    return Err(Error::FromErrno("stat " + path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Err(Error(path + ": exists and is not a directory (refusing to use it)", ENOTDIR));
  }
  return true;
}

}  // namespace

Status RemoveLeftovers(const std::string& dir, const std::vector<std::string>& prefixes) {
  std::vector<std::string> leftovers;
  UniqueFd dir_fd = TRY(OpenDir(dir));
  TRY(ForEachEntry(dir_fd.get(), dir, [&](const std::string& name) {
    for (const std::string& prefix : prefixes) {
      if (name.rfind(prefix, 0) == 0) {
        leftovers.push_back(name);
        break;
      }
    }
    return Ok();
  }));
  for (const std::string& name : leftovers) {
    Log(LogLevel::kInfo, "removing leftover of an interrupted creation", {{"path", dir + "/" + name}});
    TRY(RemoveTree(dir + "/" + name));
  }
  return Ok();
}

Result<UniqueFd> LockFileAt(int dir_fd, const std::string& name, const std::string& path) {
  UniqueFd fd(TRY(Syscall("open " + path, [&] {
    return ::openat(dir_fd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  })));
  TRY(Syscall("flock " + path, [&] { return ::flock(fd.get(), LOCK_EX); }));
  return fd;
}

Result<bool> MakeDirOnce(int dir_fd, const std::string& dir_path, const std::string& name,
                         const std::function<Status(int fd, const std::string& path)>& fill) {
  std::string final_path = dir_path + "/" + name;
  if (TRY(DirExists(dir_fd, name, final_path))) return false;  // the usual case

  UniqueFd lock = TRY(LockFileAt(dir_fd, "." + name + ".lock", dir_path + "/." + name + ".lock"));
  if (TRY(DirExists(dir_fd, name, final_path))) return false;  // made while we waited
  std::string tmp_prefix = "." + name + ".tmp-";
  TRY(RemoveLeftovers(dir_path, {tmp_prefix}));

  std::string tmp = dir_path + "/" + tmp_prefix + "XXXXXX";
  if (::mkdtemp(tmp.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + dir_path));
  ScopeGuard cleanup([&] {
    auto removed = RemoveTree(tmp);
    if (!removed) {
      Log(LogLevel::kWarn, "could not remove a failed creation",
          {{"path", tmp}, {"error", removed.error().ToString()}});
    }
  });
  UniqueFd tmp_fd = TRY(OpenDir(tmp, O_NOFOLLOW));
  TRY(fill(tmp_fd.get(), tmp));
  std::string tmp_base = tmp.substr(dir_path.size() + 1);
  TRY(Syscall("rename " + tmp + " to " + final_path, [&] {
    return ::renameat2(dir_fd, tmp_base.c_str(), dir_fd, name.c_str(), RENAME_NOREPLACE);
  }));
  cleanup.Dismiss();
  ::fsync(dir_fd);
  return true;
}

}  // namespace tessera::storage::internal
