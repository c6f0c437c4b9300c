#pragma once
// The qrexec-style broker (docs/RPC.md): every inter-qube call goes through
// here. A call is checked with the policy grammar first (rpc::ValidateCall),
// its source taken from where it came from (never from what it says), the
// policy in force asked (rpc::Decide), and an allowed call run as an RPC
// service session in its target, started first when halted, or in a fresh
// disposable for @dispvm, destroyed when the call ends. Its streams are
// relayed with end-to-end credit (RunCommands). One audit line per call.
//
// A refused call (denied, invalid, no policy, or an `ask` with no prompt to
// ask) answers only "Request refused" (exit 126): the caller learns nothing
// more, as in Qubes; the audit line says why.
//
//   RpcBroker broker(loop, server, manager, runs, policies, audit);
//   server.Register("rpc.call", {}, [&](auto call) { broker.HandleAdminCall(std::move(call)); });

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/admin_server.h"
#include "daemon/audit.h"
#include "daemon/policy_watcher.h"
#include "daemon/qube_manager.h"
#include "daemon/run_command.h"
#include "policy/system.h"

namespace tessera::daemon {

class RpcBroker {
 public:
  RpcBroker(AdminServer& server, QubeManager& manager, RunCommands& runs, PolicyWatcher& policies,
            AuditLog& audit, std::string runtime_dir)
      : server_(server),
        manager_(manager),
        runs_(runs),
        policies_(policies),
        audit_(audit),
        runtime_dir_(std::move(runtime_dir)) {}

  // rpc.call on the admin socket {target, service, source?}: a call from
  // dom0, or (an admin's test or repair) from the qube named by `source`,
  // which the audit line records with the admin's uid.
  void HandleAdminCall(AdminServer::Call call);

  // The policy's view of the qubes now: the description's, with power
  // states, and the disposables that exist.
  policy::SystemInfo CurrentSystem() const;

 private:
  // What one call's audit line says.
  struct CallRecord {
    std::chrono::steady_clock::time_point begun;
    nlohmann::json line;
  };
  void Refuse(AdminServer::Call& call, CallRecord record, const std::string& why);
  void Audit(CallRecord record);
  // An apply may have changed policy_dir: the next call reads the new one.
  void FollowPolicyDir();

  AdminServer& server_;
  QubeManager& manager_;
  RunCommands& runs_;
  PolicyWatcher& policies_;
  AuditLog& audit_;
  std::string runtime_dir_;
};

}  // namespace tessera::daemon
