#include "common/paths.h"

#include <cstdlib>

namespace tessera {
namespace {

std::string FromEnv(const char* name, std::string_view fallback) {
  const char* value = std::getenv(name);
  if (value != nullptr && value[0] != '\0') return value;
  return std::string(fallback);
}

}  // namespace

std::string StateDir() { return FromEnv("TESSERA_STATE_DIR", kDefaultStateDir); }
std::string RuntimeDir() { return FromEnv("TESSERA_RUNTIME_DIR", kDefaultRuntimeDir); }

std::string ConfigPath(std::string_view flag_value) {
  if (!flag_value.empty()) return std::string(flag_value);
  return FromEnv("TESSERA_CONFIG", kDefaultConfigPath);
}

}  // namespace tessera
