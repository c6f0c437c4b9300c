#include "daemon/recovery.h"

#include <algorithm>

namespace tessera::daemon {

bool IsDisposableName(const std::string& name) {
  if (name.size() < 5 || name.compare(0, 4, "disp") != 0) return false;
  return std::all_of(name.begin() + 4, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<RecoveryStep> PlanRecovery(const RecoveryInput& in) {
  std::vector<RecoveryStep> steps;
  std::set<std::string> planned;
  auto add = [&](const std::string& qube, RecoveryAction action, const QubeRecord& record,
                 std::string reason) {
    steps.push_back({qube, action, record, std::move(reason)});
    planned.insert(qube);
  };
  for (const auto& [name, record] : in.saved.qubes) {
    bool configured = in.configured.count(name) != 0;
    bool dynamic = record.disposable != DisposableOwner::kNone;
    if (dynamic && !configured) {
      // A disposable for one command died with the connection that wanted
      // it; an explicitly started one lives on if it still runs.
      if (record.disposable == DisposableOwner::kStart && record.state == QubeState::kRunning) {
        add(name, RecoveryAction::kAdopt, record, "disposable still running");
      } else {
        add(name, RecoveryAction::kDestroy, record,
            "disposable left in state " + std::string(ToString(record.state)));
      }
      continue;
    }
    if (!configured) {
      add(name, RecoveryAction::kForget, record, "no longer in the system description");
      continue;
    }
    switch (record.state) {
      case QubeState::kRunning:
        add(name, RecoveryAction::kAdopt, record, "running");
        break;
      case QubeState::kStarting:
      case QubeState::kStopping:
        // An interrupted transition: finished towards halted (a half-started
        // qube is not trusted). Its private volume stays.
        add(name, RecoveryAction::kCleanup, record,
            "interrupted while " + std::string(ToString(record.state)));
        break;
      case QubeState::kFailed:
        add(name, RecoveryAction::kCleanupFailed, record, "failed before the restart");
        break;
      case QubeState::kHalted:
        break;
    }
  }
  // Runtime state the state file does not know (a crash between creating it
  // and recording it).
  for (const std::string& name : in.leftovers) {
    if (planned.count(name)) continue;
    bool orphan_disposable = IsDisposableName(name) && in.configured.count(name) == 0;
    add(name, orphan_disposable ? RecoveryAction::kDestroy : RecoveryAction::kCleanup, {},
        "leftover runtime state");
  }
  // Disposable storage nobody owns (a crash between making the storage and
  // recording the disposable).
  for (const std::string& name : in.storage) {
    if (planned.count(name) || !IsDisposableName(name) || in.configured.count(name)) continue;
    add(name, RecoveryAction::kDestroy, {}, "leftover disposable storage");
  }
  return steps;
}

}  // namespace tessera::daemon
