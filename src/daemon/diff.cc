#include "daemon/diff.h"

#include <algorithm>
#include <cstdlib>
#include <map>

#include "common/text.h"

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

constexpr const char* kPreloadFeature = "preload-dispvm-max";

std::map<std::string, std::string> WithoutPreload(std::map<std::string, std::string> features) {
  features.erase(kPreloadFeature);
  return features;
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
  // Re-wired live by the network layer (daemon/network.h).
  add("netvm", Opt(a.netvm), Opt(b.netvm), false);
  add("provides_network", a.provides_network ? "true" : "false",
      b.provides_network ? "true" : "false", true);
  add("uplink", a.uplink, b.uplink, true);
  add("uplink_address", a.uplink_address, b.uplink_address, true);
  add("uplink_gateway", a.uplink_gateway, b.uplink_gateway, true);
  add("uplink_dns", Join(a.uplink_dns), Join(b.uplink_dns), true);
  add("memory", std::to_string(a.memory_mib), std::to_string(b.memory_mib), true);
  add("cpus", std::to_string(a.cpus), std::to_string(b.cpus), true);
  // Grown in place by the apply, running or not (volumes never shrink).
  add("private_size", FormatBytes(a.private_size_mib << 20), FormatBytes(b.private_size_mib << 20),
      false);
  add("io_weight", std::to_string(a.io_weight), std::to_string(b.io_weight), true);
  add("io_max", config::ToString(a.io_max), config::ToString(b.io_max), true);
  // The preload count is the daemon's bookkeeping (how many disposables to
  // keep ready), not the qube's shape: changing it restarts nothing.
  add("features", Features(WithoutPreload(a.features)), Features(WithoutPreload(b.features)), true);
  auto preload = [](const Qube& q) {
    auto it = q.features.find(kPreloadFeature);
    return it == q.features.end() ? std::string("none") : it->second;
  };
  add(kPreloadFeature, preload(a), preload(b), false);
  add("backend", std::string(config::ToString(a.backend)), std::string(config::ToString(b.backend)),
      true);
  add("source", a.template_source, b.template_source, true);
  auto nix = [](const config::Qube& q) {
    return q.nix ? q.nix->root + " (" + q.nix->image + ")" : std::string();
  };
  add("nix", nix(a), nix(b), true);
  // A qube on a template Nix builds runs on the generation of the root it
  // started with: a new root reaches it when it restarts.
  if (a.template_name && a.template_name == b.template_name &&
      b.klass != config::QubeClass::kStandalone) {
    const Qube* ta = sys_a.Find(*a.template_name);
    const Qube* tb = sys_b.Find(*b.template_name);
    if (ta != nullptr && tb != nullptr && tb->nix) add("template_root", nix(*ta), nix(*tb), true);
  }
  add("label", a.label, b.label, false);
  add("default_user", a.default_user, b.default_user, false);
  add("tags", Join(a.tags), Join(b.tags), false);
  add("autostart", a.autostart ? "true" : "false", b.autostart ? "true" : "false", false);
  add("idle_timeout", std::to_string(a.idle_timeout), std::to_string(b.idle_timeout), false);
  add("default_dispvm", DispVm(a, sys_a), DispVm(b, sys_b), false);
  if (!(a.firewall == b.firewall)) {
    change.fields.push_back({"firewall", Firewall(a.firewall), Firewall(b.firewall), false});
  }
}

std::string JoinFields(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == fields.size() ? " and " : ", ") + fields[i];
  }
  return out;
}

// The disposables of one template after the switch from `before` to `after`;
// `change` is the template's own entry in the qube diff (nullptr: unchanged).
DisposableChange DiffTemplateDisposables(const std::string& dvm, const config::System& before,
                                         const config::System& after, const QubeChange* change,
                                         const std::vector<const RunningDisposable*>& mine) {
  DisposableChange out;
  out.dvm_template = dvm;
  std::vector<std::string> preloaded, in_use;
  for (const RunningDisposable* d : mine) (d->preloaded ? preloaded : in_use).push_back(d->name);
  const Qube* old_q = before.Find(dvm);
  const Qube* new_q = after.Find(dvm);
  if (new_q == nullptr || new_q->klass != config::QubeClass::kDisposableTemplate) {
    // Nothing describes them any more: every one goes, in use or not.
    out.stopped = preloaded;
    out.in_use_stopped = in_use;
    out.reason = new_q == nullptr ? "template removed" : "no longer a disposable template";
    return out;
  }
  std::vector<std::string> inherited;  // the template's settings its disposables were made with
  if (change != nullptr) {
    for (const FieldChange& f : change->fields) {
      if (f.needs_restart) inherited.push_back(f.field);
    }
  }
  size_t count = static_cast<size_t>(PreloadCount(*new_q));
  std::vector<std::string> reasons;
  if (!inherited.empty()) {
    for (size_t i = 0; i < preloaded.size(); ++i) {
      (i < count ? out.replaced : out.stopped).push_back(preloaded[i]);
    }
    out.in_use_kept = in_use;
    reasons.push_back(JoinFields(inherited) + " changed");
  } else if (preloaded.size() > count) {
    out.stopped.assign(preloaded.begin() + static_cast<std::ptrdiff_t>(count), preloaded.end());
  }
  int old_count = old_q != nullptr ? PreloadCount(*old_q) : 0;
  int new_count = static_cast<int>(count);
  if (new_count > old_count) out.added = new_count - old_count;
  if (new_count != old_count) {
    reasons.push_back("preload count " + std::to_string(old_count) + " -> " +
                      std::to_string(new_count));
  }
  for (const auto& r : reasons) out.reason += (out.reason.empty() ? "" : "; ") + r;
  return out;
}

}  // namespace

