// ToJson: the normalised model as a description document. Every key the loader
// accepts and every default it fills in is written out, so the text is complete
// (later parts read it without knowing the defaults) and loads back to the same
// System. nlohmann's object type is a std::map, so keys come out sorted.

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "config/rule_json.h"
#include "config/values.h"

namespace tessera::config {
namespace {

using nlohmann::json;

json QubeToJson(const Qube& qube) {
  json out = json::object();
  out["class"] = std::string(ToString(qube.klass));
  out["uuid"] = qube.uuid;
  if (qube.template_name) out["template"] = *qube.template_name;
  if (qube.klass == QubeClass::kTemplate) {
    out["source"] = qube.template_source.empty() ? "busybox" : qube.template_source;
    if (qube.nix) {
      out["nix"] = {
          {"root", qube.nix->root}, {"closure", qube.nix->closure}, {"image", qube.nix->image}};
    }
  }
  out["netvm"] = qube.netvm ? *qube.netvm : "none";
  out["provides_network"] = qube.provides_network;
  if (!qube.uplink.empty()) {
    out["uplink"] = qube.uplink;
    if (!qube.uplink_address.empty()) out["uplink_address"] = qube.uplink_address;
    if (!qube.uplink_gateway.empty()) out["uplink_gateway"] = qube.uplink_gateway;
    out["uplink_dns"] = qube.uplink_dns;
  }
  out["label"] = qube.label;
  out["default_user"] = qube.default_user;
  out["memory"] = qube.memory_mib;
  out["private_size"] = qube.private_size_mib;
  out["cpus"] = qube.cpus;
  out["io_weight"] = qube.io_weight;
  out["io_max"] = {{"read_bps", qube.io_max.read_bps},
                   {"write_bps", qube.io_max.write_bps},
                   {"read_iops", qube.io_max.read_iops},
                   {"write_iops", qube.io_max.write_iops}};
  out["tags"] = qube.tags;
  out["autostart"] = qube.autostart;
  if (qube.klass == QubeClass::kDisposable || qube.klass == QubeClass::kDisposableTemplate) {
    out["idle_timeout"] = qube.idle_timeout;
  }
  out["default_dispvm"] = qube.default_dispvm ? *qube.default_dispvm : "none";
  json rules = json::array();
  for (const FirewallRule& rule : qube.firewall) rules.push_back(FirewallRuleToJson(rule));
  out["firewall"] = std::move(rules);
  out["firewall_runtime"] = qube.reset_runtime_firewall ? "reset-on-apply" : "keep";
  out["features"] = qube.features;
  if (!qube.credentials.empty()) out["credentials"] = qube.credentials;
  out["backend"] = std::string(ToString(qube.backend));
  return out;
}

}  // namespace

std::string ToJson(const System& system) {
  json doc = json::object();
  doc["policy_dir"] = system.policy_dir;
  doc["network_range"] = system.network_range;
  doc["default_dispvm"] = system.default_dispvm ? *system.default_dispvm : "none";
  doc["rpc"] = {{"max_calls_per_qube", system.rpc.max_calls_per_qube},
                {"ask_timeout", system.rpc.ask_timeout_s}};
  json qubes = json::object();
  for (const Qube& qube : system.qubes) qubes[qube.name] = QubeToJson(qube);
  doc["qubes"] = std::move(qubes);
  // Validation admits only valid UTF-8, so `replace` never fires for a System
  // that came from a loader; it keeps hand-built models from throwing.
  return doc.dump(2, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace) + "\n";
}

}  // namespace tessera::config
