#include "daemon/prefs.h"

#include <string>

namespace tessera::daemon {

using nlohmann::json;

json QubePrefs(const config::Qube& q) {
  json fw = json::array();
  for (const auto& r : q.firewall) {
    json rule = {{"action", config::ToString(r.action)}};
    if (!r.dsthost.empty()) rule["dsthost"] = r.dsthost;
    if (r.proto != config::FirewallProto::kAny) rule["proto"] = config::ToString(r.proto);
    if (r.dstports) {
      rule["dstports"] = std::to_string(r.dstports->first) + "-" + std::to_string(r.dstports->last);
    }
    if (r.icmptype) rule["icmptype"] = *r.icmptype;
    if (r.specialtarget_dns) rule["specialtarget"] = "dns";
    if (!r.comment.empty()) rule["comment"] = r.comment;
    fw.push_back(rule);
  }
  return {{"name", q.name},
          {"class", config::ToString(q.klass)},
          {"uuid", q.uuid},
          {"template", q.template_name ? json(*q.template_name) : json(nullptr)},
          {"netvm", q.netvm ? json(*q.netvm) : json("none")},
          {"provides_network", q.provides_network},
          {"uplink", q.uplink.empty() ? json(nullptr) : json(q.uplink)},
          {"uplink_address", q.uplink_address.empty() ? json(nullptr) : json(q.uplink_address)},
          {"uplink_gateway", q.uplink_gateway.empty() ? json(nullptr) : json(q.uplink_gateway)},
          {"uplink_dns", q.uplink_dns},
          {"label", q.label},
          {"default_user", q.default_user},
          {"memory", q.memory_mib},
          {"private_size", q.private_size_mib},
          {"cpus", q.cpus},
          {"tags", q.tags},
          {"autostart", q.autostart},
          {"idle_timeout", q.idle_timeout},
          {"default_dispvm", q.default_dispvm ? json(*q.default_dispvm) : json(nullptr)},
          {"features", q.features},
          {"backend", config::ToString(q.backend)},
          {"source", q.template_source},
          {"nix",
           q.nix ? json{{"root", q.nix->root}, {"closure", q.nix->closure}, {"image", q.nix->image}}
                 : json(nullptr)},
          // Paths only: the contents are read at start, never by prefs.
          {"credentials", q.credentials},
          {"firewall", fw}};
}

}  // namespace tessera::daemon
