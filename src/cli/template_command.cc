// `tessera template build|list|show|commit|remove`: manage template trees in
// the state directory (thin over src/storage; generations: storage/generations.h).
//
//   tessera template build NAME --from busybox|debootstrap|host|DIR
//                          [--suite S] [--mirror URL] [--busybox PATH] [--replace]
//   tessera template list [--json]
//   tessera template show NAME [--json]
//   tessera template commit NAME
//   tessera template remove NAME
//
// Exit 0 on success, 1 on failure (message on stderr), 2 on usage errors.

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/command.h"
#include "storage/generations.h"
#include "storage/nix_template.h"
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

std::vector<std::string> UsersOf(const storage::GenerationStatus& status, uint64_t n) {
  std::vector<std::string> out;
  for (const auto& u : status.users) {
    if (u.generation == n) out.push_back(u.qube);
  }
  return out;
}

// "3 (in use: 2 by work, dev)": the current generation and the older ones
// still in use.
std::string GenerationSummary(const storage::GenerationStatus& status) {
  std::string text = std::to_string(status.current);
  std::string used;
  for (uint64_t n : status.generations) {
    std::vector<std::string> users = UsersOf(status, n);
    if (n == status.current || users.empty()) continue;
    std::string names;
    for (const auto& q : users) names += (names.empty() ? "" : ", ") + q;
    used += (used.empty() ? "" : "; ") + std::to_string(n) + " by " + names;
  }
  if (!used.empty()) text += " (older in use: " + used + ")";
  if (status.changes_pending) text += " +changes";
  return text;
}

// The Nix root generation n of a template Nix built holds (nullopt for
// other templates, or when it cannot be read).
std::optional<storage::NixSource> NixOf(const storage::Layout& layout, const std::string& name,
                                        uint64_t n) {
  auto source = storage::ReadNixSource(layout.TemplateDir(name) + "/gen/" + std::to_string(n));
  if (!source) return std::nullopt;
  return *source;
}

nlohmann::json ToJson(const storage::Layout& layout, const storage::TemplateInfo& info,
                      const storage::GenerationStatus& status) {
  nlohmann::json generations = nlohmann::json::array();
  for (uint64_t n : status.generations) {
    nlohmann::json g = {
        {"number", n}, {"current", n == status.current}, {"used_by", UsersOf(status, n)}};
    if (auto nix = NixOf(layout, info.name, n)) {
      g["nix"] = {{"root", nix->root}, {"image", std::string(storage::ToString(nix->image))}};
    }
    generations.push_back(std::move(g));
  }
  return {{"name", info.name},
          {"built_from", info.built_from},
          {"source", info.source},
          {"created", info.created},
          {"host_ro_binds", info.host_ro_binds},
          {"format", info.format},
          {"root", layout.TemplateRoot(info.name)},
          {"generation", status.current},
          {"generations", generations},
          {"changes_pending", status.changes_pending}};
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
  std::vector<storage::GenerationStatus> statuses;
  for (const auto& info : *list) {
    auto status = storage::GetGenerationStatus(layout, info.name);
    if (!status) return Fail("list", status.error());
    statuses.push_back(std::move(*status));
  }
  if (args.json) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < list->size(); ++i)
      out.push_back(ToJson(layout, (*list)[i], statuses[i]));
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-20s %-22s %-20s %s\n", "NAME", "CREATED", "BUILT FROM", "GENERATION");
  for (size_t i = 0; i < list->size(); ++i) {
    const auto& info = (*list)[i];
    std::printf("%-20s %-22s %-20s %s\n", info.name.c_str(), info.created.c_str(),
                info.built_from.c_str(), GenerationSummary(statuses[i]).c_str());
  }
  return 0;
}

int RunShow(const TemplateArgs& args) {
  storage::Layout layout = storage::Layout::FromEnvironment();
  auto info = storage::ReadTemplateInfo(layout, args.name);
  if (!info) return Fail("show", info.error());
  auto status = storage::GetGenerationStatus(layout, args.name);
  if (!status) return Fail("show", status.error());
  if (args.json) {
    std::printf("%s\n", ToJson(layout, *info, *status).dump(2).c_str());
    return 0;
  }
  std::printf("name:          %s\n", info->name.c_str());
  std::printf("built from:    %s\n", info->built_from.c_str());
  std::printf("source:        %s\n", info->source.c_str());
  std::printf("created:       %s\n", info->created.c_str());
  std::printf("root:          %s\n", layout.TemplateRoot(info->name).c_str());
  std::printf("generation:    %s\n", GenerationSummary(*status).c_str());
  if (auto nix = NixOf(layout, info->name, status->current)) {
    std::printf("nix root:      %s (closure image: %s)\n", nix->root.c_str(),
                std::string(storage::ToString(nix->image)).c_str());
  }
  std::string binds;
  for (const auto& b : info->host_ro_binds) binds += (binds.empty() ? "" : " ") + b + " (ro)";
  std::printf("host binds:    %s\n", binds.empty() ? "none" : binds.c_str());
  return 0;
}

int RunCommit(const TemplateArgs& args) {
  storage::Layout layout = storage::Layout::FromEnvironment();
  auto before = storage::CurrentGeneration(layout, args.name);
  if (!before) return Fail("commit", before.error());
  auto after = storage::CommitTemplateChanges(layout, args.name);
  if (!after) return Fail("commit", after.error());
  if (after->number == before->number) {
    std::printf("template %s: no changes to commit (generation %llu)\n", args.name.c_str(),
                static_cast<unsigned long long>(after->number));
  } else {
    std::printf("template %s: generation %llu (app qubes get it at their next start)\n",
                args.name.c_str(), static_cast<unsigned long long>(after->number));
  }
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

  auto* list = cmd->add_subcommand(
      "list", "List templates: current generation, older ones still in use, uncommitted changes");
  list->alias("ls");
  list->add_flag("--json", args.json, "Print JSON");
  list->callback([&ctx] { ctx.exit_code = RunList(args); });

  auto* show = cmd->add_subcommand("show", "Show what template NAME was built from");
  show->add_option("NAME", args.name, "Template name")->required();
  show->add_flag("--json", args.json, "Print JSON");
  show->callback([&ctx] { ctx.exit_code = RunShow(args); });

  auto* commit = cmd->add_subcommand(
      "commit",
      "Make the changes made in template qube NAME a new generation now (refused while it runs:\n"
      "its changes are committed when it stops). App qubes get it at their next start.");
  commit->add_option("NAME", args.name, "Template name")->required();
  commit->callback([&ctx] { ctx.exit_code = RunCommit(args); });

  auto* remove = cmd->add_subcommand(
      "remove", "Delete template NAME (refused while a running qube uses it, naming them)");
  remove->add_option("NAME", args.name, "Template name")->required();
  remove->callback([&ctx] { ctx.exit_code = RunRemove(args); });
}

const CommandRegistration kRegistration({"template"}, Register);

}  // namespace
}  // namespace tessera::cli
