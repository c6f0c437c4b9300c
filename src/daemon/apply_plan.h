#pragma once
// What `apply` does, in order, as a pure plan from the description diff and
// the qubes' current states (unit-tested without root):
//   0. stop the disposables the diff lets go (preloaded ones of a changed
//      template, beyond a lowered preload count, every one of a removed
//      template), before the qubes they may depend on (their netvm);
//   1. stop running qubes that were removed;
//   2. stop running qubes whose change needs a restart, as the restart
//      policy says (`--restart-on-change`): always; only those running no
//      command (if-idle); or never — the others keep running with their old
//      settings, which take effect at their next start ("restart pending");
//   3. switch to the new description;
//   4. start the restarted ones again, then added (or newly) autostart qubes;
//      the preloaded pool refills from the new description by itself.

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/model.h"
#include "daemon/diff.h"
#include "daemon/state.h"

namespace tessera::daemon {

// kPending: a running qube whose change needs a restart keeps running with
// its old settings (the restart policy said no); nothing is done to it.
enum class ApplyAction { kStop, kRestart, kStart, kPending };

// What an apply does to a running qube whose change needs a restart
// (services.tessera.restartOnChange; docs/NIXOS.md).
enum class RestartOnChange {
  kNever,   // Qubes semantics: the change takes effect at its next start
  kIfIdle,  // restarted when no command runs in it, else as kNever
  kAlways,  // restarted
};
Result<RestartOnChange> ParseRestartOnChange(std::string_view text);  // never|if-idle|always
std::string_view ToString(RestartOnChange policy);

struct ApplyStep {
  ApplyAction action;
  std::string qube;
  bool operator==(const ApplyStep&) const = default;
};

// `busy`: the running qubes a command runs in (for kIfIdle).
std::vector<ApplyStep> PlanApply(const SystemDiff& diff,
                                 const std::map<std::string, QubeState>& states,
                                 const config::System& next,
                                 RestartOnChange policy = RestartOnChange::kAlways,
                                 const std::set<std::string>& busy = {});

std::string_view ToString(ApplyAction action);
nlohmann::json PlanToJson(const std::vector<ApplyStep>& plan);

}  // namespace tessera::daemon
