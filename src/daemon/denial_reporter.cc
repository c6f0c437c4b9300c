#include "daemon/denial_reporter.h"

#include "common/log.h"

namespace tessera::daemon {

void DenialReporter::OnRunning(const std::string& qube, backend::Instance& instance) {
  std::unique_ptr<backend::DenialMonitor> monitor = instance.TakeDenialMonitor();
  if (!monitor) return;  // none (an adopted qube: its denials fail with ENOSYS, unreported)
  auto w = std::make_unique<Watched>();
  w->monitor = std::move(monitor);
  auto watch = loop_.WatchFd(w->monitor->fd(), EPOLLIN,
                             [this, qube](uint32_t events) { Serve(qube, events); });
  if (!watch) {
    Log(LogLevel::kError, "cannot watch denied calls", {{"qube", qube}, {"error", watch.error().ToString()}});
    return;
  }
  w->watch = std::move(*watch);
  watched_[qube] = std::move(w);
}

void DenialReporter::OnStopped(const std::string& qube) {
  auto it = watched_.find(qube);
  if (it == watched_.end()) return;
  WriteSuppressed(qube, *it->second);
  watched_.erase(it);
}

void DenialReporter::WriteSuppressed(const std::string& qube, Watched& w) {
  if (w.suppressed == 0) return;
  audit_.Write({{"kind", "seccomp"}, {"qube", qube}, {"suppressed", w.suppressed}});
  w.suppressed = 0;
}

void DenialReporter::Serve(const std::string& qube, uint32_t events) {
  auto it = watched_.find(qube);
  if (it == watched_.end()) return;
  Watched& w = *it->second;
  if ((events & EPOLLIN) == 0) {
    // Hung up: nothing in the qube uses the filter any more.
    WriteSuppressed(qube, w);
    watched_.erase(it);
    return;
  }
  if (!w.answers.Take()) {
    // Answering faster than this would let one qube keep the daemon busy:
    // its denied calls wait a moment instead.
    loop_.SetEvents(w.watch, 0);
    w.resume = loop_.After(w.answers.WaitFor(), [this, qube] {
      auto again = watched_.find(qube);
      if (again == watched_.end()) return;
      again->second->resume.Reset();
      loop_.SetEvents(again->second->watch, EPOLLIN);
    });
    return;
  }
  auto denied = w.monitor->AnswerOne();
  if (!denied) {
    Log(LogLevel::kWarn, "denial monitor failed", {{"qube", qube}, {"error", denied.error().ToString()}});
    watched_.erase(it);
    return;
  }
  if (!*denied) return;
  if (!w.records.Take()) {
    if (w.suppressed++ == 0) {
      // A flood that stops right here is still counted, once the rate allows.
      w.flush = loop_.After(w.records.WaitFor(), [this, qube] {
        auto again = watched_.find(qube);
        if (again == watched_.end()) return;
        again->second->flush.Reset();
        again->second->records.Take();  // one summary per wait: bounded either way
        WriteSuppressed(qube, *again->second);
      });
    }
    return;
  }
  nlohmann::json record = {{"kind", "seccomp"},
                           {"qube", qube},
                           {"syscall", (*denied)->syscall},
                           {"pid", (*denied)->pid},
                           {"errno", (*denied)->errno_answered}};
  if (w.suppressed > 0) {
    record["suppressed"] = w.suppressed;  // denials of this qube not recorded one by one
    w.suppressed = 0;
  }
  audit_.Write(record);
  events_.Emit({{"event", "denied"}, {"qube", qube}, {"syscall", (*denied)->syscall}});
  Log(LogLevel::kWarn, "system call denied", {{"qube", qube}, {"syscall", (*denied)->syscall}});
}

}  // namespace tessera::daemon
