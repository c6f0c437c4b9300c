// `tessera firewall`: a qube's firewall rules (docs/NETWORK.md "Firewall"),
// in qvm-firewall's words:
//
//   tessera firewall QUBE [list] [--json]     runtime rules, then declared ones
//   tessera firewall QUBE add RULE...         e.g. `add accept dsthost=example.com
//                                             proto=tcp dstports=443 expire=+3600`
//   tessera firewall QUBE del N               runtime rule N (from `list`)
//   tessera firewall QUBE reload              resolve host names again, re-apply
//
// Runtime rules come first and stay until deleted (the daemon keeps them in
// its state directory); declared rules change only through the description.

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/daemon_call.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

struct FirewallOptions {
  std::vector<std::string> args;
  bool as_json = false;
};

// "accept", "drop" or key=value words into the rule the daemon checks.
std::optional<json> ParseRule(const std::vector<std::string>& words) {
  json rule = json::object();
  for (const std::string& word : words) {
    if (word == "accept" || word == "drop") {
      rule["action"] = word;
      continue;
    }
    size_t eq = word.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr,
                   "tessera firewall add: '%s' is not a rule word (accept, drop or KEY=VALUE)\n",
                   word.c_str());
      return std::nullopt;
    }
    std::string key = word.substr(0, eq);
    std::string value = word.substr(eq + 1);
    if (rule.contains(key)) {
      std::fprintf(stderr, "tessera firewall add: %s given twice\n", key.c_str());
      return std::nullopt;
    }
    if (key == "icmptype" || key == "expire") {
      // Numbers; expire=+N means N seconds from now, as qvm-firewall.
      bool relative = key == "expire" && !value.empty() && value[0] == '+';
      std::string digits = relative ? value.substr(1) : value;
      char* end = nullptr;
      errno = 0;
      long long n = digits.empty() ? -1 : std::strtoll(digits.c_str(), &end, 10);
      if (digits.empty() || *end != '\0' || errno != 0 || n < 0 || n > 253402300799LL) {
        std::fprintf(stderr, "tessera firewall add: %s must be a number%s, got '%s'\n", key.c_str(),
                     key == "expire" ? " (unix time, or +SECONDS)" : "", value.c_str());
        return std::nullopt;
      }
      rule[key] = relative ? static_cast<long long>(std::time(nullptr)) + n : n;
    } else {
      rule[key] = value;
    }
  }
  return rule;
}

void PrintRules(const char* heading, const json& rules) {
  std::printf("%s:\n", heading);
  if (rules.empty()) std::printf("  (none)\n");
  int n = 1;
  for (const json& r : rules) {
    std::printf("  %d  %s\n", n++, r.value("text", std::string("?")).c_str());
  }
}

int List(const std::string& qube, bool as_json) {
  auto r = CallDaemon("firewall", "firewall.list", {{"qube", qube}});
  if (!r) return 1;
  if (as_json) {
    std::printf("%s\n", r->dump().c_str());
    return 0;
  }
  const json& netvm = (*r)["netvm"];
  const json& link = (*r)["network"];
  std::string where = link.value("linked", false)
                          ? ", address " + link.value("ip", std::string()) + " via " +
                                link.value("gateway", std::string())
                      : netvm.is_string() ? ", not linked (it or its netvm is not running)"
                                          : "";
  std::printf("%s: netvm %s%s\n", qube.c_str(),
              netvm.is_string() ? netvm.get<std::string>().c_str() : "none (offline)",
              where.c_str());
  PrintRules("runtime rules (tessera firewall add; numbered for del)", (*r)["runtime"]);
  if ((*r)["declared"].empty()) {
    std::printf("declared rules: none (accept everything)\n");
  } else {
    std::printf("declared rules (the description; then drop everything else):\n");
    for (const json& rule : (*r)["declared"]) {
      std::printf("     %s\n", rule.value("text", std::string("?")).c_str());
    }
  }
  return 0;
}

