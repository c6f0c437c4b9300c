// tessera: the command-line front end. Verbs register themselves (command.h);
// this file only parses, dispatches and maps CLI11's errors to exit codes.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"

namespace tessera::cli {
namespace {

struct Entry {
  const char* name;
  RegisterFn fn;
};

std::vector<Entry>& Registry() {
  static std::vector<Entry> registry;
  return registry;
}

}  // namespace

CommandRegistration::CommandRegistration(const char* name, RegisterFn fn) {
  Registry().push_back({name, fn});
}

}  // namespace tessera::cli

int main(int argc, char** argv) {
  using tessera::cli::CliContext;
  using tessera::cli::Registry;

  CLI::App app{
      "tessera: security by compartmentalization (Qubes OS model) for Linux.\n"
      "Qubes are isolated compartments that talk only through policy-checked RPC."};
  app.require_subcommand(1);
  app.fallthrough();

  CliContext ctx;
  app.add_option("--config", ctx.config_flag,
                 "System description (TOML, JSON or Nix); default $TESSERA_CONFIG or "
                 "/etc/tessera/system.toml");

  auto& registry = Registry();
  std::sort(registry.begin(), registry.end(),
            [](const auto& a, const auto& b) { return std::string(a.name) < b.name; });
  for (const auto& entry : registry) entry.fn(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return tessera::cli::kExitUsage;
  }
  return ctx.exit_code;
}
