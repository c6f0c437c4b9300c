#include "daemon/desktop_notifier.h"

#include <chrono>

#include "common/log.h"
#include "common/path_search.h"
#include "common/spawn.h"

namespace tessera::daemon {

DesktopNotifier::DesktopNotifier(WorkerPool& pool, std::string program)
    : pool_(pool), program_(program.empty() ? FindOnPath("notify-send") : std::move(program)) {}

DesktopNotifier::~DesktopNotifier() = default;

void DesktopNotifier::Notify(std::string summary, std::string body) {
  if (program_.empty() || *busy_) return;
  *busy_ = true;
  ProcessOptions options;
  options.argv = {program_, "--app-name=tessera", "--", std::move(summary), std::move(body)};
  options.out = Output::kDiscard;
  options.err = Output::kCapture;
  options.max_capture_bytes = 4096;
  options.timeout = std::chrono::seconds(5);
  options.group = ProcessGroup::kOwn;
  std::shared_ptr<bool> busy = busy_;
  pool_.Run<std::string>(
      [options] {
        auto r = RunProcess(options);
        if (!r) return r.error().ToString();
        return r->Succeeded() ? std::string() : r->Describe("notify-send") + ": " + r->err;
      },
      [busy](std::string failed) {
        *busy = false;
        if (!failed.empty())
          Log(LogLevel::kWarn, "desktop notification failed", {{"error", failed}});
      });
}

}  // namespace tessera::daemon
