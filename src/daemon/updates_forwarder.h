#pragma once
// Template updates (docs/NETWORK.md "Template updates"): templates have no
// network, as in Qubes; when one starts, the daemon starts the forwarder in
// it (`tessera-updates-proxy forward`, detached), which listens on
// 127.0.0.1:8082 and sends each connection as a `qubes.UpdatesProxy` call to
// the proxy in the netvm the policy names. The policy allows that call for
// templates only.
//
//   UpdatesForwarder forwarder(loop, manager, runs);
//   manager.AddObserver(&forwarder);

#include <memory>
#include <string>

#include "daemon/event_loop.h"
#include "daemon/qube_manager.h"
#include "daemon/run_command.h"

namespace tessera::daemon {

inline constexpr const char* kUpdatesForwarder = "/run/tessera/tools/bin/tessera-updates-proxy";

class UpdatesForwarder : public LifecycleObserver {
 public:
  UpdatesForwarder(EventLoop& loop, QubeManager& manager, RunCommands& runs)
      : loop_(loop), manager_(manager), runs_(runs) {}
  ~UpdatesForwarder() override { *alive_ = false; }

  void OnRunning(const std::string& qube, backend::Instance& instance) override;

 private:
  EventLoop& loop_;
  QubeManager& manager_;
  RunCommands& runs_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tessera::daemon
