#pragma once
// Where tessera keeps things. Every command and test goes through these so that
// several instances (and test runs) can live side by side.
//
//   state dir   TESSERA_STATE_DIR    default /var/lib/tessera  (persistent)
//   runtime dir TESSERA_RUNTIME_DIR  default /run/tessera      (gone at reboot)
//   config      --config FILE, else TESSERA_CONFIG, else /etc/tessera/system.toml

#include <string>
#include <string_view>

namespace tessera {

inline constexpr std::string_view kDefaultStateDir = "/var/lib/tessera";
inline constexpr std::string_view kDefaultRuntimeDir = "/run/tessera";
inline constexpr std::string_view kDefaultConfigPath = "/etc/tessera/system.toml";
inline constexpr std::string_view kDefaultPolicyDir = "/etc/tessera/policy.d";
inline constexpr std::string_view kDefaultRuntimePolicyDir = "/run/tessera/policy.d";

std::string StateDir();
std::string RuntimeDir();
// `flag_value` is what --config said (empty if absent).
std::string ConfigPath(std::string_view flag_value);

}  // namespace tessera
