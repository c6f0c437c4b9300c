#pragma once
// The policy's answer to a call, as the broker acts on it: the evaluation,
// and then, for an allow, the check that the call can be executed at all (a
// call to the caller itself or to an unknown qube is refused even when a rule
// allows it, as the Qubes policy daemon does). `tessera policy eval` prints
// the same answer, so what it says is what a call gets.
//
//   policy::Resolution r = rpc::Decide(*policy, request, system);

#include "policy/policy.h"

namespace tessera::rpc {

policy::Resolution Decide(const policy::Policy& policy, const policy::Request& request,
                          const policy::SystemInfo& system, const policy::TraceFn& trace = nullptr);

}  // namespace tessera::rpc
