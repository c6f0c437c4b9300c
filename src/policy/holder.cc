#include "policy/holder.h"

#include <string>

#include "common/log.h"

namespace tessera::policy {

bool PolicyHolder::Reload(tl::expected<Policy, std::vector<LoadError>> loaded) {
  if (!loaded) {
    for (const auto& e : loaded.error()) {
      Log(LogLevel::kError, "policy reload failed, keeping the policy in force",
          {{"error", e.ToString()}});
    }
    std::lock_guard lock(mu_);
    last_errors_ = std::move(loaded.error());
    if (!current_) {
      Log(LogLevel::kError, "no valid policy has ever loaded: denying every call");
    }
    return false;
  }
  auto fresh = std::make_shared<const Policy>(std::move(*loaded));
  std::lock_guard lock(mu_);
  current_ = std::move(fresh);
  last_errors_.clear();
  ++generation_;
  return true;
}

std::shared_ptr<const Policy> PolicyHolder::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::vector<LoadError> PolicyHolder::LastErrors() const {
  std::lock_guard lock(mu_);
  return last_errors_;
}

uint64_t PolicyHolder::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

Resolution PolicyHolder::Evaluate(const Request& request, const SystemInfo& system) const {
  std::shared_ptr<const Policy> policy = Current();
  if (!policy) return DenyForBrokenPolicy(LastErrors());
  // The result outlives this policy (a reload may replace it), so the
  // reason is formatted now.
  Resolution res = policy->Evaluate(request, system);
  if (res.why != DenyReason::kNone && res.why != DenyReason::kMessage) {
    res.reason = policy->Reason(res);
    res.why = DenyReason::kMessage;
  }
  return res;
}

Resolution DenyForBrokenPolicy(const std::vector<LoadError>& errors) {
  Resolution res;
  res.decision = Decision::kDeny;
  res.stage = Stage::kParse;
  res.notify = true;
  res.why = DenyReason::kMessage;
  if (errors.empty()) {
    res.error = ErrorKind::kAccessDenied;
    res.reason = "no policy loaded";
  } else {
    res.error = errors.front().kind;
    res.reason = "policy failed to load: " + errors.front().ToString();
    if (errors.size() > 1) res.reason += " (and " + std::to_string(errors.size() - 1) + " more)";
  }
  return res;
}

}  // namespace tessera::policy
