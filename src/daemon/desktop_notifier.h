#pragma once
// Desktop notifications from the daemon (docs/RPC.md "notify"): when
// `notify-send` is on the daemon's PATH, Notify runs it (on a worker, at most
// one at a time, killed after 5 s) with the daemon's environment, so it
// reaches a desktop when DBUS_SESSION_BUS_ADDRESS names a session bus the
// daemon may use. Without notify-send it does nothing: the `rpc_denied`
// event is the notification every front end gets. Callers rate-limit.
//
//   DesktopNotifier notifier(pool);
//   notifier.Notify("tessera: call denied", "work -> vault: qubes.Filecopy");

#include <memory>
#include <string>

#include "daemon/event_loop.h"

namespace tessera::daemon {

class DesktopNotifier {
 public:
  // `program`: notify-send's path; "" finds it on PATH now.
  explicit DesktopNotifier(WorkerPool& pool, std::string program = "");
  ~DesktopNotifier();

  bool available() const { return !program_.empty(); }
  // Shows one notification; dropped while the previous one is still running.
  void Notify(std::string summary, std::string body);

 private:
  WorkerPool& pool_;
  std::string program_;
  std::shared_ptr<bool> busy_ = std::make_shared<bool>(false);
};

}  // namespace tessera::daemon
