#include "daemon/apply_plan.h"

namespace tessera::daemon {

std::vector<ApplyStep> PlanApply(const SystemDiff& diff,
                                 const std::map<std::string, QubeState>& states,
                                 const config::System& next, RestartOnChange policy,
                                 const std::set<std::string>& busy) {
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
      bool restart = policy == RestartOnChange::kAlways ||
                     (policy == RestartOnChange::kIfIdle && busy.count(c.qube) == 0);
      plan.push_back({restart ? ApplyAction::kRestart : ApplyAction::kPending, c.qube});
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
    case ApplyAction::kPending:
      return "restart pending";
  }
  return "?";
}

Result<RestartOnChange> ParseRestartOnChange(std::string_view text) {
  if (text == "never") return RestartOnChange::kNever;
  if (text == "if-idle") return RestartOnChange::kIfIdle;
  if (text == "always") return RestartOnChange::kAlways;
  return Err(Error("restart_on_change: expected never, if-idle or always, got \"" +
                       std::string(text).substr(0, 40) + "\"",
                   EINVAL));
}

std::string_view ToString(RestartOnChange policy) {
  switch (policy) {
    case RestartOnChange::kNever:
      return "never";
    case RestartOnChange::kIfIdle:
      return "if-idle";
    case RestartOnChange::kAlways:
      return "always";
  }
  return "always";
}

nlohmann::json PlanToJson(const std::vector<ApplyStep>& plan) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& step : plan) out.push_back({{"action", ToString(step.action)}, {"qube", step.qube}});
  return out;
}

}  // namespace tessera::daemon
