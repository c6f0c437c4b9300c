#pragma once
// How CLI verbs plug into `tessera`. Each verb lives in its own file
// (config_command.cc, policy_command.cc, ...) and registers itself with a
// static CommandRegistration, so adding a verb never edits main.cc:
//
//   namespace {
//   void Register(CLI::App& app, CliContext& ctx) {
//     auto* cmd = app.add_subcommand("config", "Validate and show the system description");
//     ...
//     cmd->callback([&ctx] { ctx.exit_code = RunCheck(...); });
//   }
//   const CommandRegistration kRegistration({"config"}, Register);
//   }  // namespace
//
// The names are the verbs Register adds: main() registers only the entry that
// owns the verb on the command line (every entry for help or an unknown verb),
// which keeps `tessera run` from building the whole command tree each time.

#include <CLI/CLI.hpp>
#include <initializer_list>
#include <string>
#include <vector>

namespace tessera::cli {

// Shared by every verb; main() returns exit_code after the verb's callback ran.
struct CliContext {
  int exit_code = 0;
  std::string config_flag;  // global --config FILE (may be empty; see ConfigPath())
};

using RegisterFn = void (*)(CLI::App& app, CliContext& ctx);
// A verb that parses its own command line (`run`: everything after the qube
// belongs to the command, options included, which CLI11 cannot leave alone):
// main() hands it the words after the verb and returns what it returns.
// Register still adds the subcommand, for `tessera --help`.
using RawFn = int (*)(const std::vector<std::string>& args);

class CommandRegistration {
 public:
  CommandRegistration(std::initializer_list<const char*> verbs, RegisterFn fn, RawFn raw = nullptr);
};

// Exit code for command-line usage errors (bad flags, missing arguments).
inline constexpr int kExitUsage = 2;

}  // namespace tessera::cli
