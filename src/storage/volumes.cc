// Private volumes, per-run scratch directories and whole-qube removal.
//
// Ownership rule: a private volume is written by the qube, so what the qube
// creates there is owned (on the host) by the qube's mapped ids. The top
// directories are created accordingly: private/home and private/rw belong to
// the qube's root (range base), private/home/user to its uid/gid 1000. The
// qube's directory S/qubes/<name> and private/ itself stay host-root 0700:
// the cell bind-mounts home and rw from the host side, and nobody else on the
// host needs to browse them. Templates are the opposite: host-root owned and
// shown root-owned inside through idmapped mounts (never chowned).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/fs.h"
#include "common/syscall.h"
#include "storage/internal.h"
#include "storage/private_volume.h"
#include "storage/storage.h"

namespace tessera::storage {
namespace {

constexpr uid_t kQubeUserId = 1000;  // "user" in the templates' /etc/passwd

}  // namespace

Status EnsurePrivateVolume(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  IdRange ids = TRY(AllocateIdRange(layout, qube));
  return EnsurePrivateVolume(layout, qube, ids);
}

Status EnsurePrivateVolume(const Layout& layout, const std::string& qube, const IdRange& ids) {
  TRY(ValidateName(qube));
  if (ids.count <= kQubeUserId) {
    return Err(Error("qube " + qube + ": id range too small for uid 1000", EINVAL));
  }
  std::string qubes_dir = layout.state_dir + "/qubes";
  UniqueFd qubes_fd = TRY(internal::EnsurePrivateStateDir(qubes_dir));
  std::string qube_dir = layout.QubeDir(qube);
  TRY(internal::EnsureDirAt(qubes_fd.get(), qube, 0700, 0, 0, qube_dir));
  UniqueFd qube_fd = TRY(internal::OpenDirAt(qubes_fd.get(), qube, qube_dir));

  uid_t root = ids.base;
  uid_t user = ids.base + kQubeUserId;
  std::string priv = layout.PrivateVolume(qube);
  TRY(internal::EnsureDirAt(qube_fd.get(), "private", 0700, root, root, priv));
  UniqueFd priv_fd = TRY(internal::OpenDirAt(qube_fd.get(), "private", priv));

  TRY(internal::EnsureDirAt(priv_fd.get(), "home", 0755, root, root, priv + "/home"));
  TRY(internal::EnsureDirAt(priv_fd.get(), "rw", 0755, root, root, priv + "/rw"));
  // An app qube's /usr/local (as in Qubes: installed there, a program or an
  // RPC service survives restarts without changing the template).
  TRY(internal::EnsureDirAt(priv_fd.get(), "usrlocal", 0755, root, root, priv + "/usrlocal"));
  // Existing content is the qube's: O_NOFOLLOW refuses a home the qube turned
  // into a symlink rather than creating "user" wherever it points.
  UniqueFd home_fd = TRY(internal::OpenDirAt(priv_fd.get(), "home", priv + "/home"));
  TRY(internal::EnsureDirAt(home_fd.get(), "user", 0700, user, user, priv + "/home/user"));
  return Ok();
}

Status SecureStateDirs(const Layout& layout) {
  TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/templates"));
  TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/qubes"));
  return Ok();
}

Result<std::string> CreateScratch(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  std::string cells = layout.runtime_dir + "/cells";
  TRY(MakeDirs(cells, 0755));
  std::string dir = layout.ScratchDir(qube);
  TRY_CTX(RemoveTree(dir), "remove leftover scratch of qube " + qube);
  UniqueFd cells_fd = TRY(internal::OpenDir(cells));
  bool created = TRY(internal::EnsureDirAt(cells_fd.get(), qube, 0700, 0, 0, dir));
  if (!created) return Err(Error(dir + ": appeared while being created", EEXIST));
  return dir;
}

Status RemoveScratch(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  return RemoveTree(layout.ScratchDir(qube));
}

Status DestroyQubeStorage(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  // Files first, id range last: if a removal fails (a mount still inside), the
  // range stays recorded, so its leftovers can never surface in another qube.
  TRY_CTX(RemoveScratch(layout, qube), "destroy storage of qube " + qube);
  TRY_CTX(ClosePrivateVolume(layout, qube), "destroy storage of qube " + qube);
  TRY_CTX(RemoveTree(layout.QubeDir(qube)), "destroy storage of qube " + qube);
  TRY_CTX(ReleaseIdRange(layout, qube), "destroy storage of qube " + qube);
  return Ok();
}

}  // namespace tessera::storage
