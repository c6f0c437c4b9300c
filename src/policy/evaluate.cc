// Request normalisation and evaluation (Qubes qrexec policy v5 semantics;
// docs/POLICY.md, "Evaluation"). Pure: reads only the Policy and SystemInfo.

#include <algorithm>
#include <set>

#include "policy/policy.h"

namespace tessera::policy {
namespace {

constexpr std::string_view kDispVmPrefix = "@dispvm:";

// Equal, or the same qube named once by name and once as uuid:UUID.
bool MatchStrings(const SystemInfo& system, std::string_view a, std::string_view b) {
  if (a.starts_with("uuid:")) {
    if (b.starts_with("uuid:")) return a == b;
    const QubeInfo* q = system.Find(b);
    return q != nullptr && !q->uuid.empty() && a.substr(5) == q->uuid;
  }
  if (b.starts_with("uuid:")) {
    const QubeInfo* q = system.Find(a);
    return q != nullptr && !q->uuid.empty() && b.substr(5) == q->uuid;
  }
  return a == b;
}

// The disposable template a qube's @dispvm calls go to, if it has one.
const std::string* DefaultDispVm(const SystemInfo& system, std::string_view source) {
  const QubeInfo* q = system.Find(source);
  if (q == nullptr || !q->default_dispvm) return nullptr;
  return &*q->default_dispvm;
}

// autostart=no: only targets that need no start (dom0, running qubes).
bool AllowNoAutostart(const SystemInfo& system, std::string_view target) {
  if (IsDom0(target)) return true;
  if (target.starts_with("@dispvm")) return false;
  const QubeInfo* q = system.Find(target);
  return q != nullptr && q->running;
}

Resolution Deny(Resolution res, Stage stage, ErrorKind kind, std::string reason, bool notify) {
  res.decision = Decision::kDeny;
  res.stage = stage;
  res.error = kind;
  res.reason = std::move(reason);
  res.notify = notify;
  res.target.clear();
  res.targets_for_ask.clear();
  res.default_target.reset();
  res.autostart = false;
  return res;
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// Why a rule does not match ("" when it does); only for traces.
std::string WhyNot(const Rule& rule, const NormalizedRequest& req, const SystemInfo& system) {
  if (rule.service && *rule.service != req.service) return "service differs";
  if (rule.argument && *rule.argument != req.argument) {
    return "argument " + Quote(req.argument) + " is not " + Quote(*rule.argument);
  }
  if (!MatchToken(rule.source, req.source, TokenClass::kName, system, nullptr)) {
    return "source " + Quote(req.source) + " does not match " + Quote(rule.source.text);
  }
  if (!MatchToken(rule.target, req.target, req.target_class, system, &req.source)) {
    return "target " + Quote(req.target) + " does not match " + Quote(rule.target.text);
  }
  return {};
}

}  // namespace

std::string_view DecisionName(Decision decision) {
  switch (decision) {
    case Decision::kAllow: return "allow";
    case Decision::kDeny: return "deny";
    case Decision::kAsk: return "ask";
  }
  return "?";
}

std::string_view StageName(Stage stage) {
  switch (stage) {
    case Stage::kParse: return "parse";
    case Stage::kRequest: return "request";
    case Stage::kEvaluate: return "evaluate";
  }
  return "?";
}

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

tl::expected<NormalizedRequest, Denial> NormalizeRequest(const Request& request,
                                                         const SystemInfo& system) {
  if (request.argument.empty() || request.argument[0] != '+') {
    return tl::unexpected(Denial{ErrorKind::kInvalidRequest,
                                 "invalid argument " + Quote(request.argument) +
                                     ": must start with +"});
  }
  NormalizedRequest out;
  out.service = request.service;
  out.argument = request.argument;
  out.source = request.source;
  auto token = ParseToken(request.target.empty() ? "@default" : request.target,
                          TokenContext::kIntendedTarget);
  if (!token) return tl::unexpected(Denial{ErrorKind::kSyntax, token.error()});
  out.target = std::move(token->text);
  out.target_class = token->cls;
  if (out.target_class == TokenClass::kName && system.Find(out.target) == nullptr) {
    // An unknown target is not an error: the caller gets whatever @default gives.
    out.target = "@default";
    out.target_class = TokenClass::kDefault;
  } else if (out.target_class == TokenClass::kDispVmTemplate) {
    const QubeInfo* q = system.Find(std::string_view(out.target).substr(kDispVmPrefix.size()));
    if (q == nullptr || !q->template_for_dispvms) {
      return tl::unexpected(Denial{
          ErrorKind::kAccessDenied,
          "not a template for dispvm: " + out.target.substr(kDispVmPrefix.size())});
    }
  }
  if (!request.requested_source.empty()) {
    const QubeInfo* claimed = system.Find(request.requested_source);
    if (claimed == nullptr) {
      return tl::unexpected(Denial{ErrorKind::kRequest, "unknown requested source qube " +
                                                            Quote(request.requested_source)});
    }
    if (claimed->type != "RemoteVM") {
      return tl::unexpected(Denial{ErrorKind::kRequest,
                                   request.requested_source +
                                       ": requested source is only authorized for RemoteVM"});
    }
    if (claimed->relayvm != request.source) {
      return tl::unexpected(Denial{ErrorKind::kRequest, request.source + " is not a relay for " +
                                                            request.requested_source});
    }
    out.requested_source = request.requested_source;
    out.relayvm = request.source;
    out.source = request.requested_source;
  }
  return out;
}

namespace {

// The thing a token is matched against, with its qube looked up once per
// evaluation rather than once per rule.
struct Subject {
  std::string_view text;
  TokenClass cls;
  const QubeInfo* qube;  // system.Find(text)
};

// `source` is the request's source qube (for @dispvm against @dispvm:NAME),
// null when matching the source column itself.
bool Match(const Token& token, const Subject& other, const SystemInfo& system,
           const QubeInfo* source, bool have_source) {
  switch (token.cls) {
    case TokenClass::kName:
    case TokenClass::kAdminVm:
      // dom0's spellings match only each other.
      if (token.is_dom0) return IsDom0(other.text);
      if (std::string_view(token.text).starts_with("uuid:")) {
        if (other.text.starts_with("uuid:")) return token.text == other.text;
        return other.qube != nullptr && !other.qube->uuid.empty() &&
               std::string_view(token.text).substr(5) == other.qube->uuid;
      }
      return MatchStrings(system, token.text, other.text);
    case TokenClass::kWildcard:
      return true;
    case TokenClass::kAnyVm:
      return !IsDom0(other.text);
    case TokenClass::kDefault:
      return other.text == "@default";
    case TokenClass::kType:
      return other.qube != nullptr && other.qube->type == token.value();
    case TokenClass::kTag:
      return other.qube != nullptr && other.qube->HasTag(token.value());
    case TokenClass::kDispVm:
      return other.text == "@dispvm";
    case TokenClass::kDispVmTemplate:
      if (other.cls == TokenClass::kDispVm && have_source) {
        // "@dispvm:NAME" against "@dispvm:" + the caller's default template:
        // a plain comparison (no uuid aliasing), as in Qubes.
        return source != nullptr && source->default_dispvm &&
               token.value() == *source->default_dispvm;
      }
      if (other.cls != TokenClass::kDispVmTemplate) return false;
      return MatchStrings(system, token.value(), other.text.substr(kDispVmPrefix.size()));
    case TokenClass::kDispVmTag: {
      std::string_view tpl;
      if (other.cls == TokenClass::kDispVm) {
        if (!have_source || source == nullptr || !source->default_dispvm) return false;
        tpl = *source->default_dispvm;
      } else if (other.cls == TokenClass::kDispVmTemplate) {
        tpl = other.text.substr(kDispVmPrefix.size());
      } else {
        return false;
      }
      const QubeInfo* q = system.Find(tpl);
      return q != nullptr && q->template_for_dispvms && q->HasTag(token.value());
    }
  }
  return false;
}

// A request with its source and target qubes looked up.
struct Resolved {
  const NormalizedRequest& req;
  Subject source;
  Subject target;
};

Resolved Resolve(const NormalizedRequest& req, const SystemInfo& system) {
  return {req,
          {req.source, TokenClass::kName, system.Find(req.source)},
          {req.target, req.target_class, system.Find(req.target)}};
}

bool MatchesButTarget(const Rule& rule, const Resolved& r, const SystemInfo& system) {
  return (!rule.service || *rule.service == r.req.service) &&
         (!rule.argument || *rule.argument == r.req.argument) &&
         Match(rule.source, r.source, system, nullptr, false);
}

bool Matches(const Rule& rule, const Resolved& r, const SystemInfo& system) {
  return MatchesButTarget(rule, r, system) &&
         Match(rule.target, r.target, system, r.source.qube, true);
}

// For candidates from the service index, whose service is known to match.
bool CandidateMatches(const Rule& rule, const Resolved& r, const SystemInfo& system) {
  return (!rule.argument || *rule.argument == r.req.argument) &&
         Match(rule.source, r.source, system, nullptr, false) &&
         Match(rule.target, r.target, system, r.source.qube, true);
}

}  // namespace

bool MatchToken(const Token& token, std::string_view other, TokenClass other_class,
                const SystemInfo& system, const std::string* source) {
  const Subject subject{other, other_class, system.Find(other)};
  return Match(token, subject, system, source ? system.Find(*source) : nullptr, source != nullptr);
}

bool RuleMatchesButTarget(const Rule& rule, const NormalizedRequest& req,
                          const SystemInfo& system) {
  return MatchesButTarget(rule, Resolve(req, system), system);
}

bool RuleMatches(const Rule& rule, const NormalizedRequest& req, const SystemInfo& system) {
  return Matches(rule, Resolve(req, system), system);
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

template <class Fn>
void Policy::ForEachCandidate(std::string_view service, Fn&& fn) const {
  // Rules for this service and `*` rules, merged back into file order.
  static const std::vector<uint32_t> kNone;
  auto it = by_service_.find(service);
  const std::vector<uint32_t>& named = it == by_service_.end() ? kNone : it->second;
  size_t a = 0, b = 0;
  while (a < named.size() || b < any_service_.size()) {
    uint32_t next;
    if (b == any_service_.size() || (a < named.size() && named[a] < any_service_[b])) {
      next = named[a++];
    } else {
      next = any_service_[b++];
    }
    if (fn(next)) return;
  }
}

int Policy::FindRule(const NormalizedRequest& req, const SystemInfo& system,
                     const TraceFn& trace) const {
  int found = -1;
  const Resolved resolved = Resolve(req, system);
  ForEachCandidate(req.service, [&](uint32_t i) {
    const Rule& rule = rules_[i];
    if (trace) {
      const std::string why = WhyNot(rule, req, system);
      trace("  rule " + std::to_string(i) + " " + Where(rule) + ": " + rule.ToString() + "\n      " +
            (why.empty() ? "MATCHES" : "no: " + why));
      if (!why.empty()) return false;
    } else if (!CandidateMatches(rule, resolved, system)) {
      return false;
    }
    found = static_cast<int>(i);
    return true;
  });
  return found;
}

std::vector<std::string> Policy::CollectTargetsForAsk(const NormalizedRequest& req,
                                                      const SystemInfo& system) const {
  std::set<std::string> targets;
  std::vector<uint32_t> candidates;
  ForEachCandidate(req.service, [&](uint32_t i) {
    candidates.push_back(i);
    return false;
  });
  // Bottom-up, so a `deny` simply removes what later rules added.
  const Resolved resolved = Resolve(req, system);
  for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
    const Rule& rule = rules_[*it];
    if (!MatchesButTarget(rule, resolved, system)) continue;
    const Token& token =
        rule.action != Action::kDeny && rule.redirect ? *rule.redirect : rule.target;
    for (auto& t : ExpandTarget(token, system)) {
      if (rule.action == Action::kDeny) {
        targets.erase(t);
      } else {
        targets.insert(std::move(t));
      }
    }
  }
  if (targets.erase("@dispvm") > 0) {
    if (const std::string* tpl = DefaultDispVm(system, req.source)) {
      targets.insert(std::string(kDispVmPrefix) + *tpl);
    }
  }
  if (targets.erase("@adminvm") > 0) targets.insert("dom0");
  // The caller itself is never a candidate (loopback calls are unsupported).
  const QubeInfo* src = system.Find(req.source);
  if (src != nullptr) {
    targets.erase(src->name);
    if (!src->uuid.empty()) targets.erase("uuid:" + src->uuid);
  }
  targets.erase(req.source);
  std::vector<std::string> out;
  for (auto& t : targets) {
    std::string_view name = t;
    if (name.starts_with(kDispVmPrefix)) name.remove_prefix(kDispVmPrefix.size());
    const QubeInfo* q = system.Find(name);
    if (q == nullptr || q->internal) continue;  // internal qubes are never offered
    out.push_back(t);
  }
  return out;
}

Resolution Policy::Evaluate(const Request& request, const SystemInfo& system,
                            const TraceFn& trace) const {
  auto normalized = NormalizeRequest(request, system);
  if (!normalized) {
    Resolution res;
    if (trace) trace("request refused: " + normalized.error().message);
    return Deny(std::move(res), Stage::kRequest, normalized.error().kind,
                std::move(normalized.error().message), normalized.error().notify);
  }
  if (trace) {
    trace("request: service " + Quote(normalized->service) + " argument " +
          Quote(normalized->argument) + " source " + Quote(normalized->source) + " target " +
          Quote(normalized->target) + (normalized->target != request.target && !request.target.empty()
                                           ? " (normalised from " + Quote(request.target) + ")"
                                           : ""));
  }
  return Evaluate(*normalized, system, trace);
}

Resolution Policy::Evaluate(const NormalizedRequest& req, const SystemInfo& system,
                            const TraceFn& trace) const {
  Resolution res;
  res.requested_target = req.target;
  const int index = FindRule(req, system, trace);
  if (index < 0) {
    return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                "no matching rule found", true);
  }
  const Rule& rule = rules_[static_cast<size_t>(index)];
  res.rule_index = index;
  // Built only where a message needs it: allowed calls are the hot path.
  auto where = [&] { return Where(rule); };
  switch (rule.action) {
    case Action::kDeny:
      return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                  "denied by policy " + where(), rule.notify);