int Run(const FirewallOptions& o) {
  if (o.args.empty()) {
    std::fprintf(stderr,
                 "tessera firewall: name a qube (tessera firewall QUBE [list|add|del|reload])\n");
    return 2;
  }
  const std::string& qube = o.args[0];
  std::string action = o.args.size() > 1 ? o.args[1] : "list";
  std::vector<std::string> rest(o.args.begin() + std::min<size_t>(o.args.size(), 2), o.args.end());
  auto warn_unresolved = [&](const json& r) {
    if (!r.contains("unresolved") || !r["unresolved"].is_array() || r["unresolved"].empty()) return;
    for (const json& why : r["unresolved"]) {
      std::fprintf(stderr, "warning: host name not resolved: %s\n",
                   why.is_string() ? why.get<std::string>().c_str() : "?");
    }
    std::fprintf(stderr,
                 "warning: %s's firewall drops everything until its names resolve "
                 "(`tessera firewall %s reload`)\n",
                 qube.c_str(), qube.c_str());
  };
  auto print = [&](const json& r, const std::string& text) {
    if (o.as_json) {
      std::printf("%s\n", r.dump().c_str());
    } else {
      std::printf("%s\n", text.c_str());
    }
  };
  if (action == "list") {
    if (!rest.empty()) {
      std::fprintf(stderr, "tessera firewall list: unexpected '%s'\n", rest[0].c_str());
      return 2;
    }
    return List(qube, o.as_json);
  }
  if (action == "add") {
    if (rest.empty()) {
      std::fprintf(stderr,
                   "tessera firewall add: give a rule, e.g. `accept dsthost=example.com`\n");
      return 2;
    }
    auto rule = ParseRule(rest);
    if (!rule) return 2;
    auto r = CallDaemon("firewall add", "firewall.add", {{"qube", qube}, {"rule", *rule}});
    if (!r) return 1;
    warn_unresolved(*r);
    print(*r, "added runtime rule " + std::to_string(r->value("number", 0)) + " of " + qube + ": " +
                  r->value("rule", std::string()));
    return 0;
  }
  if (action == "del") {
    char* end = nullptr;
    long long n = rest.size() == 1 ? std::strtoll(rest[0].c_str(), &end, 10) : 0;
    if (rest.size() != 1 || *end != '\0' || n < 1) {
      std::fprintf(stderr, "tessera firewall del: give the number of a runtime rule (from list)\n");
      return 2;
    }
    auto r = CallDaemon("firewall del", "firewall.del", {{"qube", qube}, {"number", n}});
    if (!r) return 1;
    print(*r, "removed from " + qube + ": " + r->value("removed", std::string()));
    return 0;
  }
  if (action == "reload") {
    if (!rest.empty()) {
      std::fprintf(stderr, "tessera firewall reload: unexpected '%s'\n", rest[0].c_str());
      return 2;
    }
    auto r = CallDaemon("firewall reload", "firewall.reload", {{"qube", qube}});
    if (!r) return 1;
    warn_unresolved(*r);
    print(*r, r->value("linked", false)
                  ? "re-applied the firewall of " + qube
                  : qube + " is not linked to a running netvm; its rules apply when it is");
    return 0;
  }
  std::fprintf(stderr, "tessera firewall: unknown action '%s' (list, add, del or reload)\n",
               action.c_str());
  return 2;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand("firewall", "Show and change a qube's firewall rules");
  cmd->footer(
      "tessera firewall QUBE [list] | add RULE... | del N | reload\n"
      "RULE is qvm-firewall's: accept|drop dsthost=HOST|CIDR proto=tcp|udp|icmp\n"
      "dstports=N[-M] icmptype=N specialtarget=dns expire=UNIXTIME|+SECONDS comment=TEXT.\n"
      "Rules are checked in order, the first match decides; a non-empty list ends in\n"
      "drop. Runtime rules (add/del) come before the declared ones and stay until\n"
      "deleted. Host names are resolved by the qube's netvm when applied and on reload.");
  static FirewallOptions o;
  cmd->add_option("args", o.args, "QUBE [list|add RULE...|del N|reload]");
  cmd->add_flag("--json", o.as_json, "JSON");
  cmd->allow_extras(false);
  cmd->callback([&ctx] { ctx.exit_code = Run(o); });
}

const CommandRegistration kRegistration({"firewall"}, Register);

}  // namespace
}  // namespace tessera::cli
