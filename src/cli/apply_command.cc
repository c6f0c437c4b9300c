// `tessera apply FILE [--dry-run|--yes]`: moves the running system to the
// description in FILE, like `nixos-rebuild switch`. The file is validated here
// (so errors name file:line) and again by the daemon; an invalid file changes
// nothing. Without --yes the plan is shown and confirmed on a terminal; with no
// terminal nothing changes.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "common/text.h"
#include "config/loader.h"
#include "wire/admin_client.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

bool DiffIsEmpty(const json& diff) {
  for (const char* part : {"qubes", "system", "disposables"}) {
    if (diff.contains(part) && !diff[part].empty()) return false;
  }
  return true;
}

std::string Names(const json& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + EscapeControl(n.get<std::string>());
  return out;
}

// What happens to the disposables of each disposable template: the preloaded
// ones follow the description, ones in use only when their template goes.
void PrintDisposables(const json& diff) {
  if (!diff.contains("disposables")) return;
  for (const auto& d : diff["disposables"]) {
    std::string dvm = EscapeControl(d.value("template", ""));
    std::string reason = EscapeControl(d.value("reason", ""));
    std::string why = reason.empty() ? "" : " (" + reason + ")";
    std::string counts;
    auto count = [&](const char* key, const char* what) {
      size_t n = d.contains(key) ? d[key].size() : 0;
      if (n > 0) counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + what;
    };
    count("replaced", "replaced");
    count("stopped", "stopped");
    if (int added = d.value("added", 0); added > 0) {
      counts += (counts.empty() ? "" : ", ") + std::to_string(added) + " more";
    }
    if (!counts.empty()) {
      std::printf("  ~ preloaded disposables of %s: %s%s\n", dvm.c_str(), counts.c_str(),
                  why.c_str());
    }
    if (d.contains("in_use_stopped") && !d["in_use_stopped"].empty()) {
      std::printf("  - disposables of %s in use: %s (will be stopped%s)\n", dvm.c_str(),
                  Names(d["in_use_stopped"]).c_str(),
                  reason.empty() ? "" : (": " + reason).c_str());
    }
    if (d.contains("in_use_kept") && !d["in_use_kept"].empty()) {
      std::printf("    disposables of %s in use keep their settings until their command ends: %s\n",
                  dvm.c_str(), Names(d["in_use_kept"]).c_str());
    }
  }
}

void PrintPlan(const json& result, const std::string& file) {
  const json& diff = result["diff"];
  std::map<std::string, std::string> action_of;
  for (const auto& a : result["actions"]) action_of[a.value("qube", "")] = a.value("action", "");
  if (DiffIsEmpty(diff)) {
    std::printf("No changes: the running system already matches %s.\n", file.c_str());
    return;
  }
  std::printf("Changes to apply from %s:\n", file.c_str());
  for (const auto& f : diff["system"]) {
    std::printf("  ~ system %s: %s -> %s\n", f.value("field", "").c_str(),
                f.value("before", "").c_str(), f.value("after", "").c_str());
  }
  for (const auto& c : diff["qubes"]) {
    std::string name = c.value("qube", "");
    std::string kind = c.value("change", "");
    std::string action = action_of.count(name) ? action_of[name] : "";
    std::string note;
    if (action == "stop") note = " (running: will be stopped)";
    if (action == "restart") note = " (running: will be restarted)";
    if (action == "restart pending") {
      note = " (running: keeps its old settings until its next start)";
    }
    if (action == "start") note = " (autostart: will be started)";
    if (kind == "added") {
      std::printf("  + qube %s%s\n", name.c_str(), note.c_str());
    } else if (kind == "removed") {
      std::printf("  - qube %s%s\n", name.c_str(), note.c_str());
    } else {
      bool restart = c.value("needs_restart", false);
      if (note.empty() && restart) note = " (needs a restart; not running now)";
      std::printf("  ~ qube %s%s\n", name.c_str(), note.c_str());
      for (const auto& f : c["fields"]) {
        std::printf("      %s: %s -> %s%s\n", f.value("field", "").c_str(),
                    f.value("before", "").c_str(), f.value("after", "").c_str(),
                    f.value("needs_restart", false) ? "  [restart]" : "");
      }
    }
  }
  PrintDisposables(diff);
  if (result.contains("notes")) {
    for (const auto& n : result["notes"]) {
      std::printf("Note: %s\n",
                  EscapeControl(n.get<std::string>(), EscapeNewlines::kEscape).c_str());
    }
  }
}

