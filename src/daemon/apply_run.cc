#include "daemon/apply_run.h"

#include <memory>

namespace tessera::daemon {

using nlohmann::json;

ApplyProposal ProposeApply(const QubeManager& manager, config::System next,
                           RestartOnChange policy) {
  ApplyProposal p;
  p.diff = DiffSystems(manager.config().system(), next, manager.Disposables());
  p.plan = PlanApply(p.diff, manager.States(), next, policy, manager.Busy());
  p.next = std::move(next);
  return p;
}

namespace {

// One apply in progress: its steps run one after another, each continuing
// from the callback of the one before.
struct ApplyState {
  QubeManager& manager;
  ApplyProposal proposal;
  std::string source;
  std::chrono::milliseconds grace;
  std::function<void(ApiResult<ApplyOutcome>)> finished;
  std::vector<std::function<void(std::function<void()>)>> steps;
  size_t next_step = 0;
  ApplyOutcome outcome;

  void Record(const std::string& action, const std::string& qube, const ApiResult<json>& r) {
    json entry = {{"action", action}, {"qube", qube}, {"ok", r.has_value()}};
    if (!r) {
      entry["error"] = r.error().message;
      outcome.ok = false;
    }
    outcome.done.push_back(entry);
  }
};

void RunNext(const std::shared_ptr<ApplyState>& state) {
  if (state->next_step == state->steps.size()) {
    state->manager.EndApply();
    // Every step holds `state` (it continues from it): dropped here, or the
    // state would keep itself alive for ever. None of them is running: each
    // ran as a copy, below.
    auto steps = std::move(state->steps);
    state->steps.clear();
    auto finished = std::move(state->finished);
    finished(std::move(state->outcome));
    return;
  }
  auto step = state->steps[state->next_step++];
  step([state] { RunNext(state); });
}

}  // namespace

void CarryOutApply(QubeManager& manager, ApplyProposal proposal, std::string source,
                   std::chrono::milliseconds grace,
                   std::function<void(ApiResult<ApplyOutcome>)> finished, AfterAdopt after_adopt) {
  auto state = std::make_shared<ApplyState>(ApplyState{
      manager, std::move(proposal), std::move(source), grace, std::move(finished), {}, 0, {}});
  const ApplyProposal& p = state->proposal;
  std::vector<std::string> leaving;
  for (const auto& d : p.diff.disposables) {
    leaving.insert(leaving.end(), d.replaced.begin(), d.replaced.end());
    leaving.insert(leaving.end(), d.stopped.begin(), d.stopped.end());
  }
  if (!manager.BeginApply(leaving)) {
    return state->finished(Fail(wire::codes::kBusy,
                                "another apply is being carried out; nothing was changed (try "
                                "again when it is done)"));
  }
  // 0-2: the disposables that go, removed qubes, then those restarted, all
  // under the old description.
  for (ApplyAction phase : {ApplyAction::kStop, ApplyAction::kRestart}) {
    for (const ApplyStep& s : p.plan) {
      if (s.action != phase) continue;
      state->steps.push_back([state, qube = s.qube](std::function<void()> next) {
        state->manager.Stop(qube, state->grace, [state, qube, next](ApiResult<json> r) {
          state->Record("stop", qube, r);
          next();
        });
      });
    }
  }
  // 3: the new description (the pool refills from it).
  state->steps.push_back([state](std::function<void()> next) {
    state->manager.AdoptSystem(state->proposal.next, state->source);
    next();
  });
  if (after_adopt) {
    state->steps.push_back([state, after_adopt](std::function<void()> next) {
      after_adopt(state->proposal.diff, [state, next](json entries) {
        for (auto& e : entries) {
          if (!e.value("ok", false)) state->outcome.ok = false;
          state->outcome.done.push_back(std::move(e));
        }
        next();
      });
    });
  }
  // Restarts the policy held back: reported, nothing done.
  for (const ApplyStep& s : p.plan) {
    if (s.action != ApplyAction::kPending) continue;
    state->outcome.done.push_back(
        {{"action", "restart pending"},
         {"qube", s.qube},
         {"ok", true},
         {"note",
          "keeps running with its old settings; the change takes effect at its next "
          "start"}});
  }
  // 4: restarted qubes start again, then new autostart qubes.
  for (const ApplyStep& s : p.plan) {
    if (s.action == ApplyAction::kStop || s.action == ApplyAction::kPending) continue;
    state->steps.push_back([state, qube = s.qube](std::function<void()> next) {
      state->manager.Start(qube, [state, qube, next](ApiResult<json> r) {
        state->Record("start", qube, r);
        next();
      });
    });
  }
  RunNext(state);
}

}  // namespace tessera::daemon
