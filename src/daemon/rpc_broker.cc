#include "daemon/rpc_broker.h"

#include <ctime>

#include "common/json_access.h"
#include "common/log.h"
#include "common/names.h"
#include "rpc/call_request.h"
#include "rpc/decision.h"
#include "rpc/system_from_config.h"

namespace tessera::daemon {

using nlohmann::json;
using wire::FrameType;
namespace codes = wire::codes;

namespace {

constexpr const char* kRefused = "Request refused";
constexpr std::string_view kDispVmPrefix = "@dispvm:";
// `rpc_denied` events (notify=yes): per calling qube, 1 a second, bursts of 5.
constexpr double kNotifyRate = 1;
constexpr double kNotifyBurst = 5;

// The caller's status for an answer (docs/RPC.md): the service's, else 126
// refused, 127 no such service, 125 anything else.
int StatusOf(const ApiResult<json>& result) {
  if (result) {
    int code = result->value("exit_code", 125);
    return code >= 0 && code <= 255 ? code : 125;
  }
  if (result.error().code == codes::kRequestRefused) return 126;
  if (result.error().code == codes::kCommandNotFound) return 127;
  return 125;
}

}  // namespace

// A qube's call: frames to it go on its agent channel under the call's id.
// The caller learns its status and, for a failure, nothing more than the
// kind (the audit line has the details).
class RpcBroker::QubeCall : public RunCaller {
 public:
  QubeCall(RpcBroker& broker, std::string qube, uint32_t id)
      : broker_(broker), alive_(broker.alive_), qube_(std::move(qube)), id_(id) {
    broker_.sources_[qube_].active[id_] = this;
  }
  ~QubeCall() override {
    if (!*alive_) return;
    auto it = broker_.sources_.find(qube_);
    if (it != broker_.sources_.end()) it->second.active.erase(id_);
    broker_.CallEnded(qube_, id_);
  }

  void Attach(AdminServer::StreamHandler* handler) override {
    handler_ = handler;
    if (gone_ && handler_ != nullptr) handler_->OnClientGone();
  }
  void Send(FrameType type, uint8_t stream, std::string_view payload) override {
    AgentChannel* ch = Channel();
    if (ch == nullptr) return;
    ch->SendCallFrame(id_, type, stream, payload);
    // The caller's stdin window starts closed (no queued or undecided call
    // holds its data here); it opens with the service's.
    if (type == FrameType::kStarted) {
      ch->SendCallFrame(id_, FrameType::kCredit, wire::kStdin,
                        wire::EncodeU32(wire::kInitialWindow));
    }
  }
  // The call's stdin and stdout as pipes, for tessera-call in the qube.
  bool TakesPipes() const override { return true; }
  void SendStarted(std::vector<UniqueFd> pipes) override {
    AgentChannel* ch = Channel();
    if (ch == nullptr) return;
    if (pipes.empty()) return Send(FrameType::kStarted, 0, wire::EncodeU32(0));
    ch->SendCallFrame(id_, FrameType::kStarted, 0, wire::EncodeU32(0), std::move(pipes));
  }
  void Reply(ApiResult<json> result) override {
    AgentChannel* ch = Channel();
    handler_ = nullptr;
    if (ch == nullptr) return;
    int status = StatusOf(result);
    if (result) {
      ch->SendCallFrame(id_, FrameType::kExit, 0, wire::EncodeU32(static_cast<uint32_t>(status)));
      return;
    }
    const char* message = status == 126   ? kRefused
                          : status == 127 ? "no such service in the target"
                                          : "the call failed";
    ch->SendCallFrame(id_, FrameType::kError, 0, wire::SerializeSessionError({status, message}));
  }

  // From the caller.
  void Frame(wire::Frame& frame) {
    if (handler_ != nullptr) handler_->OnClientFrame(frame);
  }
  void Gone() {
    gone_ = true;
    AdminServer::StreamHandler* h = handler_;
    handler_ = nullptr;
    if (h != nullptr) h->OnClientGone();
  }

 private:
  AgentChannel* Channel() const {
    if (!*alive_) return nullptr;
    auto it = broker_.sources_.find(qube_);
    return it == broker_.sources_.end() ? nullptr : it->second.channel;
  }

