#pragma once
// The admin API's methods (docs/DAEMON.md lists them), registered on the
// admin server: each parses its parameters with the strict accessors of
// common/json_access.h (a wrong type is a bad_request, never an exception)
// and calls the qube manager, the run commands or the audit log.
//
//   RegisterAdminMethods({.loop = loop, .pool = pool, .server = server, ...});

#include <chrono>
#include <string>

#include "daemon/admin_server.h"
#include "daemon/audit.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "daemon/policy_watcher.h"
#include "daemon/qube_manager.h"
#include "daemon/run_command.h"
#include "storage/storage.h"

namespace tessera::daemon {

struct MethodContext {
  EventLoop& loop;
  WorkerPool& pool;
  AdminServer& server;
  QubeManager& manager;
  RunCommands& runs;
  PolicyWatcher& policies;
  EventBus& events;
  AuditLog& audit;
  storage::Layout layout;
  std::chrono::milliseconds stop_grace;
  // --allow-host-sources: whose members (besides root) may apply host-path
  // template sources; "" = root only. Looked up per request.
  std::string host_sources_group;
};

void RegisterAdminMethods(MethodContext& context);

}  // namespace tessera::daemon
