#pragma once
// Asks (docs/RPC.md "ask"): a call an `ask` rule matched waits here for a
// person's answer. A prompt front end registers with `rpc.prompt` (the
// connection then receives every pending ask and each new one as an `ask`
// event; `tessera prompt` is the built-in one); every ask is also an event on
// the bus, for other front ends; `rpc.answer {id, allow, target}` answers;
// `rpc.asks` lists what waits. Never allowed without an answer: no prompt
// registered means an immediate deny, and an ask nobody answers within the
// description's rpc.ask_timeout is denied.
//
//   uint64_t id = prompts.Ask({source, service, argument, targets, default_target},
//                             [](bool allowed, std::string target, std::string why) {...});
//   if (id == 0) deny("no prompt");
//   prompts.Cancel(id);  // the caller went away

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/admin_server.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"

namespace tessera::daemon {

struct AskRequest {
  std::string source;
  std::string service;
  std::string argument;  // "" = none
  std::vector<std::string> targets;
  std::optional<std::string> default_target;
};

// allowed with the chosen target, or denied with why.
using AskAnswer = std::function<void(bool allowed, std::string target, std::string why)>;

class RpcPrompts {
 public:
  RpcPrompts(EventLoop& loop, AdminServer& server, EventBus& events,
             std::function<std::chrono::seconds()> timeout)
      : loop_(loop), server_(server), events_(events), timeout_(std::move(timeout)) {}

  void HandlePrompt(AdminServer::Call call);  // rpc.prompt
  void HandleAsks(AdminServer::Call call);    // rpc.asks
  void HandleAnswer(AdminServer::Call call);  // rpc.answer

  // The ask's id; 0 when no prompt is registered (`answer` is not called).
  uint64_t Ask(AskRequest request, AskAnswer answer);
  // The caller went away: the ask is withdrawn (`answer` is not called).
  void Cancel(uint64_t id);
  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    AskRequest request;
    AskAnswer answer;
    EventLoop::Timer timer;
    std::chrono::seconds timeout;
  };
  nlohmann::json AskEvent(uint64_t id, const Pending& p) const;
  bool AnyPrompt();
  void Broadcast(const nlohmann::json& event);
  void Resolve(uint64_t id, bool allowed, std::string target, std::string why);

  EventLoop& loop_;
  AdminServer& server_;
  EventBus& events_;
  std::function<std::chrono::seconds()> timeout_;
  std::map<uint64_t, Pending> pending_;
  std::set<uint64_t> prompts_;  // connections of registered front ends
  uint64_t next_id_ = 1;
};

}  // namespace tessera::daemon
