// Request normalisation and evaluation (Qubes qrexec policy v5 semantics;
// docs/POLICY.md, "Evaluation"). Pure: reads only the Policy and SystemInfo.

#include <algorithm>
#include <iterator>

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

Resolution Deny(Resolution res, Stage stage, ErrorKind kind, DenyReason why, bool notify) {
  res.decision = Decision::kDeny;
  res.stage = stage;
  res.error = kind;
  res.why = why;
  res.notify = notify;
  res.target.clear();
  res.targets_for_ask.clear();
  res.default_target.reset();
  res.autostart = false;
  return res;
}

// A denial whose message is known only here (rare paths).
Resolution DenyWith(Resolution res, Stage stage, ErrorKind kind, std::string message,
                    bool notify) {
  res.reason = std::move(message);
  return Deny(std::move(res), stage, kind, DenyReason::kMessage, notify);
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

// A request's fields as views into a Request or a NormalizedRequest.
struct RequestView {
  std::string_view service, argument, source, target;
  TokenClass target_class = TokenClass::kDefault;
};

// The thing a token is matched against, with its qube looked up once per
// evaluation rather than once per rule.
struct EvalSubject {
  std::string_view text;
  TokenClass cls;
  const QubeInfo* qube;  // system.Find(text)
};

// A request with its source and target qubes looked up.
struct ResolvedRequest {
  RequestView req;
  EvalSubject source;
  EvalSubject target;
};

namespace {

// NormalizeRequest without copying: the views point into `request` (or at
// a literal for "@default"); `target_qube` receives the target's qube.
tl::expected<RequestView, Denial> NormalizeView(const Request& request, const SystemInfo& system,
                                                const QubeInfo*& target_qube) {
  if (request.argument.empty() || request.argument[0] != '+') {
    return tl::unexpected(Denial{ErrorKind::kInvalidRequest,
                                 "invalid argument " + Quote(request.argument) +
                                     ": must start with +"});
  }
  RequestView out{request.service, request.argument, request.source, {}, TokenClass::kDefault};
  const std::string_view target =
      request.target.empty() ? std::string_view("@default") : std::string_view(request.target);
  auto cls = ClassifyToken(target, TokenContext::kIntendedTarget);
  if (!cls) return tl::unexpected(Denial{ErrorKind::kSyntax, std::move(cls.error())});
  out.target = target;
  out.target_class = *cls;
  target_qube = nullptr;
  if (out.target_class == TokenClass::kName) {
    target_qube = system.Find(out.target);
    if (target_qube == nullptr) {
      // An unknown target is not an error: the caller gets whatever @default gives.
      out.target = "@default";
      out.target_class = TokenClass::kDefault;
    }
  } else if (out.target_class == TokenClass::kDispVmTemplate) {
    const std::string_view name = out.target.substr(kDispVmPrefix.size());
    const QubeInfo* q = system.Find(name);
    if (q == nullptr || !q->template_for_dispvms) {
      return tl::unexpected(
          Denial{ErrorKind::kAccessDenied, "not a template for dispvm: " + std::string(name)});
    }
  }
  // Other classes start with '@', which no qube name does (SystemInfo
  // refuses them), so their qube stays null as Find() would return.
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
    out.source = request.requested_source;
  }
  return out;
}

RequestView ViewOf(const NormalizedRequest& req) {
  return {req.service, req.argument, req.source, req.target, req.target_class};
}

ResolvedRequest Resolve(const RequestView& req, const SystemInfo& system) {
  return {req,
          {req.source, TokenClass::kName, system.Find(req.source)},
          {req.target, req.target_class, system.Find(req.target)}};
}

}  // namespace

tl::expected<NormalizedRequest, Denial> NormalizeRequest(const Request& request,
                                                         const SystemInfo& system) {
  const QubeInfo* target_qube = nullptr;
  auto view = NormalizeView(request, system, target_qube);
  if (!view) return tl::unexpected(std::move(view.error()));
  NormalizedRequest out;
  out.service = view->service;
  out.argument = view->argument;
  out.source = view->source;
  out.target = view->target;
  out.target_class = view->target_class;
  if (!request.requested_source.empty()) {
    out.requested_source = request.requested_source;
    out.relayvm = request.source;
  }
  return out;
}

