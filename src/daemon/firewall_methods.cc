// Network's firewall half (docs/NETWORK.md "Runtime firewall rules"): the
// runtime rules kept in S/net/firewall/<qube>.json, the effective list
// (runtime, then declared), and the `firewall.*` admin methods
// (`tessera firewall`).

#include <unistd.h>

#include "common/fs.h"
#include "common/json_access.h"
#include "config/rule_json.h"
#include "daemon/network.h"
#include "net/firewall.h"
#include "wire/admin_protocol.h"

namespace tessera::daemon {

using nlohmann::json;
using Call = AdminServer::Call;
namespace codes = wire::codes;

// ---------------------------------------------------------------------------
// Firewall rules

Result<std::vector<config::FirewallRule>> Network::RuntimeRules(const std::string& qube) const {
  if (auto cached = runtime_.find(qube); cached != runtime_.end()) return cached->second;
  auto loaded = LoadRuntimeRules(qube);
  if (loaded) runtime_[qube] = *loaded;
  return loaded;
}

Result<std::vector<config::FirewallRule>> Network::LoadRuntimeRules(const std::string& qube) const {
  std::string path = net_dir_ + "/firewall/" + qube + ".json";
  auto text = ReadFile(path, 16u << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return std::vector<config::FirewallRule>{};
    return Err(text.error());
  }
  json doc = json::parse(*text, nullptr, false);
  if (!doc.is_object() || !doc.contains("rules") || !doc["rules"].is_array()) {
    return Err(path + ": not a runtime rules file");
  }
  std::vector<config::FirewallRule> rules;
  for (size_t i = 0; i < doc["rules"].size(); ++i) {
    auto rule = config::FirewallRuleFromJson(doc["rules"][i]);
    if (!rule) return Err(path + ": rule " + std::to_string(i + 1) + ": " + rule.error().message());
    rules.push_back(std::move(*rule));
  }
  return rules;
}

Status Network::SaveRuntimeRules(const std::string& qube,
                                 const std::vector<config::FirewallRule>& rules) {
  runtime_.erase(qube);  // read again from what is on disk
  std::string path = net_dir_ + "/firewall/" + qube + ".json";
  if (rules.empty()) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Err(Error::FromErrno("remove " + path));
    }
    return Ok();
  }
  json list = json::array();
  for (const auto& rule : rules) list.push_back(config::FirewallRuleToJson(rule));
  return WriteFileAtomic(path, json{{"rules", list}}.dump(2) + "\n", 0600);
}

Result<std::vector<config::FirewallRule>> Network::EffectiveRules(const std::string& client) const {
  std::vector<config::FirewallRule> rules = TRY(RuntimeRules(client));
  const config::Qube* q = ConfigOf(client);
  if (q == nullptr) return rules;
  if (q->firewall.empty()) {
    // The declared default, [accept], stays after the runtime rules.
    if (!rules.empty()) {
      config::FirewallRule accept;
      accept.action = config::FirewallAction::kAccept;
      rules.push_back(accept);
    }
  } else {
    rules.insert(rules.end(), q->firewall.begin(), q->firewall.end());
  }
  return rules;
}

ApiResult<json> Network::ListFirewall(const std::string& qube) const {
  const config::Qube* q = ConfigOf(qube);
  if (q == nullptr) return Fail(codes::kNoSuchQube, "no qube named " + qube);
  auto runtime = RuntimeRules(qube);
  if (!runtime) return Fail(codes::kFailed, runtime.error().ToString());
  auto rules_json = [](const std::vector<config::FirewallRule>& rules) {
    json out = json::array();
    for (const auto& r : rules) {
      json j = config::FirewallRuleToJson(r);
      j["text"] = net::DescribeRule(r);
      out.push_back(std::move(j));
    }
    return out;
  };
  json out{{"qube", qube},
           {"runtime", rules_json(*runtime)},
           {"declared", rules_json(q->firewall)},
           {"netvm", q->netvm ? json(*q->netvm) : json(nullptr)}};
  if (auto it = resolved_.find(qube); it != resolved_.end()) out["resolved"] = it->second;
  out["network"] = Describe(qube);
  return out;
}

void Network::AddRule(const std::string& qube, const json& rule_json, Reply reply) {
  if (ConfigOf(qube) == nullptr) return reply(Fail(codes::kNoSuchQube, "no qube named " + qube));
  auto rule = config::FirewallRuleFromJson(rule_json);
  if (!rule) return reply(Fail(codes::kBadRequest, "invalid rule: " + rule.error().message()));
  auto before = RuntimeRules(qube);
  if (!before) return reply(Fail(codes::kFailed, before.error().ToString()));
  std::vector<config::FirewallRule> after = *before;
  after.push_back(*rule);
  if (Status saved = SaveRuntimeRules(qube, after); !saved) {
    return reply(Fail(codes::kFailed, saved.error().ToString()));
  }
  auto finish = [this, qube, rule = *rule, before = *before, after,
                 reply](std::vector<std::string> unresolved) {
    if (auto link = links_.find(qube); link != links_.end()) {
      if (Status applied = ApplyRules(link->second.netvm); !applied) {
        // Nothing half-done (unless the list changed meanwhile: then it stays).
        if (auto now = RuntimeRules(qube); now && *now == after) {
          (void)SaveRuntimeRules(qube, before);
          (void)ApplyRules(link->second.netvm);
        }
        return reply(Fail(codes::kFailed, "rule not applied: " + applied.error().ToString()));
      }
    }
    ArmExpiry();
    audit_.Write({{"kind", "firewall"},
                  {"qube", qube},
                  {"action", "add"},
                  {"rule", net::DescribeRule(rule)}});
    events_.Emit({{"event", "firewall"}, {"qube", qube}});
    reply(json{{"qube", qube},
               {"number", after.size()},
               {"rule", net::DescribeRule(rule)},
               {"unresolved", unresolved}});
  };
  // A new name is resolved before the rule is applied; the reply waits.
  if (links_.count(qube) != 0 && !net::HostnamesOf({*rule}).empty()) {
    return Resolve(qube, finish);
  }
  finish({});
}