    case Action::kAllow: {
      std::string target = rule.redirect ? rule.redirect->text : req.target;
      TokenClass cls = rule.redirect ? rule.redirect->cls : req.target_class;
      if (rule.redirect) {
        // A redirect is checked like a requested target, not against other rules.
        if (cls == TokenClass::kName && system.Find(target) == nullptr) {
          target = "@default";
        } else if (cls == TokenClass::kDispVmTemplate) {
          const QubeInfo* q = system.Find(rule.redirect->value());
          if (q == nullptr || !q->template_for_dispvms) {
            return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                        "not a template for dispvm: " + std::string(rule.redirect->value()), true);
          }
        }
      }
      if (target == "@default") {
        return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                    "policy define 'allow' action at " + where() +
                        " but no target is specified by caller or policy",
                    true);
      }
      if (cls == TokenClass::kDispVm) {
        const std::string* tpl = DefaultDispVm(system, req.source);
        if (tpl == nullptr) {
          return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                      "policy define 'allow' action to @dispvm at " + where() +
                          " but no DispVM base is set for this VM",
                      true);
        }
        target = std::string(kDispVmPrefix) + *tpl;
      } else if (target == "@adminvm") {
        target = "dom0";
      }
      if (!rule.autostart && !AllowNoAutostart(system, target)) {
        return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                    "target " + target + " is denied because it would require autostart",
                    rule.notify);
      }
      res.decision = Decision::kAllow;
      res.target = std::move(target);
      res.user = rule.user;
      res.notify = rule.notify;
      res.autostart = rule.autostart;
      return res;
    }

    case Action::kAsk: {
      std::vector<std::string> targets;
      if (rule.redirect) {
        targets.push_back(IsDom0(rule.redirect->text) ? "dom0" : rule.redirect->text);
      } else {
        targets = CollectTargetsForAsk(req, system);
      }
      if (!rule.autostart) {
        std::erase_if(targets, [&](const std::string& t) { return !AllowNoAutostart(system, t); });
      }
      if (targets.empty()) {
        return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                    "policy define 'ask' action at " + where() +
                        " but no target is available to choose from",
                    true);
      }
      std::sort(targets.begin(), targets.end());
      std::optional<std::string> def;
      if (rule.default_target) {
        if (rule.default_target->cls == TokenClass::kDispVm) {
          if (const std::string* tpl = DefaultDispVm(system, req.source)) {
            def = std::string(kDispVmPrefix) + *tpl;
          }
        } else if (IsDom0(rule.default_target->text)) {
          def = "dom0";
        } else {
          def = rule.default_target->text;
        }
        // A default that is not a candidate is dropped, never added.
        if (def && std::find(targets.begin(), targets.end(), *def) == targets.end()) def.reset();
      }
      res.decision = Decision::kAsk;
      res.targets_for_ask = std::move(targets);
      res.default_target = std::move(def);
      res.user = rule.user;
      res.notify = rule.notify;
      res.autostart = rule.autostart;
      return res;
    }
  }
  return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied, "unknown action", true);
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
    return "user=DEFAULT\nresult=allow\ntarget=" + q->relayvm + "\ntarget_uuid=uuid:" +
           relay->uuid + "\n" + autostart_line + "\n" + requested + "\nservice=" +
           q->transport_rpc + "+" + req.target + "+" + req.service + req.argument + policy_source;
  }
  return user_line + "\nresult=allow\ntarget=" + std::string(target) + "\ntarget_uuid=uuid:" +
         q->uuid + "\n" + autostart_line + "\n" + requested + policy_source;
}

}  // namespace tessera::policy
