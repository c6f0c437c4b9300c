#pragma once
// The host's clipboard between qubes (docs/RPC.md "The clipboard"), Qubes'
// two-level model: `clipboard.copy {from}` pulls a running qube's clipboard
// (its qubes.ClipboardCopy service) into a buffer held here, at most
// wire::kMaxClipboard bytes; `clipboard.paste {to}` pushes the buffer into a
// running qube (its qubes.ClipboardPaste service) when the policy allows
// qubes.ClipboardPaste from the qube it came from to that one, then clears
// the buffer, so only that qube gets it. As in Qubes, the paste is the
// user's own act: a rule that says `ask` counts as asked and answered; a
// deny refuses it and keeps the buffer. `clipboard.show` says what the
// buffer holds (never its text), `clipboard.clear` empties it. Copy and
// paste are audited (the paste as an `rpc` line with the rule) and sent as
// `clipboard` events. A clipboard service that has not ended after 10 s is
// hung up (a qube's own service may never end).
//
//   Clipboard clipboard(loop, server, manager, runs, policies, broker, audit, events);
//   server.Register("clipboard.copy", {}, [&](auto c) { clipboard.HandleCopy(std::move(c)); });

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "daemon/admin_server.h"
#include "daemon/audit.h"
#include "daemon/event_bus.h"
#include "daemon/policy_watcher.h"
#include "daemon/qube_manager.h"
#include "daemon/rpc_broker.h"
#include "daemon/run_command.h"

namespace tessera::daemon {

class Clipboard {
 public:
  Clipboard(EventLoop& loop, AdminServer& server, QubeManager& manager, RunCommands& runs,
            PolicyWatcher& policies, RpcBroker& broker, AuditLog& audit, EventBus& events);
  ~Clipboard();

  void HandleCopy(AdminServer::Call call);
  void HandlePaste(AdminServer::Call call);
  void HandleShow(AdminServer::Call call);
  void HandleClear(AdminServer::Call call);

 private:
  struct Buffer {
    std::string data;
    std::string source;
    std::chrono::system_clock::time_point copied_at;
    uint64_t serial = 0;   // which copy this is
    bool pasting = false;  // a paste of it is under way: it goes to one qube only
  };
  class Collect;

  // The running qube `name` for `verb`, or why not.
  ApiResult<void> RunningQube(const std::string& name, const char* verb) const;
  // Empties the buffer if it still holds copy `serial` (0: whichever).
  void Clear(const std::string& why, uint64_t serial = 0);

  EventLoop& loop_;
  AdminServer& server_;
  QubeManager& manager_;
  RunCommands& runs_;
  PolicyWatcher& policies_;
  RpcBroker& broker_;
  AuditLog& audit_;
  EventBus& events_;
  std::optional<Buffer> buffer_;
  uint64_t next_serial_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tessera::daemon
