#pragma once
// The launch planner: from the system description to what starting one qube
// takes — its LaunchSpec, the netvm that must run first, and the template
// that must exist. Pure (no I/O); used by tesserad and `tessera cell run`.
//
//   LaunchPlan plan = TRY(PlanLaunch(system, "work"));
//   if (plan.netvm) ... start it first ...
//   auto instance = TRY(Launch(backend, layout, plan));   // launcher.h

#include <optional>
#include <string>
#include <string_view>

#include "backend/launch_spec.h"
#include "common/error.h"
#include "config/model.h"
#include "storage/storage.h"

namespace tessera::backend {

// A template a launch needs, and what to build it from if it does not exist
// yet (the template qube's `source`; "" = busybox).
struct TemplateNeed {
  std::string name;
  std::string source;
  // source "nix": the generation the template must be at (a new one is
  // published when it is not; storage/nix_template.h).
  std::optional<storage::NixSource> nix;
};

struct LaunchPlan {
  LaunchSpec spec;
  std::optional<std::string> netvm;           // must be running first
  std::optional<TemplateNeed> template_need;  // must exist first
};

// A configured qube. Features read: "nested-userns" = "1"/"true"/"yes"/"on",
// "pids-max", "cpu-weight", "scratch-mib" (numbers, range-checked; errors
// name the qube and the feature).
Result<LaunchPlan> PlanLaunch(const config::System& system, std::string_view qube);

// A fresh disposable `name` made from the disposable template `dvm_template`:
// its template, netvm, limits and features, and its private volume as the
// snapshot to start from.
Result<LaunchPlan> PlanDisposable(const config::System& system, std::string_view dvm_template,
                                  const std::string& name);

}  // namespace tessera::backend
