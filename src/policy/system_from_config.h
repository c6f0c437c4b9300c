#pragma once
// The policy's view of a validated system description (config::System):
// every qube with its Qubes type, tags, uuid and disposable settings, plus dom0.
//
//   policy::SystemInfo sys = policy::SystemFromConfig(system, [&](std::string_view q) {
//     return daemon.IsRunning(q);
//   });

#include <functional>
#include <string_view>

#include "config/model.h"
#include "policy/system.h"

namespace tessera::policy {

// `is_running` supplies the power state; without it every qube but dom0 is
// Halted (so `autostart=no` rules allow only dom0).
SystemInfo SystemFromConfig(const config::System& system,
                            const std::function<bool(std::string_view)>& is_running = nullptr);

}  // namespace tessera::policy
