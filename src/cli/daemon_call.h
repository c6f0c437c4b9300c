#pragma once
// One admin call from a CLI verb: connects, calls, and on failure prints why
// (daemon not running, permission, the daemon's message) to stderr.
//
//   std::optional<json> r = CallDaemon("start", "qube.start", {{"qube", "work"}});

#include <optional>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

namespace tessera::cli {

// `code` (if given) receives the error code of a refused call, or
// "not_running" when no daemon answered.
std::optional<nlohmann::json> CallDaemon(const char* verb, const std::string& method,
                                         const nlohmann::json& params,
                                         std::span<const int> fds = {},
                                         std::string* code = nullptr);

}  // namespace tessera::cli
