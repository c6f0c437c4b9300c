// Daily qube verbs, thin over the admin API (cli/daemon_call.h):
//   tessera ls [QUBE...] [--json]  tessera start QUBE... | --dispvm[=T]
//   tessera stop QUBE...|--all     tessera kill QUBE...    tessera restart QUBE...
//   tessera logs QUBE [-n N]       tessera prefs QUBE [KEY [VALUE]] [--json]
// Exit codes: 0 ok, 1 failure (message on stderr), 2 usage. `run` is in
// run_command.cc.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/daemon_call.h"
#include "common/text.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

std::string Str(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

// `names` empty: every qube; else only those, in the order given, and each
// unknown name is an error (with the nearest known name as a hint).
int RunLs(const std::vector<std::string>& names, bool as_json) {
  auto result = CallDaemon("ls", "qube.list", json::object());
  if (!result) return 1;
  json qubes = (*result)["qubes"];
  int rc = 0;
  if (!names.empty()) {
    std::vector<std::string> known;
    for (const auto& q : qubes) known.push_back(q.value("name", ""));
    json picked = json::array();
    std::vector<std::string> seen;
    for (const auto& name : names) {
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      auto it = std::find(known.begin(), known.end(), name);
      if (it == known.end()) {
        std::optional<std::string> best = ClosestMatch(name, known);
        std::fprintf(stderr, "tessera ls: no qube named '%s'%s\n",
                     EscapeControl(name, EscapeNewlines::kEscape).c_str(),
                     best ? (" (did you mean '" + *best + "'?)").c_str() : "");
        rc = 1;
        continue;
      }
      picked.push_back(qubes[static_cast<size_t>(it - known.begin())]);
    }
    qubes = std::move(picked);
  }
  if (as_json) {
    std::printf("%s\n", qubes.dump(2).c_str());
    return rc;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "CLASS", "STATE", "TEMPLATE", "NETVM", "LABEL", "MEMORY"}};
  for (const auto& q : qubes) {
    auto field = [&](const char* key) { return Str(q.value(key, json())); };
    rows.push_back({field("name"), field("class"), field("state"), field("template"),
                    field("netvm"), field("label"), field("memory")});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", EscapeControl(line, EscapeNewlines::kEscape).c_str());
  }
  for (const auto& q : qubes) {
    if (q.value("reason", json()).is_string() && q.value("state", "") == "failed") {
      std::printf("%s failed: %s\n", EscapeControl(Str(q["name"]), EscapeNewlines::kEscape).c_str(),
                  EscapeControl(Str(q["reason"]), EscapeNewlines::kEscape).c_str());
    }
  }
  return rc;
}

int RunStart(const std::vector<std::string>& names, const std::string* dispvm) {
  if (dispvm != nullptr) {
    auto result = CallDaemon("start", "qube.start", {{"dispvm", *dispvm}});
    if (!result) return 1;
    std::printf("%s\n", Str((*result)["qube"]).c_str());
    return 0;
  }
  int rc = 0;
  for (const auto& name : names) {
    auto result = CallDaemon("start", "qube.start", {{"qube", name}});
    if (!result) {
      rc = 1;
      continue;
    }
    if (result->value("already_running", false)) {
      std::printf("%s is already running\n", name.c_str());
    }
  }
  return rc;
}

int RunStop(const char* verb, const std::string& method, const std::vector<std::string>& names,
            bool all) {
  if (all) {
    auto result = CallDaemon(verb, method, {{"all", true}});
    if (!result) return 1;
    int rc = 0;
    for (const auto& s : (*result)["stopped"]) {
      if (!s.value("ok", false)) rc = 1;
    }
    return rc;
  }
  if (names.empty()) {
    std::fprintf(stderr, "tessera %s: name at least one qube, or --all\n", verb);
    return kExitUsage;
  }
  int rc = 0;
  for (const auto& name : names) {
    auto result = CallDaemon(verb, method, {{"qube", name}});
    if (!result) {
      rc = 1;
      continue;
    }
    if (result->value("already_halted", false)) std::printf("%s is already halted\n", name.c_str());
  }
  return rc;
}

int RunRestart(const std::vector<std::string>& names) {
  int rc = 0;
  for (const auto& name : names) {
    if (!CallDaemon("restart", "qube.restart", {{"qube", name}})) rc = 1;
  }
  return rc;
}

int RunLogs(const std::string& name, unsigned lines) {
  auto result = CallDaemon("logs", "qube.logs", {{"qube", name}, {"lines", lines}});
  if (!result) return 1;
  for (const auto& rec : (*result)["lines"]) {
    std::string kind = rec.value("kind", "");
    std::string line = rec.value("ts", "") + "  ";
    if (kind == "lifecycle") {
      line += rec.contains("state") ? rec.value("state", "") : rec.value("action", "");
      if (rec.contains("reason")) line += "  (" + rec.value("reason", "") + ")";
    } else if (kind == "admin") {
      const json& peer = rec.value("peer", json::object());
      line += "request " + rec.value("method", "?") + " by uid " + Str(peer.value("uid", json())) +
              ": " + rec.value("result", "?");
      if (rec.contains("params") && rec["params"].contains("argv")) {
        line += "  [" + Str(rec["params"]["argv"]) + "]";
      }
      if (rec.contains("exit_code")) line += "  exit " + Str(rec["exit_code"]);
      if (rec.contains("error")) line += "  " + rec.value("error", "");
    } else {
      line += kind + " " + rec.value("action", "");
      if (rec.contains("reason")) line += "  (" + rec.value("reason", "") + ")";
    }
    std::printf("%s\n", EscapeControl(line, EscapeNewlines::kEscape).c_str());
  }
  return 0;
}

