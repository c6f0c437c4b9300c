// `tessera config check|show`: validate and print the system description.
//
//   tessera config check [FILE]        exit 0 "FILE: ok (N qubes)"; exit 1 with
//                                      one diagnostic per line on stderr
//   tessera config show [FILE] [--json]
//   FILE defaults to --config / $TESSERA_CONFIG / /etc/tessera/system.toml;
//   --example (or FILE "builtin:example") uses the built-in example system.

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "common/paths.h"
#include "config/loader.h"
#include "config/values.h"

namespace tessera::cli {
namespace {

struct ConfigArgs {
  std::string file;
  bool example = false;
  bool json = false;
};

std::string ResolveFile(const ConfigArgs& args, const CliContext& ctx) {
  if (args.example) return std::string(config::kBuiltinExampleName);
  if (!args.file.empty()) return args.file;
  return ConfigPath(ctx.config_flag);
}

// Loads the description; on failure prints every diagnostic and returns nullopt.
std::optional<config::System> Load(const std::string& file) {
  config::LoadOutcome outcome = config::LoadSystem(file);
  for (const config::Diagnostic& diagnostic : outcome.diagnostics) {
    std::fprintf(stderr, "%s\n", diagnostic.ToString().c_str());
  }
  if (!outcome.system && outcome.diagnostics.empty()) {
    std::fprintf(stderr, "%s: invalid system description\n", file.c_str());
  }
  return std::move(outcome.system);
}

int RunCheck(const ConfigArgs& args, const CliContext& ctx) {
  std::string file = ResolveFile(args, ctx);
  std::optional<config::System> system = Load(file);
  if (!system) return 1;
  size_t count = system->qubes.size();
  std::printf("%s: ok (%zu qube%s)\n", file.c_str(), count, count == 1 ? "" : "s");
  return 0;
}

std::string Pad(std::string text, size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

std::string DescribeRule(const config::FirewallRule& rule) {
  std::string out(config::ToString(rule.action));
  if (rule.specialtarget_dns) out += " specialtarget=dns";
  if (!rule.dsthost.empty()) out += " dsthost=" + rule.dsthost;
  if (rule.proto != config::FirewallProto::kAny) {
    out += " proto=" + std::string(config::ToString(rule.proto));
  }
  if (rule.dstports) out += " dstports=" + config::FormatPortRange(*rule.dstports);
  if (rule.icmptype) out += " icmptype=" + std::to_string(*rule.icmptype);
  if (rule.expire) out += " expire=" + std::to_string(*rule.expire);
  if (!rule.comment.empty()) out += "  # " + rule.comment;
  return out;
}

void PrintTable(const std::string& file, const config::System& system) {
  std::printf("system:         %s\n", file.c_str());
  std::printf("policy dir:     %s\n", system.policy_dir.c_str());
  std::printf("default dispvm: %s\n\n",
              system.default_dispvm ? system.default_dispvm->c_str() : "none");
  std::printf("%s%s%s%s%s%s%s%s%s\n", Pad("NAME", 14).c_str(), Pad("CLASS", 21).c_str(),
              Pad("TEMPLATE", 12).c_str(), Pad("NETVM", 14).c_str(), Pad("LABEL", 8).c_str(),
              Pad("MEMORY", 9).c_str(), Pad("PRIVATE", 9).c_str(), Pad("CPUS", 6).c_str(), "FLAGS");
  for (const config::Qube& qube : system.qubes) {
    std::string klass(config::ToString(qube.klass));
    if (qube.klass == config::QubeClass::kTemplate) klass += " (" + qube.template_source + ")";
    std::string flags;
    auto add = [&flags](const std::string& flag) { flags += (flags.empty() ? "" : ",") + flag; };
    if (qube.provides_network) add("provides-network");
    if (qube.autostart) add("autostart");
    if (qube.idle_timeout > 0) add("idle=" + std::to_string(qube.idle_timeout) + "s");
    for (const std::string& tag : qube.tags) add("tag:" + tag);
    uint64_t priv = qube.private_size_mib;
    std::string private_size =
        priv % 1024 == 0 ? std::to_string(priv / 1024) + "G" : std::to_string(priv) + "M";
    std::printf("%s %s %s %s %s %s %s %s %s\n", Pad(qube.name, 13).c_str(), Pad(klass, 20).c_str(),
                Pad(qube.template_name.value_or("-"), 11).c_str(),
                Pad(qube.netvm.value_or("none"), 13).c_str(), Pad(qube.label, 7).c_str(),
                Pad(std::to_string(qube.memory_mib) + "M", 8).c_str(), Pad(private_size, 8).c_str(),
                Pad(std::to_string(qube.cpus), 5).c_str(), flags.c_str());
  }
  for (const config::Qube& qube : system.qubes) {
    if (qube.firewall.empty()) continue;
    std::printf("\nfirewall %s (first match wins, then drop):\n", qube.name.c_str());
    for (size_t i = 0; i < qube.firewall.size(); ++i) {
      std::printf("  %zu. %s\n", i + 1, DescribeRule(qube.firewall[i]).c_str());
    }
  }
}

int RunShow(const ConfigArgs& args, const CliContext& ctx) {
  std::string file = ResolveFile(args, ctx);
  std::optional<config::System> system = Load(file);
  if (!system) return 1;
  if (args.json) {
    std::fputs(config::ToJson(*system).c_str(), stdout);
  } else {
    PrintTable(file, *system);
  }
  return 0;
}

void AddFileOptions(CLI::App* cmd, ConfigArgs& args) {
  cmd->add_option("file", args.file,
                  "System description (.toml, .json or .nix; \"builtin:example\" for the "
                  "built-in example); default: --config, $TESSERA_CONFIG, "
                  "/etc/tessera/system.toml");
  cmd->add_flag("--example", args.example, "Use the built-in example system");
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* config = app.add_subcommand("config", "Validate and show the system description");
  config->require_subcommand(1);

  static ConfigArgs check_args;
  auto* check = config->add_subcommand(
      "check", "Validate a system description; exit 0 if valid, 1 with every error on stderr");
  AddFileOptions(check, check_args);
  check->callback([&ctx] { ctx.exit_code = RunCheck(check_args, ctx); });

  static ConfigArgs show_args;
  auto* show = config->add_subcommand(
      "show", "Print the normalised system (defaults filled in) as a table or as JSON");
  AddFileOptions(show, show_args);
  show->add_flag("--json", show_args.json,
                 "Print the normalised model as stable JSON (sorted keys; loads back "
                 "to the same system)");
  show->callback([&ctx] { ctx.exit_code = RunShow(show_args, ctx); });
}

const CommandRegistration kRegistration({"config"}, Register);

}  // namespace
}  // namespace tessera::cli
