// Daily qube verbs, thin over the admin API (daemon/client.h):
//   tessera ls [--json]            tessera start QUBE... | --dispvm[=T]
//   tessera stop QUBE...|--all     tessera kill QUBE...    tessera restart QUBE...
//   tessera run QUBE [--] CMD...   tessera run --dispvm[=T] [--] CMD...
//   tessera logs QUBE [-n N]       tessera prefs QUBE [KEY [VALUE]]
// Exit codes: 0 ok, 1 failure (message on stderr), 2 usage; `run` returns the
// command's exit code and 125 when tessera itself failed (Qubes convention).

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "daemon/client.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

constexpr int kExitRunFailure = 125;

// Connects and calls; on failure prints why (daemon not running, permission,
// the daemon's error message) and returns nullopt.
std::optional<json> Call(const char* verb, const std::string& method, json params,
                         std::span<const int> fds = {}, std::string* code = nullptr) {
  auto client = daemon::AdminClient::Connect();
  if (!client) {
    std::fprintf(stderr, "%s\n", daemon::ExplainConnectError(client.error()).c_str());
    if (code) *code = "not_running";
    return std::nullopt;
  }
  auto reply = client->Call(method, std::move(params), fds);
  if (!reply) {
    std::fprintf(stderr, "tessera %s: %s\n", verb, reply.error().ToString().c_str());
    return std::nullopt;
  }
  if (!reply->ok) {
    if (code) *code = reply->code;
    std::fprintf(stderr, "tessera %s: %s\n", verb, reply->message.c_str());
    return std::nullopt;
  }
  return reply->result;
}

std::string Str(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

int RunLs(bool as_json) {
  auto result = Call("ls", "qube.list", json::object());
  if (!result) return 1;
  const json& qubes = (*result)["qubes"];
  if (as_json) {
    std::printf("%s\n", qubes.dump(2).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "CLASS", "STATE", "TEMPLATE", "NETVM", "LABEL", "MEMORY"}};
  for (const auto& q : qubes) {
    std::string state = Str(q.value("state", json("?")));
    rows.push_back({Str(q.value("name", json("?"))), Str(q.value("class", json("-"))), state,
                    Str(q.value("template", json("-"))), Str(q.value("netvm", json("-"))),
                    Str(q.value("label", json("-"))),
                    q.contains("memory") ? std::to_string(q["memory"].get<uint64_t>()) : "-"});
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
    std::printf("%s\n", line.c_str());
  }
  for (const auto& q : qubes) {
    if (q.contains("reason") && q.value("state", "") == "failed") {
      std::printf("%s failed: %s\n", Str(q["name"]).c_str(), Str(q["reason"]).c_str());
    }
  }
  return 0;
}

int RunStart(const std::vector<std::string>& names, const std::string* dispvm) {
  if (dispvm != nullptr) {
    auto result = Call("start", "qube.start", {{"dispvm", *dispvm}});
    if (!result) return 1;
    std::printf("%s\n", Str((*result)["qube"]).c_str());
    return 0;
  }
  int rc = 0;
  for (const auto& name : names) {
    auto result = Call("start", "qube.start", {{"qube", name}});
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
    auto result = Call(verb, method, {{"all", true}});
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
    auto result = Call(verb, method, {{"qube", name}});
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
    if (!Call("restart", "qube.restart", {{"qube", name}})) rc = 1;
  }
  return rc;
}

// CLI11 reorders and eats `--`, but the command line of `run` must reach the
// qube verbatim: take it from /proc/self/cmdline, after the `run` verb (the
// main app's only option before it is --config FILE).
std::vector<std::string> ArgsAfterRun() {
  std::vector<std::string> argv;
  FILE* f = std::fopen("/proc/self/cmdline", "re");
  if (f == nullptr) return argv;
  std::string cur;
  for (int c; (c = std::fgetc(f)) != EOF;) {
    if (c == 0) {
      argv.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(c));
    }
  }
  std::fclose(f);
  size_t i = 1;
  while (i < argv.size() && argv[i] != "run") i += (argv[i] == "--config") ? 2 : 1;
  if (i >= argv.size()) return {};
  return std::vector<std::string>(argv.begin() + static_cast<long>(i) + 1, argv.end());
}

