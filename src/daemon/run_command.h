#pragma once
// qube.run: one command in a qube (started first if halted) or in a fresh
// disposable, as an exec session on the qube's agent channel. The caller's
// stdin/stdout/stderr are either passed into the qube (`"streams":"fds"`,
// descriptors attached to the request; only where the backend can) or relayed
// through this admin connection (`"streams":"relay"`: data/eof/credit frames
// whose session is the request id, signal and close frames from the client),
// with end-to-end credits, so a slow reader never makes the daemon buffer more
// than a window per stream. Signal, close and (tty runs) resize frames from
// the client reach the command in either mode. `"tty":{"rows","cols"}` gives
// the command a pty in the qube (relayed streams only); `"detach":true` starts
// it with no streams and answers once it runs. When the caller goes away the
// command is hung up, and a disposable made for it is destroyed. The result
// names the exit code and, when the qube says why, a reason (an OOM kill; the
// qube stopping under the command, which ends it with 143).
//
//   RunCommands runs(server, manager, backend.capabilities());
//   server.Register("qube.run", {.accepts_fds = true}, [&](auto call) {
//   runs.Handle(std::move(call)); });

#include <cstdint>
#include <map>
#include <memory>

#include "backend/backend.h"
#include "daemon/admin_server.h"
#include "daemon/audit.h"
#include "daemon/qube_manager.h"

namespace tessera::daemon {

class RunCommands {
 public:
  RunCommands(EventLoop& loop, AdminServer& server, QubeManager& manager, AuditLog& audit,
              backend::Capabilities capabilities);
  ~RunCommands();

  void Handle(AdminServer::Call call);
  size_t in_flight() const { return runs_.size(); }

 private:
  class Run;
  void Finished(uint64_t serial);

  EventLoop& loop_;
  AdminServer& server_;
  QubeManager& manager_;
  AuditLog& audit_;
  backend::Capabilities capabilities_;
  uint64_t next_serial_ = 1;
  std::map<uint64_t, std::unique_ptr<Run>> runs_;
};

}  // namespace tessera::daemon
