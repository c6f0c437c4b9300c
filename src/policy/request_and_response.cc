// What goes into and comes out of an evaluation, apart from the rule walk
// (evaluate.cc): splitting SERVICE+ARG, the qubes a target token stands for,
// names of decisions and stages, the reason of a denial in Qubes' wording,
// the answer to an `ask`, and the reply text the Qubes policy daemon gives
// qrexec (docs/POLICY.md, "Evaluation"). Pure.

#include <algorithm>

#include "policy/policy.h"

namespace tessera::policy {
namespace {

constexpr std::string_view kDispVmPrefix = "@dispvm:";

}  // namespace

void SplitServiceArgument(std::string_view service_and_arg, Request& request) {
  const size_t plus = service_and_arg.find('+');
  if (plus == std::string_view::npos) {
    request.service = std::string(service_and_arg);
    request.argument = "+";
  } else {
    request.service = std::string(service_and_arg.substr(0, plus));
    request.argument = std::string(service_and_arg.substr(plus));
  }
}

std::vector<std::string> ExpandTarget(const Token& token, const SystemInfo& system) {
  std::vector<std::string> out;
  auto all = [&](auto&& want_name) {
    for (const QubeInfo& q : system.qubes()) {
      if (want_name(q)) out.push_back(q.name);
      if (q.template_for_dispvms) out.push_back(std::string(kDispVmPrefix) + q.name);
    }
    out.emplace_back("@dispvm");
  };
  switch (token.cls) {
    case TokenClass::kName:
      if (const QubeInfo* q = system.Find(token.text)) out.push_back(q->name);
      break;
    case TokenClass::kAdminVm:
      out.emplace_back("@adminvm");
      break;
    case TokenClass::kWildcard:
      all([](const QubeInfo&) { return true; });
      break;
    case TokenClass::kAnyVm:
      all([](const QubeInfo& q) { return !IsDom0(q.name); });
      break;
    case TokenClass::kDefault:
      break;
    case TokenClass::kType:
    case TokenClass::kTag:
      for (const QubeInfo& q : system.qubes()) {
        if (token.cls == TokenClass::kType ? q.type == token.value() : q.HasTag(token.value())) {
          out.push_back(q.name);
        }
      }
      break;
    case TokenClass::kDispVm:
      out.emplace_back("@dispvm");
      break;
    case TokenClass::kDispVmTemplate:
      if (const QubeInfo* q = system.Find(token.value()); q != nullptr && q->template_for_dispvms) {
        out.push_back(std::string(kDispVmPrefix) + q->name);
      }
      break;
    case TokenClass::kDispVmTag:
      for (const QubeInfo& q : system.qubes()) {
        if (q.template_for_dispvms && q.HasTag(token.value())) {
          out.push_back(std::string(kDispVmPrefix) + q.name);
        }
      }
      break;
  }
  return out;
}

std::string_view DecisionName(Decision decision) {
  switch (decision) {
    case Decision::kAllow:
      return "allow";
    case Decision::kDeny:
      return "deny";
    case Decision::kAsk:
      return "ask";
  }
  return "?";
}

std::string_view StageName(Stage stage) {
  switch (stage) {
    case Stage::kParse:
      return "parse";
    case Stage::kRequest:
      return "request";
    case Stage::kEvaluate:
      return "evaluate";
  }
  return "?";
}

std::string Policy::Reason(const Resolution& res) const {
  auto where = [&] {
    return res.rule_index >= 0 ? Where(rules_[static_cast<size_t>(res.rule_index)]) : "?";
  };
  switch (res.why) {
    case DenyReason::kNone:
      return {};
    case DenyReason::kMessage:
      return res.reason;
    case DenyReason::kNoMatchingRule:
      return "no matching rule found";
    case DenyReason::kDeniedByRule:
      return "denied by policy " + where();
    case DenyReason::kAllowWithoutTarget:
      return "policy define 'allow' action at " + where() +
             " but no target is specified by caller or policy";
    case DenyReason::kDispVmWithoutBase:
      return "policy define 'allow' action to @dispvm at " + where() +
             " but no DispVM base is set for this VM";
    case DenyReason::kAskWithoutTargets:
      return "policy define 'ask' action at " + where() +
             " but no target is available to choose from";
  }
  return res.reason;
}

tl::expected<std::string, Denial> HandleAskResponse(const Rule& rule, std::string_view where,
                                                    const std::vector<std::string>& targets,
                                                    bool allowed, std::string_view target) {
  if (!allowed) {
    return tl::unexpected(
        Denial{ErrorKind::kAccessDenied, "denied by the user " + std::string(where), rule.notify});
  }
  if (std::find(targets.begin(), targets.end(), target) == targets.end()) {
    return tl::unexpected(Denial{ErrorKind::kAccessDenied,
                                 "target " + std::string(target) + " is not a valid choice", true});
  }
  return std::string(target);
}

tl::expected<std::string, Denial> DaemonResponse(const NormalizedRequest& req,
                                                 std::string_view target,
                                                 const std::optional<std::string>& user,
                                                 bool autostart, const SystemInfo& system) {
  auto fail = [](std::string message) {
    return tl::unexpected(Denial{ErrorKind::kAccessDenied, std::move(message), true});
  };
  if (req.source == target) return fail("loopback qrexec connection not supported");
  const std::string user_line = "user=" + (user && !user->empty() ? *user : "DEFAULT");
  const std::string autostart_line = std::string("autostart=") + (autostart ? "True" : "False");
  const std::string requested = "requested_target=" + req.target;
  const std::string policy_source =
      req.requested_source.empty() ? "" : "\npolicy_source=" + req.source;
  if (IsDom0(target)) {
    return user_line + "\nresult=allow\ntarget=dom0\n" + autostart_line + "\n" + requested;
  }
  if (target.starts_with(kDispVmPrefix)) {
    const QubeInfo* tpl = system.Find(target.substr(kDispVmPrefix.size()));
    if (tpl == nullptr) return fail("unknown disposable template: " + std::string(target));
    return user_line + "\nresult=allow\ntarget=" + std::string(target) +
           "\ntarget_uuid=@dispvm:uuid:" + tpl->uuid + "\n" + autostart_line + "\n" + requested +
           policy_source;
  }
  const QubeInfo* q = system.Find(target);
  if (q == nullptr) return fail("unknown target qube: " + std::string(target));
  if (q->type == "RemoteVM") {
    // Qubes Air: the call goes to the relay qube, which forwards it. tessera
    // does not relay; the reply text is kept compatible.
    if (q->relayvm.empty()) return fail(std::string(target) + ": relayvm is not set");
    if (q->transport_rpc.empty()) return fail(std::string(target) + ": transport RPC is not set");
    const QubeInfo* relay = system.Find(q->relayvm);
    if (relay == nullptr) return fail(std::string(target) + ": unknown relayvm " + q->relayvm);
    return "user=DEFAULT\nresult=allow\ntarget=" + q->relayvm +
           "\ntarget_uuid=uuid:" + relay->uuid + "\n" + autostart_line + "\n" + requested +
           "\nservice=" + q->transport_rpc + "+" + req.target + "+" + req.service + req.argument +
           policy_source;
  }
  return user_line + "\nresult=allow\ntarget=" + std::string(target) +
         "\ntarget_uuid=uuid:" + q->uuid + "\n" + autostart_line + "\n" + requested + policy_source;
}

}  // namespace tessera::policy
