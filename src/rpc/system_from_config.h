#pragma once
// The policy's view of a validated system description (config::System):
// every qube with its Qubes type, tags, uuid and disposable settings, plus dom0.
// It lives in rpc, not policy: the policy engine depends on common only, and
// rpc (the qrexec-style broker) is where the description meets the engine.
//
//   policy::SystemInfo sys = rpc::SystemFromConfig(system, [&](std::string_view q) {
//     return daemon.IsRunning(q);
//   });

#include <functional>
#include <string_view>

#include "config/model.h"
#include "policy/system.h"

namespace tessera::rpc {

// `is_running` supplies the power state; without it every qube but dom0 is
// Halted (so `autostart=no` rules allow only dom0).
policy::SystemInfo SystemFromConfig(
    const config::System& system,
    const std::function<bool(std::string_view)>& is_running = nullptr);

// A running disposable (dispN, made by the daemon from `dvm_template`): a
// DispVM with its template's tags and default_dispvm; a preloaded one is
// internal (never offered in an ask).
void AddDisposable(policy::SystemInfo& info, const config::System& system, const std::string& name,
                   const std::string& dvm_template, bool preloaded);

}  // namespace tessera::rpc
