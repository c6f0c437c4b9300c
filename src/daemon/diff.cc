#include "daemon/diff.h"

#include <map>

namespace tessera::daemon {

using config::Qube;
using nlohmann::json;

std::string_view ToString(ChangeKind kind) {
  switch (kind) {
    case ChangeKind::kAdded: return "added";
    case ChangeKind::kRemoved: return "removed";
    case ChangeKind::kChanged: return "changed";
  }
  return "changed";
}

namespace {

std::string Opt(const std::optional<std::string>& v) { return v ? *v : "none"; }

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return "[" + out + "]";
}

std::string Features(const std::map<std::string, std::string>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += (out.empty() ? "" : ",") + k + "=" + v;
  return "{" + out + "}";
}

std::string Firewall(const std::vector<config::FirewallRule>& rules) {
  return std::to_string(rules.size()) + " rule" + (rules.size() == 1 ? "" : "s");
}

// A qube's default_dispvm as the validator resolved it (the system default
// already applied; unset = none), marked when it is the system's default, so
// the diff never shows a placeholder where a real template is meant.
std::string DispVm(const Qube& q, const config::System& system) {
  if (!q.default_dispvm) return "none";
  if (system.default_dispvm == q.default_dispvm) return *q.default_dispvm + " (system default)";
  return *q.default_dispvm;
}

// Which fields a running cell cannot pick up without a restart: everything
// that shapes the cell (root, limits, namespaces, network wiring). Label, tags,
// autostart, idle timeout and default disposable are daemon-side bookkeeping;
// firewall rules are reloaded live by the network layer.
void CompareQubes(const Qube& a, const config::System& sys_a, const Qube& b,
                  const config::System& sys_b, QubeChange& change) {
  auto add = [&](const char* field, std::string before, std::string after, bool restart) {
    if (before == after) return;
    change.fields.push_back({field, std::move(before), std::move(after), restart});
    if (restart) change.needs_restart = true;
  };
  add("class", std::string(config::ToString(a.klass)), std::string(config::ToString(b.klass)), true);
  add("uuid", a.uuid, b.uuid, true);
  add("template", Opt(a.template_name), Opt(b.template_name), true);
  add("netvm", Opt(a.netvm), Opt(b.netvm), true);
  add("provides_network", a.provides_network ? "true" : "false",
      b.provides_network ? "true" : "false", true);
  add("memory", std::to_string(a.memory_mib), std::to_string(b.memory_mib), true);
  add("cpus", std::to_string(a.cpus), std::to_string(b.cpus), true);
  add("io_weight", std::to_string(a.io_weight), std::to_string(b.io_weight), true);
  add("io_max", config::ToString(a.io_max), config::ToString(b.io_max), true);
  add("features", Features(a.features), Features(b.features), true);
  add("backend", std::string(config::ToString(a.backend)), std::string(config::ToString(b.backend)),
      true);
  add("source", a.template_source, b.template_source, true);
  add("label", a.label, b.label, false);
  add("tags", Join(a.tags), Join(b.tags), false);
  add("autostart", a.autostart ? "true" : "false", b.autostart ? "true" : "false", false);
  add("idle_timeout", std::to_string(a.idle_timeout), std::to_string(b.idle_timeout), false);
  add("default_dispvm", DispVm(a, sys_a), DispVm(b, sys_b), false);
  if (!(a.firewall == b.firewall)) {
    change.fields.push_back({"firewall", Firewall(a.firewall), Firewall(b.firewall), false});
  }
}

}  // namespace

SystemDiff DiffSystems(const config::System& before, const config::System& after) {
  SystemDiff diff;
  std::map<std::string, const Qube*> old_qubes, new_qubes;
  for (const Qube& q : before.qubes) old_qubes[q.name] = &q;
  for (const Qube& q : after.qubes) new_qubes[q.name] = &q;
  std::map<std::string, QubeChange> changes;
  for (const auto& [name, q] : old_qubes) {
    auto it = new_qubes.find(name);
    if (it == new_qubes.end()) {
      changes[name] = {name, ChangeKind::kRemoved, {}, false};
      continue;
    }
    QubeChange change{name, ChangeKind::kChanged, {}, false};
    CompareQubes(*q, before, *it->second, after, change);
    if (!change.fields.empty()) changes[name] = std::move(change);
  }
  for (const auto& [name, q] : new_qubes) {
    if (!old_qubes.count(name)) changes[name] = {name, ChangeKind::kAdded, {}, false};
  }
  for (auto& [name, c] : changes) diff.qubes.push_back(std::move(c));
  if (before.policy_dir != after.policy_dir) {
    diff.system_fields.push_back({"policy_dir", before.policy_dir, after.policy_dir, false});
  }
  if (before.default_dispvm != after.default_dispvm) {
    diff.system_fields.push_back(
        {"default_dispvm", Opt(before.default_dispvm), Opt(after.default_dispvm), false});
  }
  return diff;
}

json DiffToJson(const SystemDiff& diff) {
  auto field_json = [](const FieldChange& f) {
    return json{{"field", f.field}, {"before", f.before}, {"after", f.after},
                {"needs_restart", f.needs_restart}};
  };
  json qubes = json::array();
  for (const auto& c : diff.qubes) {
    json fields = json::array();
    for (const auto& f : c.fields) fields.push_back(field_json(f));
    qubes.push_back({{"qube", c.qube}, {"change", ToString(c.kind)}, {"fields", fields},
                     {"needs_restart", c.needs_restart}});
  }
  json system = json::array();
  for (const auto& f : diff.system_fields) system.push_back(field_json(f));
  return {{"qubes", qubes}, {"system", system}};
}

}  // namespace tessera::daemon
