#include "backend/run_claim.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "backend/launcher.h"
#include "common/fs.h"
#include "common/names.h"
#include "common/scope_guard.h"
#include "common/syscall.h"

namespace tessera::backend {
namespace {

constexpr std::string_view kDisposableText = "disposable\n";
constexpr std::string_view kQubeText = "qube\n";

}  // namespace

std::string RunClaimDir(const storage::Layout& layout) { return layout.runtime_dir + "/cell-run"; }

Result<RunClaim> RunClaim::Take(const storage::Layout& layout, const std::string& name,
                                Disposable disposable) {
  const std::string dir = RunClaimDir(layout);
  TRY(MakeDirs(dir, 0700));
  // Written and locked under a temporary name, then linked into place: a
  // sweep never sees the claim unlocked (it would take it for a dead run's).
  std::string tmp = dir + "/.claim-XXXXXX";
  UniqueFd fd(
      TRY(Syscall("create a claim in " + dir, [&] { return ::mkostemp(tmp.data(), O_CLOEXEC); })));
  auto remove_tmp = ScopeGuard([&] { ::unlink(tmp.c_str()); });
  TRY(Syscall("flock " + tmp, [&] { return ::flock(fd.get(), LOCK_EX | LOCK_NB); }));
  TRY(WriteAll(fd.get(), disposable == Disposable::kYes ? kDisposableText : kQubeText, tmp));
  RunClaim claim;
  claim.path_ = dir + "/" + name;
  // link, not rename: it fails instead of replacing another run's claim.
  if (::link(tmp.c_str(), claim.path_.c_str()) != 0) {
    if (errno == EEXIST) {
      return Err(Error(name + " is claimed by another run (" + claim.path_ + ")", EBUSY));
    }
    return Err(Error::FromErrno("claim " + name + " (" + claim.path_ + ")"));
  }
  claim.fd_ = std::move(fd);
  return claim;
}

Status RunClaim::SetInstance(pid_t pid) {
  const std::string line = std::to_string(pid) + "\n";
  const off_t end = ::lseek(fd_.get(), 0, SEEK_END);
  if (end < 0) return Err(Error::FromErrno("seek " + path_));
  return WriteAll(fd_.get(), line, path_);
}

void RunClaim::Release() {
  if (!fd_) return;
  ::unlink(path_.c_str());
  fd_ = UniqueFd();
}

std::vector<SweptRun> SweepDeadRuns(Backend& backend, const storage::Layout& layout) {
  std::vector<SweptRun> swept;
  const std::string dir = RunClaimDir(layout);
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      // ".claim-*" are claims being made; anything not a qube name is not ours.
      if (e->d_name[0] != '.' && IsValidName(e->d_name)) names.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) continue;                                        // released meanwhile
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // its run is alive
    // Locked by us now; a claim released and taken anew meanwhile is another
    // file (unlinked and linked again): only the one still at `path` counts.
    struct stat held {
    }, current{};
    if (::fstat(fd.get(), &held) != 0 || ::stat(path.c_str(), &current) != 0 ||
        held.st_ino != current.st_ino || held.st_dev != current.st_dev) {
      continue;
    }
    // "disposable\n" or "qube\n", then the instance's pid once launched.
    char text[64] = {};
    const ssize_t n = ::pread(fd.get(), text, sizeof(text) - 1, 0);
    const std::string_view content(text, n > 0 ? static_cast<size_t>(n) : 0);
    const bool disposable = content.starts_with(kDisposableText);
    const std::string_view rest =
        content.substr(std::min(content.size(), (disposable ? kDisposableText : kQubeText).size()));
    const pid_t claimed = static_cast<pid_t>(std::strtol(std::string(rest).c_str(), nullptr, 10));
    if (auto running = backend.Adopt(name); running && (*running)->pid() != claimed) {
      // Not the killed run's cell: whoever started it owns it and its storage.
      ::unlink(path.c_str());
      swept.push_back({name, Ok(), /*left_running=*/true});
      continue;
    }
    Status result = CleanupLeftovers(backend, layout, name, disposable);
    if (result) ::unlink(path.c_str());
    swept.push_back({name, std::move(result), false});
  }
  return swept;
}

}  // namespace tessera::backend
