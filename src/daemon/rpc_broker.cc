#include "daemon/rpc_broker.h"

#include "common/json_access.h"
#include "common/log.h"
#include "common/names.h"
#include "rpc/call_request.h"
#include "rpc/decision.h"
#include "rpc/system_from_config.h"

namespace tessera::daemon {

using nlohmann::json;
namespace codes = wire::codes;

namespace {

constexpr const char* kRefused = "Request refused";
constexpr std::string_view kDispVmPrefix = "@dispvm:";

}  // namespace

policy::SystemInfo RpcBroker::CurrentSystem() const {
  const config::System& system = manager_.config().system();
  policy::SystemInfo info = rpc::SystemFromConfig(system, [this](std::string_view name) {
    const QubeRecord* record = manager_.Record(std::string(name));
    return record != nullptr && record->state == QubeState::kRunning;
  });
  for (const RunningDisposable& d : manager_.Disposables()) {
    const QubeRecord* record = manager_.Record(d.name);
    if (record == nullptr || record->state != QubeState::kRunning) continue;
    rpc::AddDisposable(info, system, d.name, d.dvm_template, d.preloaded);
  }
  return info;
}

void RpcBroker::FollowPolicyDir() {
  const std::string& dir = manager_.config().system().policy_dir;
  policy::PolicyDirs wanted = PolicyDirsFor(dir, runtime_dir_);
  if (wanted.policy_dir != policies_.dirs().policy_dir) policies_.Watch(std::move(wanted));
}

void RpcBroker::HandleAdminCall(AdminServer::Call call) {
  CallRecord record{std::chrono::steady_clock::now(), json{{"kind", "rpc"}}};
  auto bad = [&](const std::string& message) {
    server_.Reply(call, Fail(codes::kBadRequest, "rpc.call: " + message));
  };
  if (auto s = OnlyKeys(call.params, {"target", "service", "source", "streams"}, "rpc.call"); !s) {
    return bad(s.error().message());
  }
  auto target = StringOr(call.params, "target", "", "rpc.call", 4096);
  auto service = RequiredString(call.params, "service", "rpc.call", 4096);
  auto source = StringOr(call.params, "source", "dom0", "rpc.call", 64);
  auto streams = StringOr(call.params, "streams", "relay", "rpc.call", 16);
  for (const auto* r : {&target, &service, &source, &streams}) {
    if (!*r) return bad(r->error().message());
  }
  if (*streams != "relay") return bad("streams must be \"relay\"");
  // An admin may call as a qube (tests, repairs): only a qube that exists,
  // and the audit line says who did.
  if (*source != "dom0") {
    if (!manager_.Exists(*source)) {
      return server_.Reply(call, tl::unexpected(manager_.NoSuchQube(*source)));
    }
    record.line["impersonated_by"] = call.peer.uid;
  }
  json& line = record.line;
  line["source"] = *source;
  line["requested_target"] = *target;
  line["service"] = *service;
  auto request = rpc::ValidateCall(*target, *service, *source);
  if (!request)
    return Refuse(call, std::move(record), "invalid request: " + request.error().message());
  line["service"] = request->service;
  line["argument"] = request->argument == "+" ? "" : request->argument.substr(1);

  FollowPolicyDir();
  std::shared_ptr<const policy::Policy> policy = policies_.Current();
  if (policy == nullptr) {
    auto errors = policies_.LastErrors();
    return Refuse(call, std::move(record),
                  "no policy loaded" +
                      (errors.empty() ? std::string() : ": " + errors.front().ToPathString()));
  }
  policy::SystemInfo system = CurrentSystem();
  policy::Resolution res = rpc::Decide(*policy, *request, system);
  if (res.rule_index >= 0) {
    line["rule"] = policy->Where(policy->rules()[static_cast<size_t>(res.rule_index)]);
  } else {
    line["rule"] = nullptr;
  }
  if (res.decision == policy::Decision::kDeny)
    return Refuse(call, std::move(record), policy->Reason(res));
  if (res.decision == policy::Decision::kAsk) {
    // Never allowed without an answer: no prompt front end asks yet.
    line["decision"] = "ask";
    return Refuse(call, std::move(record),
                  "ask: no prompt is available to ask, so the call is denied");
  }
  line["decision"] = "allow";
  line["target"] = res.target;
  line["reason"] = "allowed by policy " + line["rule"].get<std::string>();
  if (res.target == "dom0") {
    line["reason"] = "allowed, but dom0 runs no RPC services";
    record.line["exit_status"] = 125;
    Audit(std::move(record));
    return server_.Reply(call, Fail(codes::kFailed, "dom0 runs no RPC services (yet)"));
  }
  RunRequest run;
  if (res.target.rfind(kDispVmPrefix, 0) == 0) {
    run.disposable = true;
    run.dvm_template = res.target.substr(kDispVmPrefix.size());
  } else {
    run.qube = res.target;
  }
  run.relay = true;
  run.open.user.clear();  // the target's default_user, unless the rule says user=
  run.open.service = wire::ServiceCall{request->service, line["argument"].get<std::string>(),
                                       *source, target->empty() ? "@default" : *target};
  if (res.user && *res.user != "DEFAULT") {
    if (!IsUserSpec(*res.user)) {
      line["reason"] = "policy names user \"" + *res.user + "\", not a user name or UID[:GID]";
      Audit(std::move(record));
      return server_.Reply(call, Fail(codes::kFailed, "call failed: bad user= in the policy"));
    }
    run.open.user = *res.user;
  }
  runs_.Start(std::move(call), std::move(run), [this, record](const RunOutcome& outcome) mutable {
    record.line["target"] = outcome.qube.empty() ? record.line["target"] : json(outcome.qube);
    record.line["bytes_in"] = outcome.bytes_in;
    record.line["bytes_out"] = outcome.bytes_out;
    if (outcome.exit_code >= 0) {
      record.line["exit_status"] = outcome.exit_code;
    } else {
      record.line["exit_status"] = outcome.error_code == codes::kCommandNotFound ? 127 : 125;
      record.line["error"] = outcome.message;
    }
    Audit(std::move(record));
  });
}

void RpcBroker::Refuse(AdminServer::Call& call, CallRecord record, const std::string& why) {
  if (!record.line.contains("decision")) record.line["decision"] = "deny";
  record.line["reason"] = why;
  record.line["exit_status"] = 126;
  Audit(std::move(record));
  server_.Reply(call, Fail(codes::kRequestRefused, kRefused));
}

void RpcBroker::Audit(CallRecord record) {
  auto ms = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  record.begun)
                .count();
  record.line["duration_ms"] = static_cast<double>(ms) / 1000.0;
  for (const char* key : {"target", "rule", "argument"}) {
    if (!record.line.contains(key)) record.line[key] = nullptr;
  }
  audit_.Write(std::move(record.line));
}

}  // namespace tessera::daemon