ApiResult<json> Network::DeleteRule(const std::string& qube, int64_t number) {
  if (ConfigOf(qube) == nullptr) return Fail(codes::kNoSuchQube, "no qube named " + qube);
  auto before = RuntimeRules(qube);
  if (!before) return Fail(codes::kFailed, before.error().ToString());
  if (number < 1 || static_cast<size_t>(number) > before->size()) {
    return Fail(codes::kBadRequest, qube + " has " + std::to_string(before->size()) +
                                        " runtime rule" + (before->size() == 1 ? "" : "s") +
                                        "; there is no rule " + std::to_string(number) +
                                        " (declared rules change through the description)");
  }
  std::vector<config::FirewallRule> after = *before;
  config::FirewallRule removed = after[static_cast<size_t>(number - 1)];
  after.erase(after.begin() + (number - 1));
  if (Status saved = SaveRuntimeRules(qube, after); !saved) {
    return Fail(codes::kFailed, saved.error().ToString());
  }
  if (auto link = links_.find(qube); link != links_.end()) {
    if (Status applied = ApplyRules(link->second.netvm); !applied) {
      (void)SaveRuntimeRules(qube, *before);
      return Fail(codes::kFailed, "rule not removed: " + applied.error().ToString());
    }
  }
  ArmExpiry();
  audit_.Write({{"kind", "firewall"},
                {"qube", qube},
                {"action", "del"},
                {"rule", net::DescribeRule(removed)}});
  events_.Emit({{"event", "firewall"}, {"qube", qube}});
  return json{{"qube", qube}, {"removed", net::DescribeRule(removed)}};
}

void Network::Reload(const std::string& qube, Reply reply) {
  if (ConfigOf(qube) == nullptr) return reply(Fail(codes::kNoSuchQube, "no qube named " + qube));
  if (links_.count(qube) == 0) return reply(json{{"qube", qube}, {"linked", false}});
  Resolve(qube, [this, qube, reply](std::vector<std::string> unresolved) {
    auto link = links_.find(qube);
    if (link == links_.end()) return reply(json{{"qube", qube}, {"linked", false}});
    if (Status applied = ApplyRules(link->second.netvm, true); !applied) {
      return reply(Fail(codes::kFailed, applied.error().ToString()));
    }
    ArmExpiry();
    audit_.Write({{"kind", "firewall"}, {"qube", qube}, {"action", "reload"}});
    json out{{"qube", qube}, {"linked", true}, {"unresolved", unresolved}};
    if (auto it = resolved_.find(qube); it != resolved_.end()) out["resolved"] = it->second;
    reply(out);
  });
}

void Network::RegisterMethods(AdminServer& server) {
  // Checks the parameters, then calls handler(qube, params, reply).
  auto with_qube = [&server](std::initializer_list<std::string_view> keys, const char* method,
                             auto handler) {
    return [&server, keys = std::vector<std::string_view>(keys), method, handler](Call call) {
      for (const auto& [key, value] : call.params.items()) {
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
          return server.Reply(
              call,
              Fail(codes::kBadRequest, std::string(method) + ": unknown parameter '" + key + "'"));
        }
      }
      auto qube = RequiredString(call.params, "qube", method);
      if (!qube) return server.Reply(call, Fail(codes::kBadRequest, qube.error().message()));
      handler(*qube, call.params,
              [&server, call](ApiResult<json> result) { server.Reply(call, std::move(result)); });
    };
  };
  // Handlers that answer at once.
  auto now = [](auto answer) {
    return
        [answer](const std::string& q, const json& p, const Reply& reply) { reply(answer(q, p)); };
  };
  server.Register(
      "firewall.list", {.audit_failures_only = true},
      with_qube({"qube"}, "firewall.list",
                now([this](const std::string& q, const json&) { return ListFirewall(q); })));
  server.Register(
      "firewall.add", {},
      with_qube({"qube", "rule"}, "firewall.add",
                [this](const std::string& q, const json& p, const Reply& reply) {
                  if (!p.contains("rule")) {
                    return reply(Fail(codes::kBadRequest, "firewall.add: missing 'rule'"));
                  }
                  AddRule(q, p["rule"], reply);
                }));
  server.Register("firewall.del", {},
                  with_qube({"qube", "number"}, "firewall.del",
                            now([this](const std::string& q, const json& p) -> ApiResult<json> {
                              auto n = RequiredInt(p, "number", 1, 1 << 20, "firewall.del");
                              if (!n) return Fail(codes::kBadRequest, n.error().message());
                              return DeleteRule(q, *n);
                            })));
  server.Register("firewall.reload", {},
                  with_qube({"qube"}, "firewall.reload",
                            [this](const std::string& q, const json&, const Reply& reply) {
                              Reload(q, reply);
                            }));
}

}  // namespace tessera::daemon
