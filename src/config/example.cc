// The built-in example system: examples/system.toml, embedded at build time so
// `tessera config check --example` works without any file (README, demo).

#include "config/example_toml.h"
#include "config/loader.h"

namespace tessera::config {

std::string_view BuiltinExampleToml() {
  return std::string_view(kExampleSystemToml, sizeof kExampleSystemToml - 1);
}

}  // namespace tessera::config
