#pragma once
// The launcher: the one sequence that turns a LaunchPlan into a running
// instance — the template built if it does not exist yet, storage prepared,
// the backend started — and that retires an instance (stop; a disposable's
// storage destroyed). tesserad runs it on its worker pool; `tessera cell run`
// runs it directly. Blocking.
//
//   LaunchPlan plan = TRY(PlanLaunch(system, "work"));
//   std::unique_ptr<Instance> work = TRY(Launch(backend, layout, plan, on_build));
//   ...
//   TRY(Retire(*work, layout, plan.spec, std::chrono::seconds(5)));

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>

#include "backend/backend.h"
#include "backend/planner.h"
#include "common/error.h"
#include "storage/qube_storage.h"
#include "storage/storage.h"

namespace tessera::backend {

// How storage builds a template from a description's `source`: "busybox"
// (also ""), "debootstrap", "host" or "dir:/absolute/path".
Result<storage::TemplateBuildOptions> TemplateBuildOptionsFor(std::string_view source);

// Called before a template is built (it may take minutes): "building
// template T from S".
using BuildNotice = std::function<void(const TemplateNeed& need)>;

// Builds `need` unless it exists. Concurrent callers in one process build it
// once; a build that loses a race with another process is not an error.
Status EnsureTemplate(const storage::Layout& layout, const TemplateNeed& need,
                      const BuildNotice& notice = nullptr);

// What storage must prepare for `spec`.
storage::QubeStorageRequest StorageRequestFor(const LaunchSpec& spec);

// EnsureTemplate (when the plan's root needs it), storage prepared
// (storage::PrepareQubeStorage: id range, root, private volume, a
// disposable's snapshot), then backend.Start.
Result<std::unique_ptr<Instance>> Launch(Backend& backend, const storage::Layout& layout,
                                         const LaunchPlan& plan,
                                         const BuildNotice& notice = nullptr);

// Stops the instance; a disposable's storage is destroyed after it.
Status Retire(Instance& instance, const storage::Layout& layout, bool disposable,
              std::chrono::milliseconds grace);

// What a crash left of `name`: the backend's runtime state, and a
// disposable's storage.
Status CleanupLeftovers(Backend& backend, const storage::Layout& layout, const std::string& name,
                        bool disposable);

// The launch path as an object, for callers that take it as a dependency
// (tesserad's qube manager; its unit tests substitute one without storage).
class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual Backend& backend() = 0;
  virtual Result<std::unique_ptr<Instance>> Launch(const LaunchPlan& plan,
                                                   const BuildNotice& notice) = 0;
  virtual Status Retire(Instance& instance, bool disposable, std::chrono::milliseconds grace) = 0;
  virtual Status CleanupLeftovers(const std::string& name, bool disposable) = 0;
};

// The real one: the functions above on a backend and a storage layout.
class StorageLauncher : public Launcher {
 public:
  StorageLauncher(Backend& backend, storage::Layout layout)
      : backend_(backend), layout_(std::move(layout)) {}
  Backend& backend() override { return backend_; }
  Result<std::unique_ptr<Instance>> Launch(const LaunchPlan& plan,
                                           const BuildNotice& notice) override {
    return backend::Launch(backend_, layout_, plan, notice);
  }
  Status Retire(Instance& instance, bool disposable, std::chrono::milliseconds grace) override {
    return backend::Retire(instance, layout_, disposable, grace);
  }
  Status CleanupLeftovers(const std::string& name, bool disposable) override {
    return backend::CleanupLeftovers(backend_, layout_, name, disposable);
  }

 private:
  Backend& backend_;
  storage::Layout layout_;
};

}  // namespace tessera::backend