int PreloadCount(const config::Qube& q) {
  if (q.klass != config::QubeClass::kDisposableTemplate) return 0;
  auto it = q.features.find(kPreloadFeature);
  if (it == q.features.end()) return 0;
  return std::clamp(std::atoi(it->second.c_str()), 0, 16);
}

SystemDiff DiffSystems(const config::System& before, const config::System& after,
                       const std::vector<RunningDisposable>& running) {
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
  if (before.network_range != after.network_range) {
    // Running qubes are re-addressed live by the network layer.
    diff.system_fields.push_back(
        {"network_range", before.network_range, after.network_range, false});
  }
  if (before.policy_dir != after.policy_dir) {
    diff.system_fields.push_back({"policy_dir", before.policy_dir, after.policy_dir, false});
  }
  if (before.default_dispvm != after.default_dispvm) {
    diff.system_fields.push_back(
        {"default_dispvm", Opt(before.default_dispvm), Opt(after.default_dispvm), false});
  }
  if (before.rpc.max_calls_per_qube != after.rpc.max_calls_per_qube) {
    diff.system_fields.push_back({"rpc.max_calls_per_qube",
                                  std::to_string(before.rpc.max_calls_per_qube),
                                  std::to_string(after.rpc.max_calls_per_qube), false});
  }
  if (before.rpc.ask_timeout_s != after.rpc.ask_timeout_s) {
    diff.system_fields.push_back({"rpc.ask_timeout", std::to_string(before.rpc.ask_timeout_s),
                                  std::to_string(after.rpc.ask_timeout_s), false});
  }
  // Disposables, by template: those that exist, and templates whose preload
  // count changed (the pool grows or shrinks).
  std::map<std::string, std::vector<const RunningDisposable*>> by_template;
  for (const RunningDisposable& d : running) by_template[d.dvm_template].push_back(&d);
  for (const QubeChange& c : diff.qubes) {
    const Qube* a = before.Find(c.qube);
    const Qube* b = after.Find(c.qube);
    if ((a != nullptr ? PreloadCount(*a) : 0) != (b != nullptr ? PreloadCount(*b) : 0)) {
      by_template[c.qube];
    }
  }
  for (auto& [dvm, mine] : by_template) {
    std::sort(mine.begin(), mine.end(), [](const RunningDisposable* x, const RunningDisposable* y) {
      return x->name < y->name;
    });
    // A named copy: clang 14 cannot capture a structured binding.
    const std::string& template_name = dvm;
    auto change = std::find_if(diff.qubes.begin(), diff.qubes.end(),
                               [&](const QubeChange& c) { return c.qube == template_name; });
    DisposableChange d = DiffTemplateDisposables(
        dvm, before, after, change == diff.qubes.end() ? nullptr : &*change, mine);
    if (!d.replaced.empty() || !d.stopped.empty() || !d.in_use_stopped.empty() ||
        !d.in_use_kept.empty() || d.added > 0) {
      diff.disposables.push_back(std::move(d));
    }
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
  json disposables = json::array();
  for (const auto& d : diff.disposables) {
    disposables.push_back({{"template", d.dvm_template},
                           {"replaced", d.replaced},
                           {"stopped", d.stopped},
                           {"in_use_stopped", d.in_use_stopped},
                           {"in_use_kept", d.in_use_kept},
                           {"added", d.added},
                           {"reason", d.reason}});
  }
  return {{"qubes", qubes}, {"system", system}, {"disposables", disposables}};
}

}  // namespace tessera::daemon
