#include "backend/launcher.h"

#include <sys/stat.h>

#include <mutex>

#include "common/log.h"
#include "storage/nix_template.h"

namespace tessera::backend {

Result<storage::TemplateBuildOptions> TemplateBuildOptionsFor(std::string_view source) {
  storage::TemplateBuildOptions options;
  if (source.empty() || source == "busybox") {
    options.source = storage::TemplateSource::kBusybox;
  } else if (source == "debootstrap") {
    options.source = storage::TemplateSource::kDebootstrap;
  } else if (source == "host") {
    options.source = storage::TemplateSource::kHost;
  } else if (source == "nix") {
    options.source = storage::TemplateSource::kNix;
  } else if (source.rfind("dir:", 0) == 0) {
    options.source = storage::TemplateSource::kDirectory;
    options.directory = std::string(source.substr(4));
  } else {
    return Err(Error("unknown template source \"" + std::string(source) + "\"", EINVAL));
  }
  return options;
}

Status EnsureTemplate(const storage::Layout& layout, const TemplateNeed& need,
                      const BuildNotice& notice) {
  // One build at a time in this process: two qubes of a missing template
  // starting together wait for one build rather than racing two.
  static std::mutex build_mu;
  std::lock_guard<std::mutex> lock(build_mu);
  auto info = storage::ReadTemplateInfo(layout, need.name);
  if (info && need.nix) {
    // A Nix template follows the description: a new root is a new generation.
    if (TRY_CTX(storage::PublishNixGeneration(layout, need.name, *need.nix),
                "template " + need.name)) {
      if (notice) notice(need);
    }
    return Ok();
  }
  if (info) return Ok();
  if (info.error().errno_value() != ENOENT) return Err(std::move(info).error());
  storage::TemplateBuildOptions options = TRY(TemplateBuildOptionsFor(need.source));
  if (need.nix) options.nix = *need.nix;
  if (notice) notice(need);
  Log(LogLevel::kInfo, "building template", {{"template", need.name}, {"source", need.source}});
  auto built = storage::BuildTemplate(layout, need.name, options);
  if (!built) {
    // Another process (a daemon, `tessera cell run`) may have built it meanwhile.
    if (storage::ReadTemplateInfo(layout, need.name)) return Ok();
    return Err(std::move(built).error().Wrap("build template " + need.name));
  }
  return Ok();
}

storage::QubeStorageRequest StorageRequestFor(const LaunchSpec& spec) {
  storage::QubeStorageRequest request;
  request.qube = spec.name;
  switch (spec.root) {
    case RootKind::kOverlay:
      request.root = storage::RootSource::kTemplateShared;
      break;
    case RootKind::kTemplate:
      request.root = storage::RootSource::kTemplateOwn;
      break;
    case RootKind::kStandalone:
      request.root = storage::RootSource::kStandalone;
      break;
  }
  request.template_name = spec.template_name;
  request.disposable = spec.disposable;
  request.snapshot_from = spec.snapshot_from;
  request.private_size = spec.private_mib << 20;
  return request;
}

Result<std::unique_ptr<Instance>> Launch(Backend& backend, const storage::Layout& layout,
                                         const LaunchPlan& plan, const BuildNotice& notice) {
  if (plan.template_need) {
    bool needed = true;
    if (plan.spec.root == RootKind::kStandalone) {
      // A standalone qube needs its template only for the first copy of its root.
      struct stat st;
      needed = ::lstat(layout.StandaloneRoot(plan.spec.name).c_str(), &st) != 0;
    }
    if (needed) TRY(EnsureTemplate(layout, *plan.template_need, notice));
  }
  storage::PreparedStorage prepared =
      TRY_CTX(storage::PrepareQubeStorage(layout, StorageRequestFor(plan.spec)),
              "qube " + plan.spec.name + ": storage");
  return backend.Start(plan.spec, prepared);
}

Status Retire(Instance& instance, const storage::Layout& layout, bool disposable,
              std::chrono::milliseconds grace) {
  Status stopped = instance.Stop(grace);
  if (!disposable) return stopped;
  // Whatever the stop said, a disposable leaves nothing behind.
  Status destroyed = storage::DestroyQubeStorage(layout, instance.name());
  return stopped ? destroyed : stopped;
}

Status CleanupLeftovers(Backend& backend, const storage::Layout& layout, const std::string& name,
                        bool disposable) {
  Status cleaned = backend.Cleanup(name);
  if (!disposable) return cleaned;
  Status destroyed = storage::DestroyQubeStorage(layout, name);
  return cleaned ? destroyed : cleaned;
}

}  // namespace tessera::backend
