#pragma once
// Reports the system calls each qube's sandbox denies (seccomp violations in
// cells): answers them as soon as they arrive (a denied call waits in the
// kernel for its answer) and records them in the audit log and the event
// stream, naming the qube and the call. Bounded per qube: at most a few
// records a second (the number suppressed goes into the next record, or into
// a summary record once the rate allows, or when the qube stops), and a
// qube that denies itself faster than the daemon wants to answer is paused —
// its denied calls wait, so a flood slows only that qube.
//
//   DenialReporter denials(loop, audit, events);
//   manager.AddObserver(&denials);   // takes each started qube's monitor

#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "daemon/audit.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "daemon/qube_manager.h"
#include "daemon/rate_limit.h"

namespace tessera::daemon {

class DenialReporter : public LifecycleObserver {
 public:
  DenialReporter(EventLoop& loop, AuditLog& audit, EventBus& events)
      : loop_(loop), audit_(audit), events_(events) {}

  void OnRunning(const std::string& qube, backend::Instance& instance) override;
  void OnStopped(const std::string& qube) override;

 private:
  struct Watched {
    std::unique_ptr<backend::DenialMonitor> monitor;
    EventLoop::Watch watch;
    EventLoop::Timer resume;
    EventLoop::Timer flush;           // writes the suppressed count when nothing else does
    TokenBucket answers{5000, 1000};  // denials answered per second
    TokenBucket records{5, 20};       // audit records per second
    uint64_t suppressed = 0;
  };
  void Serve(const std::string& qube, uint32_t events);
  void WriteSuppressed(const std::string& qube, Watched& w);

  EventLoop& loop_;
  AuditLog& audit_;
  EventBus& events_;
  std::map<std::string, std::unique_ptr<Watched>> watched_;
};

}  // namespace tessera::daemon
