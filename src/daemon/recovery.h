#pragma once
// Recovery after a restart (possibly after SIGKILL at any point), as a pure
// plan: from the state file, the configured qubes, what the backend still has
// on the host and which qube storage exists, decide for each qube what to do.
// The qube manager carries the plan out. Unit-tested without root.
//
//   RecoveryPlan plan = PlanRecovery({.saved = state, .configured = names,
//                                     .leftovers = backend.Leftovers(),
//                                     .storage = storage::ListQubeStorage(layout)});
//
// Rules: a running configured qube is adopted (if that fails it is cleaned up
// and marked failed); an interrupted transition (starting, stopping) ends
// halted; a disposable that served one command, was preloaded, or was being
// made or torn down is destroyed (an explicitly started one still running is
// adopted); anything the backend has that the state does not know is cleaned
// up; disposable storage nobody owns is destroyed. The private volume of a
// configured, non-disposable qube is never removed.

#include <set>
#include <string>
#include <vector>

#include "daemon/state.h"

namespace tessera::daemon {

enum class RecoveryAction {
  kAdopt,          // re-attach; on failure clean up and mark failed (configured) or destroy
  kCleanup,        // remove the backend's leftovers; the qube ends halted
  kCleanupFailed,  // remove the leftovers; keep the recorded failure
  kDestroy,        // a disposable: leftovers and storage removed, record forgotten
  kForget,         // a qube no longer configured: leftovers removed, record forgotten
};

struct RecoveryStep {
  std::string qube;
  RecoveryAction action = RecoveryAction::kCleanup;
  QubeRecord record;  // what the state file said (empty for unknown leftovers)
  std::string reason;
};

struct RecoveryInput {
  DaemonState saved;
  std::set<std::string> configured;
  std::vector<std::string> leftovers;  // backend runtime state found on the host
  std::vector<std::string> storage;    // qubes with storage (S/qubes/<name>)
};

// Steps in a stable order: every recorded qube, then unknown leftovers, then
// orphaned disposable storage.
std::vector<RecoveryStep> PlanRecovery(const RecoveryInput& input);

// dispNNNN: the names tesserad gives disposables (never a configured name
// of that form, see PlanRecovery).
bool IsDisposableName(const std::string& name);

}  // namespace tessera::daemon
