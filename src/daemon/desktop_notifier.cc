#include "daemon/desktop_notifier.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "common/log.h"
#include "common/spawn.h"

namespace tessera::daemon {

namespace {

std::string FindNotifySend() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (end > start && dirs[start] == '/') {
      std::string candidate = dirs.substr(start, end - start) + "/notify-send";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  return "";
}

}  // namespace

DesktopNotifier::DesktopNotifier(WorkerPool& pool, std::string program)
    : pool_(pool), program_(program.empty() ? FindNotifySend() : std::move(program)) {}

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
