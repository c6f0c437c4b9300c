#include "daemon/rpc_prompts.h"

#include "common/json_access.h"
#include "common/log.h"

namespace tessera::daemon {

using nlohmann::json;
namespace codes = wire::codes;

json RpcPrompts::AskEvent(uint64_t id, const Pending& p) const {
  return json{{"event", "ask"},
              {"id", id},
              {"source", p.request.source},
              {"service", p.request.service},
              {"argument", p.request.argument},
              {"targets", p.request.targets},
              {"default_target",
               p.request.default_target ? json(*p.request.default_target) : json(nullptr)},
              {"timeout_s", p.timeout.count()}};
}

bool RpcPrompts::AnyPrompt() {
  for (auto it = prompts_.begin(); it != prompts_.end();) {
    it = server_.Connected(*it) ? std::next(it) : prompts_.erase(it);
  }
  return !prompts_.empty();
}

void RpcPrompts::Broadcast(const json& event) {
  std::string text = DumpJson(event);
  for (auto it = prompts_.begin(); it != prompts_.end();) {
    bool sent = server_.Send(*it, wire::FrameType::kEvent, 0, 0, text);
    it = sent ? std::next(it) : prompts_.erase(it);
  }
  events_.Emit(event);
}

void RpcPrompts::HandlePrompt(AdminServer::Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) {
    return server_.Reply(call, Fail(codes::kBadRequest, s.error().message()));
  }
  uint64_t connection = call.connection;
  server_.Reply(call, json{{"prompt", true}, {"pending", pending_.size()}});
  prompts_.insert(connection);
  // What waits already, then each new ask as it comes.
  for (const auto& [id, p] : pending_) {
    server_.Send(connection, wire::FrameType::kEvent, 0, 0, DumpJson(AskEvent(id, p)));
  }
}

void RpcPrompts::HandleAsks(AdminServer::Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) {
    return server_.Reply(call, Fail(codes::kBadRequest, s.error().message()));
  }
  json asks = json::array();
  for (const auto& [id, p] : pending_) asks.push_back(AskEvent(id, p));
  server_.Reply(call, json{{"asks", asks}, {"prompts", AnyPrompt() ? prompts_.size() : 0}});
}

void RpcPrompts::HandleAnswer(AdminServer::Call call) {
  const json& p = call.params;
  auto bad = [&](const std::string& m) {
    server_.Reply(call, Fail(codes::kBadRequest, "rpc.answer: " + m));
  };
  if (auto s = OnlyKeys(p, {"id", "allow", "target"}, call.method); !s)
    return bad(s.error().message());
  auto id = RequiredInt(p, "id", 1, INT64_MAX, call.method);
  auto allow = BoolOr(p, "allow", false, call.method);
  auto target = StringOr(p, "target", "", call.method, 128);
  if (!id) return bad(id.error().message());
  if (!allow) return bad(allow.error().message());
  if (!target) return bad(target.error().message());
  if (!p.contains("allow")) return bad("\"allow\" (true or false) is required");
  auto it = pending_.find(static_cast<uint64_t>(*id));
  if (it == pending_.end()) {
    return server_.Reply(call,
                         Fail(codes::kInvalidState, "no pending ask " + std::to_string(*id) +
                                                        " (answered, timed out or withdrawn)"));
  }
  std::string chosen = *target;
  if (*allow && chosen.empty() && it->second.request.default_target) {
    chosen = *it->second.request.default_target;
  }
  if (*allow && chosen.empty()) return bad("allowing needs a target (there is no default)");
  server_.Reply(call, json{{"id", *id}, {"allowed", *allow}, {"target", chosen}});
  Resolve(static_cast<uint64_t>(*id), *allow, chosen,
          *allow ? "" : "denied by the user (uid " + std::to_string(call.peer.uid) + ")");
}

uint64_t RpcPrompts::Ask(AskRequest request, AskAnswer answer) {
  if (!AnyPrompt()) return 0;
  uint64_t id = next_id_++;
  Pending& p = pending_[id];
  p.request = std::move(request);
  p.answer = std::move(answer);
  p.timeout = timeout_();
  p.timer = loop_.After(std::chrono::duration_cast<std::chrono::milliseconds>(p.timeout),
                        [this, id] { Resolve(id, false, "", "ask timed out"); });
  Broadcast(AskEvent(id, p));
  return id;
}

void RpcPrompts::Cancel(uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  pending_.erase(it);
  Broadcast(json{{"event", "ask_withdrawn"}, {"id", id}});
}

void RpcPrompts::Resolve(uint64_t id, bool allowed, std::string target, std::string why) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  AskAnswer answer = std::move(it->second.answer);
  pending_.erase(it);
  json event = {{"event", "ask_answered"}, {"id", id}, {"allowed", allowed}};
  if (allowed) event["target"] = target;
  if (!allowed) event["reason"] = why;
  Broadcast(event);
  answer(allowed, std::move(target), std::move(why));
}

}  // namespace tessera::daemon
