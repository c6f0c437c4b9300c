#include "backend/planner.h"

#include <cstdlib>
#include <string>

namespace tessera::backend {
namespace {

bool FeatureOn(const config::Qube& q, const std::string& key) {
  auto it = q.features.find(key);
  if (it == q.features.end()) return false;
  return it->second == "1" || it->second == "true" || it->second == "yes" || it->second == "on";
}

Result<uint64_t> FeatureNumber(const config::Qube& q, const std::string& key, uint64_t fallback,
                               uint64_t lo, uint64_t hi) {
  auto it = q.features.find(key);
  if (it == q.features.end()) return fallback;
  const std::string& v = it->second;
  bool digits = !v.empty() && v.size() <= 12;
  for (char c : v) digits = digits && c >= '0' && c <= '9';
  uint64_t n = digits ? std::strtoull(v.c_str(), nullptr, 10) : 0;
  if (!digits || n < lo || n > hi) {
    return Err(Error("qube " + q.name + ": feature " + key + " = \"" + v + "\": expected " +
                         std::to_string(lo) + ".." + std::to_string(hi),
                     EINVAL));
  }
  return n;
}

// One rlimit value: digits, or "unlimited".
bool ParseRlimitValue(const std::string& text, uint64_t* out) {
  if (text == "unlimited" || text == "infinity") {
    *out = kRlimInfinity;
    return true;
  }
  if (text.empty() || text.size() > 19) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::strtoull(text.c_str(), nullptr, 10);
  return true;
}

// Feature `key` as "SOFT:HARD" or "N" (both N); each value within lo..hi
// (kRlimInfinity counts as above every number) and soft <= hard.
Result<Rlimit> FeatureRlimit(const config::Qube& q, const std::string& key, Rlimit fallback,
                             uint64_t lo, uint64_t hi) {
  auto it = q.features.find(key);
  if (it == q.features.end()) return fallback;
  const std::string& v = it->second;
  size_t colon = v.find(':');
  Rlimit r;
  bool ok = colon == std::string::npos
                ? ParseRlimitValue(v, &r.soft) && ParseRlimitValue(v, &r.hard)
                : ParseRlimitValue(v.substr(0, colon), &r.soft) &&
                      ParseRlimitValue(v.substr(colon + 1), &r.hard);
  std::string range = std::to_string(lo) + ".." + (hi == kRlimInfinity ? "unlimited" : std::to_string(hi));
  if (!ok || r.soft < lo || r.hard < lo || r.soft > hi || r.hard > hi) {
    return Err(Error("qube " + q.name + ": feature " + key + " = \"" + v +
                         "\": expected SOFT:HARD or N, each " + range,
                     EINVAL));
  }
  if (r.soft > r.hard) {
    return Err(Error("qube " + q.name + ": feature " + key + " = \"" + v +
                         "\": the soft limit is above the hard limit",
                     EINVAL));
  }
  return r;
}

// Limits and features shared by a qube and the disposables made from it.
Status FillLimits(const config::Qube& q, LaunchSpec* spec) {
  if (q.backend != config::Backend::kCell) {
    return Err(Error("qube " + q.name + ": backend is " + std::string(config::ToString(q.backend)) +
                         ", which this host cannot run yet (only cell)",
                     ENOTSUP));
  }
  spec->memory_mib = q.memory_mib != 0 ? q.memory_mib : 1024;
  if (q.private_size_mib != 0) spec->private_mib = q.private_size_mib;
  spec->cpus = q.cpus;
  spec->io_weight = q.io_weight;
  spec->io_max = q.io_max;
  spec->nested_userns = FeatureOn(q, "nested-userns");
  spec->pids_max = static_cast<uint32_t>(TRY(FeatureNumber(q, "pids-max", 4096, 16, 1u << 22)));
  spec->cpu_weight = static_cast<uint32_t>(TRY(FeatureNumber(q, "cpu-weight", 100, 1, 10000)));
  spec->scratch_mib = TRY(FeatureNumber(q, "scratch-mib", 512, 1, 1u << 20));
  spec->pty_max = static_cast<uint32_t>(TRY(FeatureNumber(q, "pty-max", 64, 1, 1024)));
  // nofile: the kernel refuses more than fs.nr_open (default 2^20).
  spec->rlimit_nofile = TRY(FeatureRlimit(q, "rlimit-nofile", spec->rlimit_nofile, 1, 1u << 20));
  if (q.features.count("rlimit-nproc") != 0) {
    spec->rlimit_nproc = TRY(FeatureRlimit(q, "rlimit-nproc", {}, 1, kRlimInfinity));
  }
  spec->rlimit_core = TRY(FeatureRlimit(q, "rlimit-core", spec->rlimit_core, 0, kRlimInfinity));
  return Ok();
}

std::optional<TemplateNeed> NeedOf(const config::System& system, const std::string& name) {
  if (name.empty()) return std::nullopt;
  TemplateNeed need{name, "", std::nullopt};
  if (const config::Qube* t = system.Find(name); t != nullptr) {
    need.source = t->template_source;
    if (t->nix) {
      storage::NixSource nix{t->nix->root, t->nix->closure, storage::ClosureImage::kErofs};
      if (t->nix->image == "squashfs") nix.image = storage::ClosureImage::kSquashfs;
      if (t->nix->image == "none") nix.image = storage::ClosureImage::kNone;
      need.nix = std::move(nix);
    }
  }
  return need;
}

}  // namespace

Result<LaunchPlan> PlanLaunch(const config::System& system, std::string_view qube) {
  const config::Qube* q = system.Find(qube);
  if (q == nullptr) {
    return Err(Error("no qube named \"" + std::string(qube) + "\" in the system", ENOENT));
  }
  LaunchPlan plan;
  LaunchSpec& spec = plan.spec;
  spec.name = q->name;
  spec.hostname = q->name;
  spec.klass = q->klass;
  TRY(FillLimits(*q, &spec));
  // Its own credentials: a disposable made from it (PlanDisposable) gets none.
  spec.credentials = q->credentials;
  switch (q->klass) {
    case config::QubeClass::kTemplate:
      if (q->nix) {
        // Its tree is declared: there is nothing a template qube could change.
        return Err(Error("template " + q->name +
                             " is built by Nix: it does not run as a qube; change it in the "
                             "NixOS configuration (services.tessera.templates." +
                             q->name + ") and start its app qubes",
                         EPERM));
      }
      spec.root = RootKind::kTemplate;
      spec.template_name = q->name;
      break;
    case config::QubeClass::kStandalone:
      // (A Nix template cannot be its source: the description refuses that.)
      spec.root = RootKind::kStandalone;
      // The template its root is copied from at the first start (busybox if none).
      spec.template_name = q->template_name.value_or("");
      break;
    case config::QubeClass::kDisposable:
      spec.disposable = true;
      [[fallthrough]];
    case config::QubeClass::kApp:
    case config::QubeClass::kDisposableTemplate:
      spec.root = RootKind::kOverlay;
      if (!q->template_name) return Err(Error("qube " + q->name + ": has no template", EINVAL));
      spec.template_name = *q->template_name;
      break;
  }
  plan.netvm = q->netvm;
  plan.template_need = NeedOf(system, spec.template_name);
  return plan;
}

Result<LaunchPlan> PlanDisposable(const config::System& system, std::string_view dvm_template,
                                  const std::string& name) {
  const config::Qube* q = system.Find(dvm_template);
  if (q == nullptr) {
    return Err(Error("no qube named \"" + std::string(dvm_template) + "\" in the system", ENOENT));
  }
  if (q->klass != config::QubeClass::kDisposableTemplate) {
    return Err(Error("qube " + q->name + " is of class " + std::string(config::ToString(q->klass)) +
                         ", not a disposable template",
                     EINVAL));
  }
  if (!q->template_name) return Err(Error("qube " + q->name + ": has no template", EINVAL));
  LaunchPlan plan;
  LaunchSpec& spec = plan.spec;
  spec.name = name;
  spec.hostname = name;
  spec.klass = config::QubeClass::kDisposable;
  spec.root = RootKind::kOverlay;
  spec.template_name = *q->template_name;
  spec.disposable = true;
  spec.snapshot_from = q->name;
  TRY(FillLimits(*q, &spec));
  plan.netvm = q->netvm;
  plan.template_need = NeedOf(system, spec.template_name);
  return plan;
}

}  // namespace tessera::backend
