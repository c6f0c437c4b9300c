#pragma once
// The qrexec-style broker (docs/RPC.md): every inter-qube call goes through
// here, from the host (`rpc.call` on the admin socket) or from a qube (a
// call session on its agent channel, made by tessera-call in the qube).
// A call is checked with the policy grammar first (rpc::ValidateCall), its
// source taken from where it came from (never from what it says), the policy
// in force asked (rpc::Decide), and an allowed call run as an RPC service
// session in its target, started first when halted, or in a fresh
// disposable for @dispvm, destroyed when the call ends. Its streams are
// relayed with end-to-end credit (RunCommands). One audit line per call.
//
// A refused call (denied, invalid, no policy, or an `ask` with no prompt to
// ask) answers only "Request refused" (exit 126): the caller learns nothing
// more, as in Qubes; the audit line says why.
//
// A qube has at most `rpc.max_calls_per_qube` calls in flight; more wait in
// a queue (at most RpcLimits::max_queued_calls, then refused with 125), so a
// qube that floods calls slows only itself.
//
//   RpcBroker broker(loop, server, manager, runs, policies, audit, runtime_dir, {});
//   manager.AddObserver(&broker);
//   broker.TakeRunningQubes();

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "daemon/admin_server.h"
#include "daemon/agent_channel.h"
#include "daemon/audit.h"
#include "daemon/desktop_notifier.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "daemon/policy_watcher.h"
#include "daemon/qube_manager.h"
#include "daemon/rate_limit.h"
#include "daemon/rpc_prompts.h"
#include "daemon/run_command.h"
#include "policy/system.h"

namespace tessera::daemon {

struct RpcLimits {
  // In flight per qube: the description's rpc.max_calls_per_qube.
  size_t max_queued_calls = 1024;                // per qube, beyond the ones in flight
  std::chrono::milliseconds reopen_delay{1000};  // a broken call channel is reopened after
};

class RpcBroker : public LifecycleObserver {
 public:
  RpcBroker(EventLoop& loop, AdminServer& server, QubeManager& manager, RunCommands& runs,
            PolicyWatcher& policies, RpcPrompts& prompts, AuditLog& audit, EventBus& events,
            std::string runtime_dir, RpcLimits limits);
  ~RpcBroker() override;

  // rpc.call on the admin socket {target, service, source?}: a call from
  // dom0, or (an admin's test or repair) from the qube named by `source`,
  // which the audit line records with the admin's uid.
  void HandleAdminCall(AdminServer::Call call);
  // Denials with notify=yes also go to the desktop through `notifier`
  // (rate-limited like the events); null: events only.
  void SetNotifier(DesktopNotifier* notifier) { notifier_ = notifier; }
  // Takes the calls of every qube running now (those adopted at start).
  void TakeRunningQubes();

  // LifecycleObserver: a running qube's channel takes its calls.
  void OnRunning(const std::string& qube, backend::Instance& instance) override;
  void OnChannel(const std::string& qube, AgentChannel& channel) override;
  void OnStopped(const std::string& qube) override;

  // The policy's view of the qubes now: the description's, with power
  // states, and the disposables that exist.
  policy::SystemInfo CurrentSystem() const;
  // Calls of `qube` in flight and waiting.
  size_t InFlight(const std::string& qube) const;
  size_t Queued(const std::string& qube) const;

 private:
  class QubeCall;
  class ChannelCalls;
  class Asking;
  struct Pending {
    uint32_t id = 0;
    wire::CallMessage call;
  };
  // One calling qube.
  struct Source {
    std::unique_ptr<ChannelCalls> handler;
    AgentChannel* channel = nullptr;  // null while it has none
    std::map<uint32_t, QubeCall*> active;
    std::deque<Pending> queued;
    EventLoop::Timer reopen;
  };
  // What one call's audit line says.
  struct CallRecord {
    std::chrono::steady_clock::time_point begun;
    nlohmann::json line;
  };

  // Decides and runs a call whose source is known; `caller` hears the end.
  void Dispatch(CallRecord record, const std::string& source, const std::string& target,
                const std::string& service, std::unique_ptr<RunCaller> caller);
  void Refuse(RunCaller& caller, CallRecord record, const std::string& why);
  // Runs an allowed call in `target` (a qube or @dispvm:TEMPLATE).
  void Launch(CallRecord record, const policy::Request& request, const std::string& target,
              const std::optional<std::string>& user, std::unique_ptr<RunCaller> caller);
  // A call to dom0, answered here (qubes.GetDate).
  void HostService(CallRecord record, const policy::Request& request,
                   std::unique_ptr<RunCaller> caller);
  // An `ask`: the call waits for a person's answer (RpcPrompts).
  void AskThenLaunch(CallRecord record, const policy::Request& request,
                     std::shared_ptr<const policy::Policy> policy, const policy::Resolution& res,
                     std::unique_ptr<RunCaller> caller);
  void Answered(uint64_t id, bool allowed, std::string target, std::string why);
  // A denial whose rule says notify=yes: an `rpc_denied` event and a desktop
  // notification, rate-limited per calling qube (the rest counted into the
  // next one's `suppressed`).
  void NotifyDenied(const nlohmann::json& line);
  void Audit(CallRecord record);
  // An apply may have changed policy_dir: the next call reads the new one.
  void FollowPolicyDir();
  // A qube's calls (ChannelCalls).
  void OnCall(const std::string& qube, uint32_t id, wire::CallMessage call);
  void OnCallFrame(const std::string& qube, uint32_t id, wire::Frame& frame);
  void OnCallsLost(const std::string& qube);
  void StartQubeCall(const std::string& qube, uint32_t id, wire::CallMessage call);
  void CallEnded(const std::string& qube, uint32_t id);
  void Reopen(const std::string& qube);
  size_t MaxCalls() const;

  EventLoop& loop_;
  AdminServer& server_;
  QubeManager& manager_;
  RunCommands& runs_;
  PolicyWatcher& policies_;
  RpcPrompts& prompts_;
  AuditLog& audit_;
  EventBus& events_;
  std::string runtime_dir_;
  RpcLimits limits_;
  std::map<std::string, Source> sources_;
  std::map<uint64_t, std::unique_ptr<Asking>> asking_;  // by ask id
  struct Notes {
    Notes(double rate, double burst) : bucket(rate, burst) {}
    TokenBucket bucket;
    uint64_t suppressed = 0;
  };
  std::map<std::string, Notes> denial_notes_;  // by calling qube
  DesktopNotifier* notifier_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tessera::daemon
