#pragma once
// What `apply` does, in order, as a pure plan from the description diff and
// the qubes' current states (unit-tested without root):
//   0. stop the disposables the diff lets go (preloaded ones of a changed
//      template, beyond a lowered preload count, every one of a removed
//      template), before the qubes they may depend on (their netvm);
//   1. stop running qubes that were removed;
//   2. stop running qubes whose change needs a restart;
//   3. switch to the new description;
//   4. start the restarted ones again, then added (or newly) autostart qubes;
//      the preloaded pool refills from the new description by itself.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/model.h"
#include "daemon/diff.h"
#include "daemon/state.h"

namespace tessera::daemon {

enum class ApplyAction { kStop, kRestart, kStart };

struct ApplyStep {
  ApplyAction action;
  std::string qube;
  bool operator==(const ApplyStep&) const = default;
};

std::vector<ApplyStep> PlanApply(const SystemDiff& diff,
                                 const std::map<std::string, QubeState>& states,
                                 const config::System& next);

std::string_view ToString(ApplyAction action);
nlohmann::json PlanToJson(const std::vector<ApplyStep>& plan);

}  // namespace tessera::daemon
