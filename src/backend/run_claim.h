#pragma once
// Leftovers of daemon-less runs (`tessera cell run`) killed with SIGKILL: such
// a run holds a claim on the qube it launched, R/cell-run/<name>, locked
// (flock) for as long as the run's process lives. The kernel drops the lock
// when the process dies however it dies, so a claim nobody holds marks what a
// killed run left behind: SweepDeadRuns removes it (the backend's runtime
// state and, for a disposable, its storage) and then the claim.
//
//   RunClaim claim = TRY(RunClaim::Take(layout, plan.spec.name, Disposable::kYes));
//   ... Launch, Exec, Retire ...
//   claim.Release();  // the run cleaned up after itself
//
//   for (const SweptRun& s : SweepDeadRuns(backend, layout)) ...  // next run, `cell cleanup`

#include <sys/types.h>

#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/storage.h"

namespace tessera::backend {

enum class Disposable { kNo, kYes };

class RunClaim {
 public:
  // Creates R/cell-run/<name>, locked, before anything of the run exists.
  // Fails with EEXIST while a live run claims the same qube.
  static Result<RunClaim> Take(const storage::Layout& layout, const std::string& name,
                               Disposable disposable);
  RunClaim(RunClaim&&) = default;
  RunClaim& operator=(RunClaim&&) = default;
  // Dropping a claim without Release keeps the file: the next sweep treats
  // the run as killed (what is left of it, if anything, is removed).
  ~RunClaim() = default;
  // Records the launched instance's pid: a sweep then stops that instance
  // if it still runs, but leaves alone one of the same name started since
  // by someone else (tesserad, another run).
  Status SetInstance(pid_t pid);
  // The run left nothing behind: the claim goes.
  void Release();

 private:
  RunClaim() = default;
  std::string path_;
  UniqueFd fd_;
};

struct SweptRun {
  std::string name;
  Status result;  // what removing its leftovers gave
  // A cell of that name runs, started by someone else: left alone (only the
  // claim was dropped).
  bool left_running = false;
};

// Removes the leftovers of every claimed run whose process is gone; claims of
// live runs are left alone. One entry per dead run found.
std::vector<SweptRun> SweepDeadRuns(Backend& backend, const storage::Layout& layout);

// R/cell-run: where claims live.
std::string RunClaimDir(const storage::Layout& layout);

}  // namespace tessera::backend