  RpcBroker& broker_;
  std::shared_ptr<bool> alive_;
  std::string qube_;
  uint32_t id_;
  AdminServer::StreamHandler* handler_ = nullptr;
  bool gone_ = false;
};

// The handler of one qube's channel: every frame it hands over names that
// qube as the source.
class RpcBroker::ChannelCalls : public AgentChannel::CallHandler {
 public:
  ChannelCalls(RpcBroker& broker, std::string qube) : broker_(broker), qube_(std::move(qube)) {}
  void OnCall(uint32_t id, wire::CallMessage call) override {
    broker_.OnCall(qube_, id, std::move(call));
  }
  void OnCallFrame(uint32_t id, wire::Frame& frame) override {
    broker_.OnCallFrame(qube_, id, frame);
  }
  void OnCallsLost() override { broker_.OnCallsLost(qube_); }

 private:
  RpcBroker& broker_;
  std::string qube_;
};

RpcBroker::RpcBroker(EventLoop& loop, AdminServer& server, QubeManager& manager, RunCommands& runs,
                     PolicyWatcher& policies, RpcPrompts& prompts, AuditLog& audit,
                     EventBus& events, std::string runtime_dir, RpcLimits limits)
    : loop_(loop),
      server_(server),
      manager_(manager),
      runs_(runs),
      policies_(policies),
      prompts_(prompts),
      audit_(audit),
      events_(events),
      runtime_dir_(std::move(runtime_dir)),
      limits_(limits) {}

RpcBroker::~RpcBroker() {
  *alive_ = false;
  for (auto& [id, asking] : asking_) prompts_.Cancel(id);
  for (auto& [qube, source] : sources_) {
    if (source.channel != nullptr) source.channel->TakeCalls(nullptr);
  }
}

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

size_t RpcBroker::MaxCalls() const { return manager_.config().system().rpc.max_calls_per_qube; }

size_t RpcBroker::InFlight(const std::string& qube) const {
  auto it = sources_.find(qube);
  return it == sources_.end() ? 0 : it->second.active.size();
}

size_t RpcBroker::Queued(const std::string& qube) const {
  auto it = sources_.find(qube);
  return it == sources_.end() ? 0 : it->second.queued.size();
}

void RpcBroker::FollowPolicyDir() {
  const std::string& dir = manager_.config().system().policy_dir;
  policy::PolicyDirs wanted = PolicyDirsFor(dir, runtime_dir_);
  if (wanted.policy_dir != policies_.dirs().policy_dir) policies_.Watch(std::move(wanted));
}

// ---------------------------------------------------------------------------
// Channels

void RpcBroker::TakeRunningQubes() {
  for (const auto& [name, state] : manager_.States()) {
    if (state == QubeState::kRunning) (void)manager_.Channel(name);  // OnChannel takes it
  }
}

void RpcBroker::OnRunning(const std::string& qube, backend::Instance& /*instance*/) {
  // A channel now, so that the qube's first call finds one.
  auto channel = manager_.Channel(qube);
  if (!channel) {
    Log(LogLevel::kWarn, "no call channel",
        {{"qube", qube}, {"error", channel.error().ToString()}});
  }
}

void RpcBroker::OnChannel(const std::string& qube, AgentChannel& channel) {
  Source& source = sources_[qube];
  if (!source.handler) source.handler = std::make_unique<ChannelCalls>(*this, qube);
  source.channel = &channel;
  source.reopen.Reset();
  channel.TakeCalls(source.handler.get());
}

void RpcBroker::OnStopped(const std::string& qube) {
  auto it = sources_.find(qube);
  if (it == sources_.end()) return;
  it->second.reopen.Reset();
  it->second.queued.clear();
  // Calls in flight end through their runs (their channel is gone); the
  // entry goes with the last of them.
  if (it->second.active.empty() && it->second.channel == nullptr) sources_.erase(it);
}

void RpcBroker::OnCallsLost(const std::string& qube) {
  auto it = sources_.find(qube);
  if (it == sources_.end()) return;
  Source& source = it->second;
  source.channel = nullptr;
  source.queued.clear();
  std::vector<uint32_t> ids;
  for (const auto& [id, call] : source.active) ids.push_back(id);
  // Not from inside the channel (it may be going away): the calls end on
  // the next turn of the loop, and a channel for the next calls is opened
  // after a pause (a broken agent must not make us spin).
  std::shared_ptr<bool> alive = alive_;
  loop_.Post([this, alive, qube, ids] {
    if (!*alive) return;
    for (uint32_t id : ids) {
      auto s = sources_.find(qube);
      if (s == sources_.end()) return;
      auto c = s->second.active.find(id);
      if (c != s->second.active.end()) c->second->Gone();
    }
  });
  source.reopen = loop_.After(limits_.reopen_delay, [this, qube] { Reopen(qube); });
}

void RpcBroker::Reopen(const std::string& qube) {
  auto it = sources_.find(qube);
  if (it != sources_.end()) it->second.reopen.Reset();
  const QubeRecord* record = manager_.Record(qube);
  if (record == nullptr || record->state != QubeState::kRunning) {
    // Gone for good (a disposable's name never comes back): forget it once
    // its last call has ended.
    if (it != sources_.end() && it->second.active.empty()) sources_.erase(it);
    return;
  }
  (void)manager_.Channel(qube);
}

// ---------------------------------------------------------------------------
// Calls from qubes

void RpcBroker::OnCall(const std::string& qube, uint32_t id, wire::CallMessage call) {
  Source& source = sources_[qube];
  if (source.active.size() < MaxCalls() && source.queued.empty()) {
    return StartQubeCall(qube, id, std::move(call));
  }
  if (source.queued.size() >= limits_.max_queued_calls) {
    audit_.Write({{"kind", "rpc"},
                  {"source", qube},
                  {"service", call.service.substr(0, 320)},
                  {"decision", "refused"},
                  {"reason", "too many calls waiting"},
                  {"exit_status", 125}});
    if (source.channel != nullptr) {
      source.channel->SendCallFrame(id, FrameType::kError, 0,
                                    wire::SerializeSessionError({125, "too many calls"}));
    }
    return;
  }
  source.queued.push_back({id, std::move(call)});
}

void RpcBroker::OnCallFrame(const std::string& qube, uint32_t id, wire::Frame& frame) {
  auto it = sources_.find(qube);
  if (it == sources_.end()) return;
  Source& source = it->second;
  if (auto c = source.active.find(id); c != source.active.end()) return c->second->Frame(frame);
  // Still waiting: a hang-up takes it off the queue; anything else waits
  // for the call to start (its stdin window is closed, so there is none).
  if (frame.type == FrameType::kClose) {
    for (auto q = source.queued.begin(); q != source.queued.end(); ++q) {
      if (q->id != id) continue;
      source.queued.erase(q);
      if (source.channel != nullptr) {
        source.channel->SendCallFrame(id, FrameType::kError, 0,
                                      wire::SerializeSessionError({125, "the caller hung up"}));
      }
      return;
    }
  }
}

void RpcBroker::StartQubeCall(const std::string& qube, uint32_t id, wire::CallMessage call) {
  CallRecord record{std::chrono::steady_clock::now(), json{{"kind", "rpc"}}};
  auto caller = std::make_unique<QubeCall>(*this, qube, id);
  Dispatch(std::move(record), qube, call.target, call.service, std::move(caller));
}

void RpcBroker::CallEnded(const std::string& qube, uint32_t /*id*/) {
  // The next waiting call of that qube, once this one's teardown is over.
  std::shared_ptr<bool> alive = alive_;
  loop_.Post([this, alive, qube] {
    if (!*alive) return;
    auto it = sources_.find(qube);
    if (it == sources_.end()) return;
    Source& source = it->second;
    while (!source.queued.empty() && source.active.size() < MaxCalls()) {
      Pending next = std::move(source.queued.front());
      source.queued.pop_front();
      StartQubeCall(qube, next.id, std::move(next.call));
      it = sources_.find(qube);
      if (it == sources_.end()) return;
    }
    if (source.active.empty() && source.queued.empty() && source.channel == nullptr &&
        !source.reopen) {
      sources_.erase(it);
    }
  });
}

// ---------------------------------------------------------------------------
// Calls from the host

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
  Dispatch(std::move(record), *source, *target, *service,
           std::make_unique<AdminCaller>(server_, std::move(call)));
}