namespace {

using Subject = EvalSubject;
using Resolved = ResolvedRequest;

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

// Why a rule does not match ("" when it does); only for traces.
std::string WhyNot(const Rule& rule, const Resolved& r, const SystemInfo& system) {
  if (rule.service && *rule.service != r.req.service) return "service differs";
  if (rule.argument && *rule.argument != r.req.argument) {
    return "argument " + Quote(r.req.argument) + " is not " + Quote(*rule.argument);
  }
  if (!Match(rule.source, r.source, system, nullptr, false)) {
    return "source " + Quote(r.req.source) + " does not match " + Quote(rule.source.text);
  }
  if (!Match(rule.target, r.target, system, r.source.qube, true)) {
    return "target " + Quote(r.req.target) + " does not match " + Quote(rule.target.text);
  }
  return {};
}

}  // namespace

bool MatchToken(const Token& token, std::string_view other, TokenClass other_class,
                const SystemInfo& system, const std::string* source) {
  const Subject subject{other, other_class, system.Find(other)};
  return Match(token, subject, system, source ? system.Find(*source) : nullptr, source != nullptr);
}

bool RuleMatchesButTarget(const Rule& rule, const NormalizedRequest& req,
                          const SystemInfo& system) {
  return MatchesButTarget(rule, Resolve(ViewOf(req), system), system);
}

bool RuleMatches(const Rule& rule, const NormalizedRequest& req, const SystemInfo& system) {
  return Matches(rule, Resolve(ViewOf(req), system), system);
}

template <class Fn>
void Policy::ForEachCandidate(std::string_view service, Fn&& fn) const {
  // Rules for this service and `*` rules, merged back into file order.
  static const std::vector<uint32_t> kNone;
  auto it = by_service_.find(service);
  const std::vector<uint32_t>& named = it == by_service_.end() ? kNone : it->second;
  // A service's rules lie far apart in rules_ (one cache miss each); asking
  // for all of them first overlaps those misses instead of taking them one
  // after the other. The few `*` rules are read by every call and stay cached.
  for (uint32_t i : named) __builtin_prefetch(&rules_[i].argument);
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
  return FindRule(Resolve(ViewOf(req), system), system, trace);
}