int RunApply(const std::string& file, bool dry_run, bool yes, const std::string& restart) {
  if (dry_run && yes) {
    std::fprintf(stderr, "tessera apply: --dry-run and --yes exclude each other\n");
    return kExitUsage;
  }
  config::LoadOutcome outcome = config::LoadSystem(file);
  if (!outcome.system) {
    for (const auto& d : outcome.diagnostics) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    std::fprintf(stderr, "tessera apply: %s is invalid; nothing was changed\n", file.c_str());
    return 1;
  }
  std::string description = config::ToJson(*outcome.system);
  // The daemon records where the running description came from: a path
  // relative to this shell's directory would mean nothing there.
  std::error_code ec;
  const std::string source = std::filesystem::absolute(file, ec).lexically_normal().string();
  if (ec) {
    std::fprintf(stderr, "tessera apply: %s: %s\n", file.c_str(), ec.message().c_str());
    return 1;
  }
  auto client = wire::AdminClient::Connect();
  if (!client) {
    std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
    return 1;
  }
  auto call = [&](bool dry) -> std::optional<json> {
    auto reply = client->Call("system.apply", {{"description", description},
                                               {"source", source},
                                               {"dry_run", dry},
                                               {"restart_on_change", restart}});
    if (!reply) {
      std::fprintf(stderr, "tessera apply: %s\n", reply.error().ToString().c_str());
      return std::nullopt;
    }
    if (!reply->ok) {
      std::fprintf(stderr, "tessera apply: %s\nNothing was changed.\n",
                   EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
      return std::nullopt;
    }
    return reply->result;
  };
  auto plan = call(true);
  if (!plan) return 1;
  PrintPlan(*plan, file);
  bool empty = DiffIsEmpty((*plan)["diff"]);
  if (dry_run) return 0;
  if (empty) return 0;
  if (!yes) {
    if (!::isatty(STDIN_FILENO)) {
      std::printf("Not applied: no --yes and no terminal to confirm on. Nothing was changed.\n"
                  "Run `tessera apply %s --yes` to carry it out.\n", file.c_str());
      return 1;
    }
    std::printf("Apply these changes? [y/N] ");
    std::fflush(stdout);
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::printf("Not applied. Nothing was changed.\n");
      return 1;
    }
  }
  auto done = call(false);
  if (!done) return 1;
  int rc = 0;
  for (const auto& a : (*done)["done"]) {
    bool ok = a.value("ok", false);
    std::printf("%s %s: %s%s\n", a.value("action", "").c_str(), a.value("qube", "").c_str(),
                ok ? "ok" : "FAILED ", ok ? "" : a.value("error", "").c_str());
    if (a.contains("note")) std::printf("  %s\n", a.value("note", "").c_str());
    if (!ok) rc = 1;
  }
  std::printf("Applied %s.\n", file.c_str());
  return rc;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand(
      "apply", "Move the running system to a new description (shows the diff first)");
  static std::string file;
  static bool dry_run = false;
  static bool yes = false;
  static std::string restart = "always";
  cmd->add_option("file", file, "System description (TOML, JSON or Nix)")->required();
  cmd->add_flag("--dry-run", dry_run, "Only show what would change");
  cmd->add_flag("-y,--yes", yes, "Carry it out without asking");
  cmd->add_option("--restart-on-change", restart,
                  "Running qubes whose change needs a restart: always (default), if-idle (only "
                  "those running no command) or never (the change takes effect at their next "
                  "start)")
      ->check(CLI::IsMember({"never", "if-idle", "always"}));
  cmd->callback([&ctx] { ctx.exit_code = RunApply(file, dry_run, yes, restart); });
}

const CommandRegistration kRegistration({"apply"}, Register);

}  // namespace
}  // namespace tessera::cli
