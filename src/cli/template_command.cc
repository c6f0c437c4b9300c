// `tessera template build|list|show|remove`: manage template trees in the
// state directory (thin over src/storage).
//
//   tessera template build NAME --from busybox|debootstrap|host|DIR
//                          [--suite S] [--mirror URL] [--busybox PATH] [--replace]
//   tessera template list [--json]
//   tessera template show NAME [--json]
//   tessera template remove NAME
//
// Exit 0 on success, 1 on failure (message on stderr), 2 on usage errors.

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "storage/storage.h"

namespace tessera::cli {
namespace {

struct TemplateArgs {
  std::string name;
  std::string from;
  std::string suite = "bookworm";
  std::string mirror;
  std::string busybox;
  bool replace = false;
  bool json = false;
};

int Fail(const char* verb, const Error& error) {
  std::fprintf(stderr, "tessera template %s: %s\n", verb, error.ToString().c_str());
  return 1;
}

nlohmann::json ToJson(const storage::Layout& layout, const storage::TemplateInfo& info) {
  return {{"name", info.name},
          {"built_from", info.built_from},
          {"source", info.source},
          {"created", info.created},
          {"host_ro_binds", info.host_ro_binds},
          {"format", info.format},
          {"root", layout.TemplateRoot(info.name)}};
}

int RunBuild(const TemplateArgs& args) {
  storage::Layout layout = storage::Layout::FromEnvironment();
  storage::TemplateBuildOptions options;
  if (args.from == "busybox") {
    options.source = storage::TemplateSource::kBusybox;
  } else if (args.from == "debootstrap") {
    options.source = storage::TemplateSource::kDebootstrap;
  } else if (args.from == "host") {
    options.source = storage::TemplateSource::kHost;
  } else {
    // Anything else must name a directory; a typo ("--from busybx") is a
    // usage error, not a missing file.
    struct stat st {};
    if (::stat(args.from.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      std::fprintf(stderr,
                   "tessera template build: unknown source '%s': expected busybox, debootstrap, "
                   "host or an existing directory\n",
                   args.from.c_str());
      return 2;
    }
    options.source = storage::TemplateSource::kDirectory;
    options.directory = args.from;
  }
  options.suite = args.suite;
  options.mirror = args.mirror;
  options.busybox = args.busybox;
  options.replace = args.replace;
  auto start = std::chrono::steady_clock::now();
  auto info = storage::BuildTemplate(layout, args.name, options);
  if (!info) return Fail("build", info.error());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("template %s built from %s in %.2f s: %s\n", info->name.c_str(),
              info->built_from.c_str(), seconds, layout.TemplateDir(info->name).c_str());
  return 0;
}

int RunList(const TemplateArgs& args) {
  storage::Layout layout = storage::Layout::FromEnvironment();
  auto list = storage::ListTemplates(layout);
  if (!list) return Fail("list", list.error());
  if (args.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& info : *list) out.push_back(ToJson(layout, info));
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-20s %-22s %s\n", "NAME", "CREATED", "BUILT FROM");
  for (const auto& info : *list) {
    std::printf("%-20s %-22s %s\n", info.name.c_str(), info.created.c_str(),
                info.built_from.c_str());
  }
  return 0;
}

int RunShow(const TemplateArgs& args) {
  storage::Layout layout = storage::Layout::FromEnvironment();
  auto info = storage::ReadTemplateInfo(layout, args.name);
  if (!info) return Fail("show", info.error());
  if (args.json) {
    std::printf("%s\n", ToJson(layout, *info).dump(2).c_str());
    return 0;
  }
  std::printf("name:          %s\n", info->name.c_str());
  std::printf("built from:    %s\n", info->built_from.c_str());
  std::printf("source:        %s\n", info->source.c_str());
  std::printf("created:       %s\n", info->created.c_str());
  std::printf("root:          %s\n", layout.TemplateRoot(info->name).c_str());
  std::string binds;
  for (const auto& b : info->host_ro_binds) binds += (binds.empty() ? "" : " ") + b + " (ro)";
  std::printf("host binds:    %s\n", binds.empty() ? "none" : binds.c_str());
  return 0;
}

int RunRemove(const TemplateArgs& args) {
  storage::Layout layout = storage::Layout::FromEnvironment();
  auto removed = storage::RemoveTemplate(layout, args.name);
  if (!removed) return Fail("remove", removed.error());
  std::printf("template %s removed\n", args.name.c_str());
  return 0;
}

void Register(CLI::App& app, CliContext& ctx) {
  // Owned by the static registry for the process lifetime; CLI11 keeps references.
  static TemplateArgs args;
  auto* cmd = app.add_subcommand(
      "template", "Build, list, show and remove templates (root trees of qubes)");
  cmd->require_subcommand(1);

  auto* build = cmd->add_subcommand(
      "build",
      "Build template NAME into the state directory ($TESSERA_STATE_DIR or /var/lib/tessera).\n"
      "--from busybox: tiny tree from the static busybox (seconds)\n"
      "--from debootstrap: Debian minbase via debootstrap (needs root, network or --mirror)\n"
      "--from host: skeleton that binds the host's /usr read-only\n"
      "--from DIR: copy of an existing directory tree");
  build->add_option("NAME", args.name, "Template name ([a-zA-Z][a-zA-Z0-9_.-]*, <= 31 chars)")
      ->required();
  build->add_option("--from", args.from, "busybox | debootstrap | host | DIR")->required();
  build->add_option("--suite", args.suite, "Debian suite for --from debootstrap")
      ->capture_default_str();
  build->add_option("--mirror", args.mirror,
                    "Debian mirror for --from debootstrap (default: from /etc/apt/sources*, "
                    "else http://deb.debian.org/debian)");
  build->add_option("--busybox", args.busybox,
                    "Static busybox binary for --from busybox (default: $TESSERA_BUSYBOX, "
                    "/bin/busybox, /usr/bin/busybox)");
  build->add_flag("--replace", args.replace, "Rebuild (atomically swap) an existing template");
  build->callback([&ctx] { ctx.exit_code = RunBuild(args); });

  auto* list = cmd->add_subcommand("list", "List templates");
  list->add_flag("--json", args.json, "Print JSON");
  list->callback([&ctx] { ctx.exit_code = RunList(args); });

  auto* show = cmd->add_subcommand("show", "Show what template NAME was built from");
  show->add_option("NAME", args.name, "Template name")->required();
  show->add_flag("--json", args.json, "Print JSON");
  show->callback([&ctx] { ctx.exit_code = RunShow(args); });

  auto* remove = cmd->add_subcommand(
      "remove", "Delete template NAME (does not check for qubes using it; the daemon does)");
  remove->add_option("NAME", args.name, "Template name")->required();
  remove->callback([&ctx] { ctx.exit_code = RunRemove(args); });
}

const CommandRegistration kRegistration({"template"}, Register);

}  // namespace
}  // namespace tessera::cli
