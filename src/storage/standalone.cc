// Standalone qubes: a persistent root of their own at S/qubes/<name>/root/,
// made once from a template (or from busybox) and then the qube's alone.
//
// Ownership: unlike a template, the tree is shifted on disk into the qube's id
// range (uid n inside = host base + n), exactly like a private volume. A cell
// mounts it WITHOUT an idmap; inside the qube's user namespace it then shows
// root-owned. Nothing the qube writes there is owned by a host id outside its
// range, so a setuid file it plants is never host-root setuid.
//
// Creation protocol (atomic, internal::MakeDirOnce): under an exclusive flock
// on S/qubes/<name>/.root.lock, remove leftovers of a crashed creation
// (.root.tmp-*), fill a fresh .root.tmp-XXXXXX, shift it, and rename it to
// root (RENAME_NOREPLACE). A failure removes the temporary directory; a crash
// leaves only a hidden one that the next call removes. `root` therefore
// either does not exist or is complete.

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/log.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/generations.h"
#include "storage/id_shift.h"
#include "storage/internal.h"
#include "storage/storage.h"
#include "storage/template_internal.h"

namespace tessera::storage {
namespace {

Status Populate(const Layout& layout, const std::string& qube, const std::string& template_name,
                const IdRange& ids, const std::function<Status()>& before_publish, int tmp_fd,
                const std::string& tmp) {
  if (!template_name.empty()) {
    // Fails with ENOENT naming the template if it does not exist.
    TRY(ReadTemplateInfo(layout, template_name));
    // Recorded as used while it is copied, so no commit collects it meanwhile.
    Generation g = TRY(AcquireGeneration(layout, template_name, qube, GenerationRole::kApp));
    Status copied = internal::CopyTreeShifted(g.path, tmp_fd, tmp,
                                              IdShift{.from_base = 0, .to_base = ids.base});
    Status released = ReleaseGenerations(layout, qube);
    TRY(copied);
    TRY(released);
  } else {
    std::string detail;
    TRY(internal::BuildBusyboxTree(tmp_fd, tmp, &detail));
    TRY(Syscall("chmod " + tmp, [&] { return ::fchmod(tmp_fd, 0755); }));
    TRY(ShiftTreeOwnership(tmp_fd, tmp, IdShift{.from_base = 0, .to_base = ids.base}));
  }
  if (before_publish) TRY(before_publish());
  ::syncfs(tmp_fd);
  return Ok();
}

}  // namespace

Status EnsureStandaloneRoot(const Layout& layout, const std::string& qube,
                            const std::string& template_name, const IdRange& ids,
                            const std::function<Status()>& before_publish) {
  TRY(ValidateName(qube));
  if (!template_name.empty()) TRY(ValidateName(template_name, "template"));
  if (ids.base < kFirstHostId || ids.count < kIdsPerQube) {
    return Err(Error("qube " + qube + ": standalone root needs a full id range at or above " +
                         std::to_string(kFirstHostId) + " (got base " + std::to_string(ids.base) +
                         ", count " + std::to_string(ids.count) + ")",
                     EINVAL));
  }
  std::string qube_dir = layout.QubeDir(qube);
  UniqueFd qubes_fd = TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/qubes"));
  TRY(internal::EnsureDirAt(qubes_fd.get(), qube, 0700, 0, 0, qube_dir));
  UniqueFd qube_fd = TRY(internal::OpenDirAt(qubes_fd.get(), qube, qube_dir));
  auto fill = [&](int tmp_fd, const std::string& tmp) -> Status {
    TRY_CTX(Populate(layout, qube, template_name, ids, before_publish, tmp_fd, tmp),
            "create standalone root of qube " + qube +
                (template_name.empty() ? " from busybox" : " from template " + template_name));
    return Ok();
  };
  bool made = TRY(internal::MakeDirOnce(qube_fd.get(), qube_dir, "root", fill));
  if (made) {
    Log(LogLevel::kInfo, "standalone root created",
        {{"qube", qube}, {"from", template_name.empty() ? "busybox" : template_name}});
  }
  return Ok();
}

}  // namespace tessera::storage
