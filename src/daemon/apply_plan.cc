#include "daemon/apply_plan.h"

namespace tessera::daemon {

std::vector<ApplyStep> PlanApply(const SystemDiff& diff,
                                 const std::map<std::string, QubeState>& states,
                                 const config::System& next) {
  auto running = [&](const std::string& qube) {
    auto it = states.find(qube);
    return it != states.end() && it->second != QubeState::kHalted;
  };
  std::vector<ApplyStep> plan;
  for (const auto& d : diff.disposables) {
    for (const auto* names : {&d.replaced, &d.stopped, &d.in_use_stopped}) {
      for (const auto& name : *names) plan.push_back({ApplyAction::kStop, name});
    }
  }
  for (const auto& c : diff.qubes) {
    if (c.kind == ChangeKind::kRemoved && running(c.qube)) {
      plan.push_back({ApplyAction::kStop, c.qube});
    }
  }
  for (const auto& c : diff.qubes) {
    if (c.kind == ChangeKind::kChanged && c.needs_restart && running(c.qube)) {
      plan.push_back({ApplyAction::kRestart, c.qube});
    }
  }
  for (const auto& c : diff.qubes) {
    const config::Qube* q = next.Find(c.qube);
    if (q == nullptr || !q->autostart) continue;
    if (c.kind == ChangeKind::kAdded || (c.kind == ChangeKind::kChanged && !running(c.qube))) {
      plan.push_back({ApplyAction::kStart, c.qube});
    }
  }
  return plan;
}

std::string_view ToString(ApplyAction action) {
  switch (action) {
    case ApplyAction::kStop: return "stop";
    case ApplyAction::kRestart: return "restart";
    case ApplyAction::kStart: return "start";
  }
  return "?";
}

nlohmann::json PlanToJson(const std::vector<ApplyStep>& plan) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& step : plan) out.push_back({{"action", ToString(step.action)}, {"qube", step.qube}});
  return out;
}

}  // namespace tessera::daemon