int RunPrefs(const std::vector<std::string>& args, bool as_json) {
  if (args.empty() || args.size() > 3) {
    std::fprintf(stderr, "Usage: tessera prefs QUBE [KEY [VALUE]]\n");
    return kExitUsage;
  }
  json params = {{"qube", args[0]}};
  if (args.size() >= 2) params["key"] = args[1];
  if (args.size() == 3) params["value"] = args[2];
  auto result = CallDaemon("prefs", "qube.prefs", params);
  if (!result) return 1;
  if (as_json) {
    // The daemon's answer as it is: {KEY: VALUE, ...}, null where unset.
    std::printf("%s\n", result->dump(2, ' ', false, json::error_handler_t::replace).c_str());
    return 0;
  }
  if (args.size() == 2) {
    const json& v = (*result)[args[1]];
    std::printf("%s\n", EscapeControl(v.is_string() ? v.get<std::string>() : v.dump(),
                                      EscapeNewlines::kEscape)
                            .c_str());
    return 0;
  }
  size_t width = 0;
  for (const auto& [k, v] : result->items()) width = std::max(width, k.size());
  for (const auto& [k, v] : result->items()) {
    std::string value = v.is_string() ? v.get<std::string>() : v.is_null() ? "-" : v.dump();
    std::printf("%-*s  %s\n", static_cast<int>(width), k.c_str(),
                EscapeControl(value, EscapeNewlines::kEscape).c_str());
  }
  return 0;
}

void Register(CLI::App& app, CliContext& ctx) {
  {
    auto* cmd = app.add_subcommand(
        "ls", "List qubes (name, class, state, template, netvm, ...); all, or the QUBEs named");
    static bool as_json = false;
    static std::vector<std::string> names;
    cmd->add_option("qubes", names, "Only these qubes (an unknown name is an error)");
    cmd->add_flag("--json", as_json, "JSON output (an array; null where a value is absent)");
    cmd->callback([&ctx] { ctx.exit_code = RunLs(names, as_json); });
  }
  {
    auto* cmd = app.add_subcommand("start", "Start qubes (their netvms first)");
    static std::vector<std::string> names;
    static std::string dispvm;
    cmd->add_option("qubes", names, "Qubes to start");
    auto* d = cmd->add_option("--dispvm", dispvm,
                              "Start a new disposable from TEMPLATE (\"\" = default); it is "
                              "destroyed at stop or after the template's idle_timeout")
                  ->expected(0, 1);
    cmd->callback([&ctx, d] {
      if (d->count() == 0 && names.empty()) {
        std::fprintf(stderr, "tessera start: name at least one qube, or --dispvm\n");
        ctx.exit_code = kExitUsage;
        return;
      }
      ctx.exit_code = RunStart(names, d->count() > 0 ? &dispvm : nullptr);
    });
  }
  for (const char* verb : {"stop", "kill"}) {
    bool is_kill = std::string(verb) == "kill";
    auto* cmd = app.add_subcommand(
        verb, is_kill ? "Kill qubes immediately (no grace period)"
                      : "Stop qubes (SIGTERM, then SIGKILL after the grace period)");
    auto names = std::make_shared<std::vector<std::string>>();
    auto all = std::make_shared<bool>(false);
    cmd->add_option("qubes", *names, "Qubes");
    cmd->add_flag("--all", *all, "Every running qube (network qubes last)");
    cmd->callback([&ctx, names, all, verb, is_kill] {
      ctx.exit_code = RunStop(verb, is_kill ? "qube.kill" : "qube.stop", *names, *all);
    });
  }
  {
    auto* cmd = app.add_subcommand("restart", "Stop then start qubes");
    static std::vector<std::string> names;
    cmd->add_option("qubes", names, "Qubes")->required();
    cmd->callback([&ctx] { ctx.exit_code = RunRestart(names); });
  }
  {
    auto* cmd = app.add_subcommand("logs", "Lifecycle log of a qube (from the audit log)");
    static std::string name;
    static unsigned lines = 200;
    cmd->add_option("qube", name, "Qube")->required();
    cmd->add_option("-n,--lines", lines, "At most this many lines (default 200)");
    cmd->callback([&ctx] { ctx.exit_code = RunLogs(name, lines); });
  }
  {
    auto* cmd = app.add_subcommand(
        "prefs", "Show a qube's properties (they come from the declarative description; "
                 "change them with `tessera apply`)");
    static std::vector<std::string> args;
    static bool as_json = false;
    cmd->add_option("args", args, "QUBE [KEY [VALUE]]")->required();
    cmd->add_flag("--json", as_json, "JSON output (an object; null where a value is unset)");
    cmd->callback([&ctx] { ctx.exit_code = RunPrefs(args, as_json); });
  }
}

const CommandRegistration kRegistration({"ls", "start", "stop", "kill", "restart", "logs", "prefs"},
                                         Register);

}  // namespace
}  // namespace tessera::cli