// ---------------------------------------------------------------------------
// Both

void RpcBroker::Dispatch(CallRecord record, const std::string& source, const std::string& target,
                         const std::string& service, std::unique_ptr<RunCaller> caller) {
  json& line = record.line;
  line["source"] = source;
  line["requested_target"] = target.substr(0, 128);
  line["service"] = service.substr(0, 320);
  auto request = rpc::ValidateCall(target, service, source);
  if (!request) {
    return Refuse(*caller, std::move(record), "invalid request: " + request.error().message());
  }
  line["service"] = request->service;
  line["argument"] = request->argument == "+" ? "" : request->argument.substr(1);

  FollowPolicyDir();
  std::shared_ptr<const policy::Policy> policy = policies_.Current();
  if (policy == nullptr) {
    auto errors = policies_.LastErrors();
    return Refuse(*caller, std::move(record),
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
  if (res.decision == policy::Decision::kDeny) {
    if (res.notify) NotifyDenied(line);
    return Refuse(*caller, std::move(record), policy->Reason(res));
  }
  if (res.decision == policy::Decision::kAsk) {
    line["decision"] = "ask";
    return AskThenLaunch(std::move(record), *request, std::move(policy), res, std::move(caller));
  }
  line["decision"] = "allow";
  line["reason"] = "allowed by policy " + line["rule"].get<std::string>();
  Launch(std::move(record), *request, res.target, res.user, std::move(caller));
}

// A call waiting for a person's answer. It owns the caller meanwhile and
// hears it go away (the ask is then withdrawn).
class RpcBroker::Asking : public AdminServer::StreamHandler {
 public:
  RpcBroker* broker = nullptr;
  std::shared_ptr<bool> alive;
  CallRecord record;
  policy::Request request;
  std::shared_ptr<const policy::Policy> policy;  // the rule stays valid across reloads
  policy::Resolution res;
  std::unique_ptr<RunCaller> caller;
  uint64_t id = 0;
  bool done = false;

  void OnClientFrame(wire::Frame& frame) override {
    if (frame.type == FrameType::kClose) Withdraw();
  }
  void OnClientGone() override { Withdraw(); }
  void Withdraw() {
    if (done || !*alive) return;
    done = true;
    broker->prompts_.Cancel(id);
    record.line["reason"] = "the caller went away while asked";
    record.line["exit_status"] = 125;
    broker->Audit(std::move(record));
    auto self = broker->asking_.extract(id);  // destroyed on return
    self.mapped()->caller->Reply(Fail(codes::kFailed, "the caller went away"));
  }
};

void RpcBroker::AskThenLaunch(CallRecord record, const policy::Request& request,
                              std::shared_ptr<const policy::Policy> policy,
                              const policy::Resolution& res, std::unique_ptr<RunCaller> caller) {
  auto asking = std::make_unique<Asking>();
  asking->broker = this;
  asking->alive = alive_;
  asking->record = std::move(record);
  asking->request = request;
  asking->policy = std::move(policy);
  asking->res = res;
  asking->caller = std::move(caller);
  AskRequest ask{request.source, request.service,
                 request.argument == "+" ? "" : request.argument.substr(1), res.targets_for_ask,
                 res.default_target};
  // The id is known only once Ask returns; the answer never comes before.
  auto id_holder = std::make_shared<uint64_t>(0);
  uint64_t id = prompts_.Ask(
      std::move(ask),
      [this, alive = alive_, id_holder](bool allowed, std::string target, std::string why) {
        if (*alive) Answered(*id_holder, allowed, std::move(target), std::move(why));
      });
  *id_holder = id;
  if (id == 0) {
    // Never allowed without an answer.
    return Refuse(*asking->caller, std::move(asking->record),
                  "ask: no prompt is registered to ask, so the call is denied");
  }
  asking->id = id;
  asking->caller->Attach(asking.get());
  asking_[id] = std::move(asking);
}

void RpcBroker::Answered(uint64_t id, bool allowed, std::string target, std::string why) {
  auto node = asking_.extract(id);
  if (node.empty()) return;
  Asking& a = *node.mapped();
  a.done = true;
  json& line = a.record.line;
  line["asked"] = true;
  if (!allowed) return Refuse(*a.caller, std::move(a.record), "ask: " + why);
  const policy::Rule& rule = a.policy->rules()[static_cast<size_t>(a.res.rule_index)];
  auto chosen =
      policy::HandleAskResponse(rule, a.policy->Where(rule), a.res.targets_for_ask, true, target);
  if (!chosen) return Refuse(*a.caller, std::move(a.record), "ask: " + chosen.error().message);
  // The answer is checked like an allow: a target that cannot be called is refused.
  policy::SystemInfo system = CurrentSystem();
  auto normalized = policy::NormalizeRequest(a.request, system);
  if (!normalized) return Refuse(*a.caller, std::move(a.record), normalized.error().message);
  if (auto ok = policy::DaemonResponse(*normalized, *chosen, a.res.user, true, system); !ok) {
    return Refuse(*a.caller, std::move(a.record), "ask: " + ok.error().message);
  }
  line["reason"] = "allowed by the user, asked by policy " + line["rule"].get<std::string>();
  Launch(std::move(a.record), a.request, *chosen, a.res.user, std::move(a.caller));
}

// The services dom0 offers, answered by the daemon itself: only
// qubes.GetDate (the host's UTC time, as Qubes' dom0 gives qubes that sync
// their clocks from it). Any other is not found (127).
void RpcBroker::HostService(CallRecord record, const policy::Request& request,
                            std::unique_ptr<RunCaller> caller) {
  json& line = record.line;
  line["target"] = "dom0";
  if (request.service != "qubes.GetDate") {
    line["exit_status"] = 127;
    line["error"] = "dom0 has no service " + request.service;
    Audit(std::move(record));
    return caller->Reply(Fail(codes::kCommandNotFound, "no such service in dom0"));
  }
  char text[64];
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S+00:00\n", &utc);
  std::string date(text);
  caller->Send(FrameType::kStarted, 0, wire::EncodeU32(0));
  caller->Send(FrameType::kData, wire::kStdout, date);
  caller->Send(FrameType::kEof, wire::kStdout, {});
  caller->Send(FrameType::kEof, wire::kStderr, {});
  line["exit_status"] = 0;
  line["bytes_in"] = 0;
  line["bytes_out"] = date.size();
  Audit(std::move(record));
  caller->Reply(json{{"qube", "dom0"}, {"exit_code", 0}, {"started", false}});
}

void RpcBroker::Launch(CallRecord record, const policy::Request& request, const std::string& target,
                       const std::optional<std::string>& user, std::unique_ptr<RunCaller> caller) {
  json& line = record.line;
  line["target"] = target;
  auto fail = [&](const std::string& why, const std::string& message) {
    line["reason"] = why;
    line["exit_status"] = 125;
    Audit(std::move(record));
    caller->Reply(Fail(codes::kFailed, message));
  };
  if (target == "dom0") return HostService(std::move(record), request, std::move(caller));
  RunRequest run;
  if (target.rfind(kDispVmPrefix, 0) == 0) {
    run.disposable = true;
    run.dvm_template = target.substr(kDispVmPrefix.size());
  } else {
    run.qube = target;
  }
  run.relay = true;
  run.open.user.clear();  // the target's default_user, unless the rule says user=
  const std::string requested = line.value("requested_target", "");
  run.open.service =
      wire::ServiceCall{request.service, request.argument == "+" ? "" : request.argument.substr(1),
                        request.source, requested.empty() ? "@default" : requested};
  if (user && *user != "DEFAULT") {
    if (!IsUserSpec(*user)) {
      return fail("policy names user \"" + *user + "\", not a user name or UID[:GID]",
                  "call failed: bad user= in the policy");
    }
    run.open.user = *user;
  }
  runs_.Start(std::move(caller), std::move(run), [this, record](const RunOutcome& outcome) mutable {
    if (!outcome.qube.empty()) record.line["target"] = outcome.qube;
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

void RpcBroker::NotifyDenied(const json& line) {
  const std::string source = line.value("source", "");
  auto [it, fresh] = denial_notes_.try_emplace(source, kNotifyRate, kNotifyBurst);
  Notes& notes = it->second;
  if (!notes.bucket.Take()) {
    ++notes.suppressed;
    return;
  }
  json event = {{"event", "rpc_denied"},
                {"source", source},
                {"service", line.value("service", "")},
                {"target", line.value("requested_target", "")}};
  if (notes.suppressed > 0) event["suppressed"] = notes.suppressed;
  if (notifier_ != nullptr) {
    std::string body = source + " -> " + event["target"].get<std::string>() + ": " +
                       event["service"].get<std::string>();
    if (notes.suppressed > 0) body += " (and " + std::to_string(notes.suppressed) + " more)";
    notifier_->Notify("tessera: call denied", std::move(body));
  }
  notes.suppressed = 0;
  events_.Emit(std::move(event));
}

void RpcBroker::Refuse(RunCaller& caller, CallRecord record, const std::string& why) {
  if (!record.line.contains("decision")) record.line["decision"] = "deny";
  record.line["reason"] = why;
  record.line["exit_status"] = 126;
  Audit(std::move(record));
  caller.Reply(Fail(codes::kRequestRefused, kRefused));
}

void RpcBroker::Audit(CallRecord record) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  record.begun)
                .count();
  record.line["duration_ms"] = static_cast<double>(us) / 1000.0;
  for (const char* key : {"target", "rule", "argument"}) {
    if (!record.line.contains(key)) record.line[key] = nullptr;
  }
  audit_.Write(std::move(record.line));
}

}  // namespace tessera::daemon
