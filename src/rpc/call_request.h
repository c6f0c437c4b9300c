#pragma once
// The first thing done with a call: its target and SERVICE[+ARG], as a caller
// stated them, checked with the policy grammar before anything else looks at
// them. The source is never part of what a caller states: it is the channel
// the call came on (a qube's agent channel, or "dom0" for the admin socket).
//
//   policy::Request r = TRY(rpc::ValidateCall("@dispvm", "qubes.OpenInVM", "work"));

#include <string>
#include <string_view>

#include "common/error.h"
#include "policy/policy.h"

namespace tessera::rpc {

inline constexpr size_t kMaxServiceName = 64;
inline constexpr size_t kMaxServiceArgument = 255;  // without the '+'
inline constexpr size_t kMaxTarget = 128;           // "@dispvm:" + a 64-byte name, uuid:...

// A refused call's message names what is wrong ("service 'a/b' contains
// invalid characters: '/'"), for the audit log; callers in a qube learn only
// that the call was refused.
Result<policy::Request> ValidateCall(std::string_view target, std::string_view service_and_argument,
                                     std::string source);

}  // namespace tessera::rpc
