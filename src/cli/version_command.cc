// `tessera version`: prints the version (scripts use it to check the binary runs).

#include <cstdio>

#include "cli/command.h"

namespace tessera::cli {
namespace {

void Register(CLI::App& app, CliContext& /*ctx*/) {
  auto* cmd = app.add_subcommand("version", "Print the tessera version");
  cmd->callback([] { std::printf("tessera 0.1.0\n"); });
}

const CommandRegistration kRegistration({"version"}, Register);

}  // namespace
}  // namespace tessera::cli
