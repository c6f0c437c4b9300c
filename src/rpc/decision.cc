#include "rpc/decision.h"

namespace tessera::rpc {

policy::Resolution Decide(const policy::Policy& policy, const policy::Request& request,
                          const policy::SystemInfo& system, const policy::TraceFn& trace) {
  policy::Resolution res = policy.Evaluate(request, system, trace);
  if (res.decision != policy::Decision::kAllow) return res;
  auto normalized = policy::NormalizeRequest(request, system);
  if (!normalized) {
    // Evaluate normalised the same request already; keep its verdict safe.
    res.decision = policy::Decision::kDeny;
    res.why = policy::DenyReason::kMessage;
    res.reason = normalized.error().message;
    res.target.clear();
    return res;
  }
  auto reply = policy::DaemonResponse(*normalized, res.target, res.user, res.autostart, system);
  if (!reply) {
    res.decision = policy::Decision::kDeny;
    res.why = policy::DenyReason::kMessage;
    res.reason = reply.error().message;
    res.notify = reply.error().notify;
    res.target.clear();
    res.autostart = false;
  }
  return res;
}

}  // namespace tessera::rpc
