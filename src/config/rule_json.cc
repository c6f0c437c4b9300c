#include "config/rule_json.h"

#include "config/loader.h"
#include "config/values.h"

namespace tessera::config {

using nlohmann::json;

json FirewallRuleToJson(const FirewallRule& rule) {
  json out = json::object();
  out["action"] = std::string(ToString(rule.action));
  if (!rule.dsthost.empty()) out["dsthost"] = rule.dsthost;
  if (rule.proto != FirewallProto::kAny) out["proto"] = std::string(ToString(rule.proto));
  if (rule.dstports) out["dstports"] = FormatPortRange(*rule.dstports);
  if (rule.icmptype) out["icmptype"] = *rule.icmptype;
  if (rule.specialtarget_dns) out["specialtarget"] = "dns";
  if (rule.expire) out["expire"] = *rule.expire;
  if (!rule.comment.empty()) out["comment"] = rule.comment;
  return out;
}

Result<FirewallRule> FirewallRuleFromJson(const json& rule) {
  if (!rule.is_object()) return Err("a firewall rule must be an object");
  // The rule inside a one-qube description: the schema's checks, no copy.
  json doc = {{"qubes", {{"q", {{"class", "standalone"}, {"firewall", json::array({rule})}}}}}};
  LoadOutcome outcome = LoadSystemFromString(doc.dump(), Format::kJson, "rule");
  if (outcome.system) return outcome.system->qubes.front().firewall.front();
  std::string message;
  const std::string prefix = "qubes.q.firewall[0]";
  for (const Diagnostic& d : outcome.diagnostics) {
    std::string path = d.path.rfind(prefix, 0) == 0 ? d.path.substr(prefix.size()) : d.path;
    if (!path.empty() && path[0] == '.') path.erase(0, 1);
    if (!message.empty()) message += "\n";
    message += (path.empty() ? "" : path + ": ") + d.message;
  }
  return Err(message.empty() ? "invalid firewall rule" : message);
}

}  // namespace tessera::config