int Policy::FindRule(const ResolvedRequest& resolved, const SystemInfo& system,
                     const TraceFn& trace) const {
  int found = -1;
  ForEachCandidate(resolved.req.service, [&](uint32_t i) {
    const Rule& rule = rules_[i];
    if (trace) {
      const std::string why = WhyNot(rule, resolved, system);
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
  return CollectTargetsForAsk(Resolve(ViewOf(req), system), system);
}

namespace {

// The candidate set of an `ask`, kept as flags per qube instead of a set of
// strings: the same set as the strings ExpandTarget() gives (a qube's name
// and "@dispvm:NAME" per qube, plus the keywords "@dispvm" and "@adminvm"),
// without building or comparing strings while the rules are walked.
class AskTargets {
 public:
  explicit AskTargets(const SystemInfo& system)
      : system_(system), flags_(system.qubes().size(), 0) {}

  // Adds (allow, ask) or removes (deny) what `token` can denote.
  void Apply(const Token& token, bool add) {
    const auto& qubes = system_.qubes();
    auto set = [&](size_t i, uint8_t bit) {
      flags_[i] = static_cast<uint8_t>(add ? flags_[i] | bit : flags_[i] & ~bit);
    };
    auto index = [&](const QubeInfo* q) { return static_cast<size_t>(q - qubes.data()); };
    switch (token.cls) {
      case TokenClass::kName:
        if (const QubeInfo* q = system_.Find(token.text)) set(index(q), kName);
        break;
      case TokenClass::kAdminVm:
        adminvm_ = add;
        break;
      case TokenClass::kWildcard:
      case TokenClass::kAnyVm:
        for (size_t i = 0; i < qubes.size(); ++i) {
          if (token.cls == TokenClass::kWildcard || !IsDom0(qubes[i].name)) set(i, kName);
          if (qubes[i].template_for_dispvms) set(i, kDispVm);
        }
        dispvm_ = add;
        break;
      case TokenClass::kDefault:
        break;
      case TokenClass::kType:
      case TokenClass::kTag:
        for (size_t i = 0; i < qubes.size(); ++i) {
          if (token.cls == TokenClass::kType ? qubes[i].type == token.value()
                                             : qubes[i].HasTag(token.value())) {
            set(i, kName);
          }
        }
        break;
      case TokenClass::kDispVm:
        dispvm_ = add;
        break;
      case TokenClass::kDispVmTemplate:
        if (const QubeInfo* q = system_.Find(token.value()); q != nullptr && q->template_for_dispvms) {
          set(index(q), kDispVm);
        }
        break;
      case TokenClass::kDispVmTag:
        for (size_t i = 0; i < qubes.size(); ++i) {
          if (qubes[i].template_for_dispvms && qubes[i].HasTag(token.value())) set(i, kDispVm);
        }
        break;
    }
  }

  // The candidates offered to the user, sorted (see CollectTargetsForAsk).
  std::vector<std::string> Finish(const RequestView& req, const QubeInfo* source) {
    const auto& qubes = system_.qubes();
    std::vector<std::string> extra;  // names that are no qube's own name (kept as strings)
    if (dispvm_ && source != nullptr && source->default_dispvm) {
      const std::string& tpl = *source->default_dispvm;
      const QubeInfo* q = system_.Find(tpl);
      if (q != nullptr && q->name == tpl) {
        flags_[static_cast<size_t>(q - qubes.data())] |= kDispVm;
      } else {
        extra.push_back(std::string(kDispVmPrefix) + tpl);
      }
    }
    if (adminvm_) {
      if (const QubeInfo* q = system_.Find("dom0")) flags_[static_cast<size_t>(q - qubes.data())] |= kName;
    }
    // The caller itself is never a candidate (loopback calls are unsupported).
    if (source != nullptr) flags_[static_cast<size_t>(source - qubes.data())] &= ~kName;
    std::erase(extra, req.source);
    // Built in order rather than sorted: names in name order, then merged
    // with the "@dispvm:NAME" strings (the same order under a common prefix).
    std::vector<std::string> names, dispvms;
    names.reserve(qubes.size());
    for (uint32_t i : system_.name_order()) {
      if (flags_[i] == 0 || qubes[i].internal) continue;  // internal qubes are never offered
      if ((flags_[i] & kName) != 0) names.push_back(qubes[i].name);
      if ((flags_[i] & kDispVm) != 0) {
        std::string t(kDispVmPrefix);
        t += qubes[i].name;
        if (t != req.source) dispvms.push_back(std::move(t));
      }
    }
    for (auto& t : extra) {
      const QubeInfo* q = system_.Find(std::string_view(t).substr(kDispVmPrefix.size()));
      if (q == nullptr || q->internal) continue;
      dispvms.insert(std::lower_bound(dispvms.begin(), dispvms.end(), t), std::move(t));
    }
    std::vector<std::string> out;
    out.reserve(names.size() + dispvms.size());
    std::merge(std::make_move_iterator(names.begin()), std::make_move_iterator(names.end()),
               std::make_move_iterator(dispvms.begin()), std::make_move_iterator(dispvms.end()),
               std::back_inserter(out));
    return out;
  }

 private:
  static constexpr uint8_t kName = 1;    // the qube's name
  static constexpr uint8_t kDispVm = 2;  // "@dispvm:" + the qube's name
  const SystemInfo& system_;
  std::vector<uint8_t> flags_;
  bool dispvm_ = false;   // "@dispvm"
  bool adminvm_ = false;  // "@adminvm"
};

}  // namespace

std::vector<std::string> Policy::CollectTargetsForAsk(const ResolvedRequest& resolved,
                                                      const SystemInfo& system) const {
  // Qube names never start with '@' or "uuid:" (SystemInfo refuses them), so
  // each string ExpandTarget() gives stands for exactly one flag.
  AskTargets targets(system);
  std::vector<uint32_t> candidates;
  ForEachCandidate(resolved.req.service, [&](uint32_t i) {
    candidates.push_back(i);
    return false;
  });
  // Bottom-up, so a `deny` simply removes what later rules added.
  for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
    const Rule& rule = rules_[*it];
    if (!MatchesButTarget(rule, resolved, system)) continue;
    const Token& token =
        rule.action != Action::kDeny && rule.redirect ? *rule.redirect : rule.target;
    targets.Apply(token, rule.action != Action::kDeny);
  }
  return targets.Finish(resolved.req, resolved.source.qube);
}

std::vector<Policy::RemovedCandidate> Policy::RemovedAskCandidates(const NormalizedRequest& req,
                                                                   const SystemInfo& system) const {
  // Explain-only, so plain strings. The bottom-up walk of
  // CollectTargetsForAsk works on the strings ExpandTarget() gives (names,
  // "@dispvm:NAME", the keywords "@dispvm" and "@adminvm"): one is kept
  // exactly when the topmost matching rule denoting it is an allow or ask.
  // An offered string whose topmost rule is a deny was removed by that rule.
  const ResolvedRequest resolved = Resolve(ViewOf(req), system);
  std::vector<std::pair<std::string, int>> topmost;  // string -> deny rule, or -1
  std::vector<std::pair<std::string, int>> removed;  // string -> the deny rule
  AskTargets offered(system);                        // what the allow/ask rules offer
  ForEachCandidate(resolved.req.service, [&](uint32_t i) {
    const Rule& rule = rules_[i];
    if (!MatchesButTarget(rule, resolved, system)) return false;
    const bool deny = rule.action == Action::kDeny;
    const Token& token = !deny && rule.redirect ? *rule.redirect : rule.target;
    if (!deny) offered.Apply(token, true);
    for (std::string& t : ExpandTarget(token, system)) {
      auto it =
          std::find_if(topmost.begin(), topmost.end(), [&](const auto& f) { return f.first == t; });
      if (it == topmost.end()) {
        topmost.emplace_back(std::move(t), deny ? static_cast<int>(i) : -1);
      } else if (!deny && it->second >= 0) {
        removed.emplace_back(it->first, it->second);
        it->second = -1;  // reported once
      }
    }
    return false;
  });
  // In the candidates' own spelling ("@dispvm" is the caller's template,
  // "@adminvm" dom0); only those offered and not kept after all (another
  // spelling of the same candidate may have survived).
  const std::vector<std::string> kept = CollectTargetsForAsk(resolved, system);
  const std::vector<std::string> offers = offered.Finish(resolved.req, resolved.source.qube);
  std::vector<RemovedCandidate> out;
  for (const auto& [text, rule] : removed) {
    std::string target = text;
    if (target == "@adminvm") {
      target = "dom0";
    } else if (target == "@dispvm") {
      const QubeInfo* src = resolved.source.qube;
      if (src == nullptr || !src->default_dispvm) continue;
      target = std::string(kDispVmPrefix) + *src->default_dispvm;
    }
    auto is = [&](const std::string& t) { return t == target; };
    if (std::none_of(offers.begin(), offers.end(), is) ||
        std::any_of(kept.begin(), kept.end(), is)) {
      continue;
    }
    auto same =
        std::find_if(out.begin(), out.end(), [&](const auto& o) { return o.target == target; });
    if (same == out.end()) {
      out.push_back({std::move(target), rule});
    } else {
      same->rule_index = std::min(same->rule_index, rule);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.rule_index < b.rule_index; });
  return out;
}

Resolution Policy::Evaluate(const Request& request, const SystemInfo& system,
                            const TraceFn& trace) const {
  const QubeInfo* target_qube = nullptr;
  auto normalized = NormalizeView(request, system, target_qube);
  if (!normalized) {
    if (trace) trace("request refused: " + normalized.error().message);
    return DenyWith(Resolution{}, Stage::kRequest, normalized.error().kind,
                    std::move(normalized.error().message), normalized.error().notify);
  }
  if (trace) {
    trace("request: service " + Quote(normalized->service) + " argument " +
          Quote(normalized->argument) + " source " + Quote(normalized->source) + " target " +
          Quote(normalized->target) + (normalized->target != request.target && !request.target.empty()
                                           ? " (normalised from " + Quote(request.target) + ")"
                                           : ""));
  }
  const ResolvedRequest resolved{
      *normalized,
      {normalized->source, TokenClass::kName, system.Find(normalized->source)},
      {normalized->target, normalized->target_class, target_qube}};
  return Evaluate(resolved, system, trace);
}

Resolution Policy::Evaluate(const NormalizedRequest& req, const SystemInfo& system,
                            const TraceFn& trace) const {
  return Evaluate(Resolve(ViewOf(req), system), system, trace);
}

Resolution Policy::Evaluate(const ResolvedRequest& resolved, const SystemInfo& system,
                            const TraceFn& trace) const {
  const RequestView& req = resolved.req;
  Resolution res;
  res.requested_target = req.target;
  const int index = FindRule(resolved, system, trace);
  if (index < 0) {
    return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                DenyReason::kNoMatchingRule, true);
  }
  const Rule& rule = rules_[static_cast<size_t>(index)];
  res.rule_index = index;
  switch (rule.action) {
    case Action::kDeny:
      return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                  DenyReason::kDeniedByRule, rule.notify);

    case Action::kAllow: {
      std::string_view target = rule.redirect ? std::string_view(rule.redirect->text) : req.target;
      TokenClass cls = rule.redirect ? rule.redirect->cls : req.target_class;
      if (rule.redirect) {
        // A redirect is checked like a requested target, not against other rules.
        if (cls == TokenClass::kName && system.Find(target) == nullptr) {
          target = "@default";
        } else if (cls == TokenClass::kDispVmTemplate) {
          const QubeInfo* q = system.Find(rule.redirect->value());
          if (q == nullptr || !q->template_for_dispvms) {
            return DenyWith(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                            "not a template for dispvm: " + std::string(rule.redirect->value()),
                            true);
          }
        }
      }
      if (target == "@default") {
        return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                    DenyReason::kAllowWithoutTarget, true);
      }
      if (cls == TokenClass::kDispVm) {
        const QubeInfo* src = resolved.source.qube;
        if (src == nullptr || !src->default_dispvm) {
          return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                      DenyReason::kDispVmWithoutBase, true);
        }
        res.target.reserve(kDispVmPrefix.size() + src->default_dispvm->size());
        res.target = kDispVmPrefix;
        res.target += *src->default_dispvm;
      } else if (target == "@adminvm") {
        res.target = "dom0";
      } else {
        res.target = target;
      }
      if (!rule.autostart && !AllowNoAutostart(system, res.target)) {
        return DenyWith(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                        "target " + res.target + " is denied because it would require autostart",
                        rule.notify);
      }
      res.decision = Decision::kAllow;
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
        targets = CollectTargetsForAsk(resolved, system);
      }
      if (!rule.autostart) {
        std::erase_if(targets, [&](const std::string& t) { return !AllowNoAutostart(system, t); });
      }
      if (targets.empty()) {
        return Deny(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied,
                    DenyReason::kAskWithoutTargets, true);
      }
      // Sorted already: one redirect, or CollectTargetsForAsk's order.
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
  return DenyWith(std::move(res), Stage::kEvaluate, ErrorKind::kAccessDenied, "unknown action",
                  true);
}

}  // namespace tessera::policy
