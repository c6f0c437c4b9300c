// A qube's credentials copied into its scratch and mounted read-only
// (credentials.h).

#include "cell/credentials.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "cell/start_steps.h"
#include "common/fs.h"
#include "common/syscall.h"

namespace tessera::cell {
namespace {

constexpr uid_t kQubeUserGid = 1000;  // the qube user's group (storage/template_user.cc)

}  // namespace

Result<UniqueFd> StageCredentials(const std::map<std::string, std::string>& credentials,
                                  const std::string& scratch, const storage::IdRange& ids) {
  std::string dir = scratch + "/credentials";
  const uid_t owner = ids.base;
  const gid_t group = ids.base + kQubeUserGid;
  TRY(Syscall("mkdir " + dir, [&] { return ::mkdir(dir.c_str(), 0700); }));
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_fd) return Err(Error::FromErrno("open " + dir));
  for (const auto& [name, host_path] : credentials) {
    std::string what = "credential " + name + " (" + host_path + ")";
    // The path is the administrator's (it may be a symlink, as agenix's are).
    auto content = ReadRegularFile(host_path, kMaxCredentialBytes);
    if (!content) return Err(std::move(content).error().Wrap(what));
    UniqueFd out(::openat(dir_fd.get(), name.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400));
    if (!out) return Err(Error::FromErrno(what + ": create " + dir + "/" + name));
    TRY_CTX(WriteAll(out.get(), *content, dir + "/" + name), what);
    TRY(Syscall("chown " + dir + "/" + name, [&] { return ::fchown(out.get(), owner, group); }));
    TRY(Syscall("chmod " + dir + "/" + name, [&] { return ::fchmod(out.get(), 0440); }));
  }
  TRY(Syscall("chown " + dir, [&] { return ::fchown(dir_fd.get(), owner, group); }));
  TRY(Syscall("chmod " + dir, [&] { return ::fchmod(dir_fd.get(), 0750); }));
  UniqueFd tree = TRY(CloneTree(dir_fd.get(), "", false, dir));
  TRY(SetMountAttr(tree.get(),
                   MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                   false));
  return tree;
}

}  // namespace tessera::cell
