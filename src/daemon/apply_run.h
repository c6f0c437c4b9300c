#pragma once
// Carrying out `system.apply` on the qube manager: the diff against what runs
// now (the disposables included), the plan (apply_plan.h), then its steps in
// order — stops, the switch to the new description, starts — each result
// recorded. The admin method (admin_methods.cc) validates, authorises and
// answers; this part is unit-tested on a fake backend.
//
//   ApplyProposal proposal = ProposeApply(manager, std::move(next));
//   show(DiffToJson(proposal.diff), PlanToJson(proposal.plan));
//   CarryOutApply(manager, std::move(proposal), source, grace,
//                 [](ApiResult<ApplyOutcome> outcome) { reply(...); });

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/model.h"
#include "daemon/apply_plan.h"
#include "daemon/diff.h"
#include "daemon/qube_manager.h"

namespace tessera::daemon {

struct ApplyProposal {
  config::System next;
  SystemDiff diff;
  std::vector<ApplyStep> plan;
};

struct ApplyOutcome {
  nlohmann::json done = nlohmann::json::array();  // [{action, qube, ok, error?}]
  bool ok = true;
};

// What applying `next` would do, given what runs now (and, for kIfIdle,
// which qubes a command runs in).
ApplyProposal ProposeApply(const QubeManager& manager, config::System next,
                           RestartOnChange policy = RestartOnChange::kAlways);

// Carries the proposal out (on the loop; the steps are asynchronous) and calls
// `finished` when the last step is done, or at once with `busy` while another
// apply is being carried out. From the first step on, the preloaded pool
// makes nothing from the old description and hands out none of the
// disposables the apply replaces, so a disposable taken after the apply always
// has the new settings.
// `after_adopt`, if given, runs right after the switch to the new description
// (the removed qubes are halted and forgotten by then: the daemon keeps their
// volumes as orphans there); the entries it reports join `done`, and one with
// "ok": false makes the outcome not ok.
using AfterAdopt =
    std::function<void(const SystemDiff& diff, std::function<void(nlohmann::json entries)> done)>;
void CarryOutApply(QubeManager& manager, ApplyProposal proposal, std::string source,
                   std::chrono::milliseconds grace,
                   std::function<void(ApiResult<ApplyOutcome>)> finished,
                   AfterAdopt after_adopt = nullptr);

}  // namespace tessera::daemon
