// tessera: the command-line front end. Verbs register themselves (command.h);
// this file only parses, dispatches and maps CLI11's errors to exit codes.

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/command.h"
#include "common/check.h"
#include "common/text.h"

namespace tessera::cli {
namespace {

struct Entry {
  std::vector<const char*> verbs;
  RegisterFn fn;
  RawFn raw;
};

std::vector<Entry>& Registry() {
  static std::vector<Entry> registry;
  return registry;
}

// The index of the verb on the command line: the first word that is not a
// global option (`--config FILE`, `--config=FILE`, `-h`, `--help`); 0 if none.
int VerbIndex(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") return 0;
    if (a == "--config") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;
    return i;
  }
  return 0;
}

// The registration that adds `verb`, or null.
const Entry* OwnerOf(std::string_view verb) {
  for (const auto& entry : Registry()) {
    for (const char* v : entry.verbs) {
      if (verb == v) return &entry;
    }
  }
  return nullptr;
}

// Every verb, in name order (help lists them as registered).
void RegisterAll(CLI::App& app, CliContext& ctx) {
  auto& registry = Registry();
  std::sort(registry.begin(), registry.end(), [](const auto& a, const auto& b) {
    return std::string_view(a.verbs.front()) < b.verbs.front();
  });
  for (const auto& entry : registry) {
    entry.fn(app, ctx);
    // A verb missing from its entry's list would only cost time; one listed
    // but not added would be unreachable: refuse that here, where every
    // `tessera --help` (and the tests) pass.
    for (const char* v : entry.verbs) {
      auto found = app.get_subcommands([v](CLI::App* sub) { return sub->get_name() == v; });
      TESSERA_CHECK(!found.empty());
    }
  }
}

// "unknown command X" with the nearest verb as a hint.
void ReportUnknownVerb(std::string_view verb) {
  std::vector<std::string> verbs;
  for (const auto& entry : Registry()) verbs.insert(verbs.end(), entry.verbs.begin(), entry.verbs.end());
  std::optional<std::string> best = ClosestMatch(verb, verbs);
  std::string hint = best ? " (did you mean '" + *best + "'?)" : "";
  std::fprintf(stderr, "tessera: unknown command '%s'%s; `tessera --help` lists them\n",
               EscapeControl(verb, EscapeNewlines::kEscape).c_str(), hint.c_str());
}

// The innermost command given that requires a subcommand and got none, or null.
CLI::App* MissingSubcommand(CLI::App& app) {
  CLI::App* command = &app;
  for (;;) {
    auto chosen = command->get_subcommands();
    if (chosen.empty()) break;
    command = chosen.front();
  }
  return command->get_require_subcommand_min() > 0 ? command : nullptr;
}

}  // namespace

CommandRegistration::CommandRegistration(std::initializer_list<const char*> verbs, RegisterFn fn,
                                         RawFn raw) {
  TESSERA_CHECK(verbs.size() > 0);
  Registry().push_back({std::vector<const char*>(verbs), fn, raw});
}

}  // namespace tessera::cli

int main(int argc, char** argv) {
  using tessera::cli::CliContext;

  CLI::App app{
      "tessera: security by compartmentalization (Qubes OS model) for Linux.\n"
      "Qubes are isolated compartments that talk only through policy-checked RPC."};
  app.require_subcommand(1);
  app.fallthrough();

  CliContext ctx;
  app.add_option("--config", ctx.config_flag,
                 "System description (TOML, JSON or Nix); default $TESSERA_CONFIG or "
                 "/etc/tessera/system.toml");
  // Only the verb typed is built: the others' options are costly to set up
  // on every call (see command.h).
  int verb_index = tessera::cli::VerbIndex(argc, argv);
  std::string_view verb = verb_index > 0 ? argv[verb_index] : "";
  if (const auto* owner = tessera::cli::OwnerOf(verb)) {
    if (owner->raw != nullptr) return owner->raw({argv + verb_index + 1, argv + argc});
    owner->fn(app, ctx);
  } else if (!verb.empty()) {
    tessera::cli::ReportUnknownVerb(verb);
    return tessera::cli::kExitUsage;
  } else {
    tessera::cli::RegisterAll(app, ctx);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A missing verb (`tessera`, `tessera config`): the help of the command
    // that needs one says what to type, not just "a subcommand is required".
    CLI::App* command = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr
                            ? tessera::cli::MissingSubcommand(app)
                            : nullptr;
    if (command != nullptr) {
      std::fputs(command->help().c_str(), stderr);
      return tessera::cli::kExitUsage;
    }
    app.exit(e);
    return tessera::cli::kExitUsage;
  }
  return ctx.exit_code;
}