// `run` parses its own arguments: everything after the qube name (or after
// `--`) belongs to the command, including things that look like options.
int RunRun(const std::vector<std::string>& args) {
  std::optional<std::string> dispvm;
  std::string user;
  std::string qube;
  std::vector<std::string> command;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::printf(
          "Usage: tessera run [--user USER] QUBE [--] CMD [ARG...]\n"
          "       tessera run [--user USER] --dispvm[=TEMPLATE] [--] CMD [ARG...]\n"
          "Runs CMD in QUBE (started first if needed) with this terminal's stdin, stdout\n"
          "and stderr; exits with CMD's exit code (125 if tessera failed, 126 not\n"
          "executable, 127 not found). --dispvm runs it in a fresh disposable made from\n"
          "TEMPLATE (default: the system's default_dispvm) that is destroyed afterwards.\n");
      return 0;
    }
    if (a == "--dispvm") {
      dispvm = "";
    } else if (a.rfind("--dispvm=", 0) == 0) {
      dispvm = a.substr(9);
    } else if (a == "--user" || a == "-u") {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "tessera run: --user needs a value\n");
        return kExitUsage;
      }
      user = args[++i];
    } else if (a.rfind("--user=", 0) == 0) {
      user = a.substr(7);
    } else if (!a.empty() && a[0] == '-' && qube.empty() && !dispvm) {
      std::fprintf(stderr, "tessera run: unknown option %s (use -- before the command)\n",
                   a.c_str());
      return kExitUsage;
    } else if (!dispvm && qube.empty()) {
      qube = a;
    } else {
      break;  // the command starts here
    }
  }
  for (; i < args.size(); ++i) command.push_back(args[i]);
  if (!dispvm && qube.empty()) {
    std::fprintf(stderr, "tessera run: name a qube or use --dispvm (see tessera run --help)\n");
    return kExitUsage;
  }
  if (command.empty()) {
    std::fprintf(stderr, "tessera run: no command given\n");
    return kExitUsage;
  }
  json params = {{"argv", command}};
  if (dispvm) {
    params["dispvm"] = *dispvm;
  } else {
    params["qube"] = qube;
  }
  if (!user.empty()) params["user"] = user;
  int fds[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
  std::string code;
  auto result = Call("run", "qube.run", params, fds, &code);
  if (!result) {
    if (code == "command_not_found") return 127;
    if (code == "command_not_executable") return 126;
    return kExitRunFailure;
  }
  return (*result).value("exit_code", kExitRunFailure);
}

int RunLogs(const std::string& name, unsigned lines) {
  auto result = Call("logs", "qube.logs", {{"qube", name}, {"lines", lines}});
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
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

int RunPrefs(const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 3) {
    std::fprintf(stderr, "Usage: tessera prefs QUBE [KEY [VALUE]]\n");
    return kExitUsage;
  }
  json params = {{"qube", args[0]}};
  if (args.size() >= 2) params["key"] = args[1];
  if (args.size() == 3) params["value"] = args[2];
  auto result = Call("prefs", "qube.prefs", params);
  if (!result) return 1;
  if (args.size() == 2) {
    const json& v = (*result)[args[1]];
    std::printf("%s\n", v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
    return 0;
  }
  size_t width = 0;
  for (const auto& [k, v] : result->items()) width = std::max(width, k.size());
  for (const auto& [k, v] : result->items()) {
    std::string value = v.is_string() ? v.get<std::string>() : v.is_null() ? "-" : v.dump();
    std::printf("%-*s  %s\n", static_cast<int>(width), k.c_str(), value.c_str());
  }
  return 0;
}

void Register(CLI::App& app, CliContext& ctx) {
  {
    auto* cmd = app.add_subcommand("ls", "List qubes (name, class, state, template, netvm, ...)");
    static bool as_json = false;
    cmd->add_flag("--json", as_json, "JSON output");
    cmd->callback([&ctx] { ctx.exit_code = RunLs(as_json); });
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
    auto* cmd = app.add_subcommand("run", "Run a command in a qube or a disposable");
    // Every argument after `run` is ours, also ones that look like options:
    // no fallthrough to the main app, extras kept in order.
    cmd->fallthrough(false);
    cmd->allow_extras();
    cmd->prefix_command();
    cmd->set_help_flag();  // run parses -h itself (it may belong to the command)
    // Two positionals so that CLI11 keeps everything after `--` here instead
    // of handing it to the main app; the values themselves are unused.
    static std::string first;
    static std::vector<std::string> rest;
    cmd->add_option("qube", first, "QUBE (or --dispvm[=TEMPLATE]); [--user U]");
    cmd->add_option("command", rest, "[--] CMD [ARG...]");
    cmd->callback([&ctx] { ctx.exit_code = RunRun(ArgsAfterRun()); });
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
    cmd->add_option("args", args, "QUBE [KEY [VALUE]]")->required();
    cmd->callback([&ctx] { ctx.exit_code = RunPrefs(args); });
  }
}

const CommandRegistration kRegistration({"ls", "start", "stop", "kill", "restart", "run", "logs", "prefs"},
                                         Register);

}  // namespace
}  // namespace tessera::cli
