#include "daemon/clipboard.h"

#include <algorithm>

#include "common/json_access.h"
#include "rpc/call_request.h"
#include "rpc/decision.h"

namespace tessera::daemon {

using nlohmann::json;
using wire::FrameType;
namespace codes = wire::codes;

namespace {

constexpr size_t kMaxStderr = 4096;
// A clipboard service that has not ended by then is hung up (a qube's own
// service may never end).
constexpr std::chrono::seconds kServiceTimeout{10};

int64_t UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

// The caller of a clipboard service: feeds it `input` as its stdin and
// keeps its stdout (at most wire::kMaxClipboard bytes, within the initial
// window: beyond that the service is hung up) and the start of its stderr
// (the rest is credited and dropped). A service still running after
// kServiceTimeout is hung up.
class Clipboard::Collect : public RunCaller {
 public:
  struct Result {
    ApiResult<json> reply;
    std::string out;
    std::string err;
    bool too_big = false;
    bool timed_out = false;
  };
  using Done = std::function<void(Result)>;

  Collect(EventLoop& loop, std::string input, Done done)
      : loop_(loop), input_(std::move(input)), done_(std::move(done)) {}
  ~Collect() override { std::fill(input_.begin(), input_.end(), '\0'); }

  void Attach(AdminServer::StreamHandler* handler) override {
    handler_ = handler;
    if (handler_ == nullptr || fed_) return;
    fed_ = true;
    timeout_ = loop_.After(kServiceTimeout, [this] {
      result_.timed_out = true;
      HangUp();
    });
    // Kept by the run until the service starts (within its initial window).
    if (!input_.empty()) {
      wire::Frame data{FrameType::kData, 0, wire::kStdin, input_, {}};
      handler_->OnClientFrame(data);
      std::fill(data.payload.begin(), data.payload.end(), '\0');
    }
    wire::Frame eof{FrameType::kEof, 0, wire::kStdin, {}, {}};
    handler_->OnClientFrame(eof);
  }
  void Send(FrameType type, uint8_t stream, std::string_view payload) override {
    if (type != FrameType::kData) return;
    if (stream == wire::kStderr) {
      result_.err.append(payload.substr(0, kMaxStderr - std::min(kMaxStderr, result_.err.size())));
      Credit(stream, payload.size());
      return;
    }
    if (stream != wire::kStdout) return;
    if (result_.too_big) {
      // Hung up already: what is still on its way is dropped, and credited
      // so that the service's end can come after it.
      Credit(stream, payload.size());
      return;
    }
    result_.out.append(payload);
    if (result_.out.size() > wire::kMaxClipboard) {
      result_.too_big = true;
      std::fill(result_.out.begin(), result_.out.end(), '\0');
      result_.out.clear();
      HangUp();
      Credit(stream, payload.size());
    }
  }
  void Reply(ApiResult<json> reply) override {
    handler_ = nullptr;
    timeout_.Reset();
    result_.reply = std::move(reply);
    if (done_) std::exchange(done_, nullptr)(std::move(result_));
  }

 private:
  void Credit(uint8_t stream, size_t bytes) {
    if (handler_ == nullptr) return;
    wire::Frame credit{
        FrameType::kCredit, 0, stream, wire::EncodeU32(static_cast<uint32_t>(bytes)), {}};
    handler_->OnClientFrame(credit);
  }
  void HangUp() {
    if (handler_ == nullptr) return;
    wire::Frame close{FrameType::kClose, 0, 0, {}, {}};
    handler_->OnClientFrame(close);
  }

  EventLoop& loop_;
  EventLoop::Timer timeout_;
  std::string input_;
  Done done_;
  AdminServer::StreamHandler* handler_ = nullptr;
  bool fed_ = false;
  Result result_;
};

Clipboard::Clipboard(EventLoop& loop, AdminServer& server, QubeManager& manager, RunCommands& runs,
                     PolicyWatcher& policies, RpcBroker& broker, AuditLog& audit, EventBus& events)
    : loop_(loop),
      server_(server),
      manager_(manager),
      runs_(runs),
      policies_(policies),
      broker_(broker),
      audit_(audit),
      events_(events) {}

Clipboard::~Clipboard() { *alive_ = false; }

ApiResult<void> Clipboard::RunningQube(const std::string& name, const char* verb) const {
  if (!manager_.Exists(name)) return tl::unexpected(manager_.NoSuchQube(name));
  const QubeRecord* record = manager_.Record(name);
  if (record == nullptr || record->state != QubeState::kRunning) {
    return Fail(codes::kInvalidState, std::string("clipboard ") + verb + ": qube " + name +
                                          " is not running (its clipboard lives while it runs)");
  }
  return {};
}

namespace {

// The one qube name parameter `key` of a clipboard method.
Result<std::string> QubeParam(const json& params, const char* key, const char* method) {
  TRY(OnlyKeys(params, {key}, method));
  return RequiredString(params, key, method, 64);
}

// Why a clipboard service failed, for the person who asked.
std::string Why(const std::string& service, const std::string& qube, const ApiResult<json>& reply,
                const std::string& err) {
  std::string what = service + " in " + qube;
  std::string detail = err.empty() ? "" : ": " + err.substr(0, err.find('\n'));
  if (!reply) return what + " failed: " + reply.error().message;
  return what + " failed with status " + std::to_string(reply->value("exit_code", -1)) + detail;
}

}  // namespace

void Clipboard::HandleCopy(AdminServer::Call call) {
  auto from = QubeParam(call.params, "from", "clipboard.copy");
  if (!from) return server_.Reply(call, Fail(codes::kBadRequest, from.error().message()));
  if (auto ok = RunningQube(*from, "copy"); !ok) {
    return server_.Reply(call, tl::unexpected(ok.error()));
  }
  RunRequest run;
  run.qube = *from;
  run.relay = true;
  run.open.user.clear();  // the qube's default_user, whose clipboard it is
  run.open.service = wire::ServiceCall{"qubes.ClipboardCopy", "", "dom0", *from};
  auto conn = std::make_shared<AdminServer::Call>(std::move(call));
  std::string source = *from;
  auto done = [this, alive = alive_, conn, source](Collect::Result r) {
    if (!*alive) return;
    json line = {{"kind", "clipboard"}, {"op", "copy"}, {"source", source}, {"by", conn->peer.uid}};
    ApiResult<json> answer;
    if (r.timed_out) {
      answer = Fail(codes::kFailed, "qubes.ClipboardCopy in " + source + " did not end within " +
                                        std::to_string(kServiceTimeout.count()) +
                                        " s; the host's clipboard is unchanged");
    } else if (r.too_big) {
      answer = Fail(codes::kFailed, "the clipboard of " + source + " holds more than " +
                                        std::to_string(wire::kMaxClipboard) +
                                        " bytes; the host's clipboard is unchanged");
    } else if (!r.reply || r.reply->value("exit_code", -1) != 0) {
      answer = Fail(codes::kFailed, Why("qubes.ClipboardCopy", source, r.reply, r.err));
    } else {
      if (buffer_) Clear("replaced by a copy from " + source);
      buffer_ = Buffer{std::move(r.out), source, std::chrono::system_clock::now(), next_serial_++};
      answer = json{{"source", source}, {"size", buffer_->data.size()}};
      events_.Emit({{"event", "clipboard"},
                    {"op", "copy"},
                    {"source", source},
                    {"size", buffer_->data.size()}});
    }
    line["result"] = answer ? "copied" : "failed";
    if (answer) line["size"] = buffer_->data.size();
    if (!answer) line["error"] = answer.error().message;
    audit_.Write(std::move(line));
    server_.Reply(*conn, std::move(answer));
  };
  runs_.Start(std::make_unique<Collect>(loop_, "", std::move(done)), std::move(run));
}

void Clipboard::HandlePaste(AdminServer::Call call) {
  auto to = QubeParam(call.params, "to", "clipboard.paste");
  if (!to) return server_.Reply(call, Fail(codes::kBadRequest, to.error().message()));
  if (!buffer_) {
    return server_.Reply(call, Fail(codes::kInvalidState,
                                    "the host's clipboard is empty: copy into it first "
                                    "(tessera clipboard copy --from QUBE)"));
  }
  if (auto ok = RunningQube(*to, "paste"); !ok) {
    return server_.Reply(call, tl::unexpected(ok.error()));
  }
  if (buffer_->pasting) {
    return server_.Reply(call, Fail(codes::kBusy,
                                    "the host's clipboard is being pasted already: it goes to "
                                    "one qube only"));
  }
  const std::string source = buffer_->source;
  json line = {{"kind", "rpc"},           {"source", source},
               {"requested_target", *to}, {"service", "qubes.ClipboardPaste"},
               {"argument", ""},          {"by", call.peer.uid}};
  auto refuse = [&](const std::string& why) {
    line["decision"] = "deny";
    line["reason"] = why;
    line["exit_status"] = 126;
    audit_.Write(line);
    server_.Reply(call, Fail(codes::kRequestRefused,
                             "clipboard paste from " + source + " to " + *to + " refused: " + why));
  };
  // The policy, as for any call from the qube the text came from.
  auto request = rpc::ValidateCall(*to, "qubes.ClipboardPaste", source);
  if (!request) return refuse(request.error().message());
  std::shared_ptr<const policy::Policy> policy = policies_.Current();
  if (policy == nullptr) return refuse("no policy is loaded");
  policy::Resolution res = rpc::Decide(*policy, *request, broker_.CurrentSystem());
  line["rule"] = res.rule_index >= 0
                     ? json(policy->Where(policy->rules()[static_cast<size_t>(res.rule_index)]))
                     : json(nullptr);
  bool allowed = false;
  if (res.decision == policy::Decision::kAllow) {
    allowed = res.target == *to;
    if (!allowed) return refuse("the policy sends it to " + res.target + ", not " + *to);
  } else if (res.decision == policy::Decision::kAsk) {
    // The paste is the user's answer (Qubes' GUI daemon does the same).
    allowed = std::find(res.targets_for_ask.begin(), res.targets_for_ask.end(), *to) !=
              res.targets_for_ask.end();
    if (!allowed) return refuse(*to + " is not among the policy's choices");
    line["asked"] = "the paste command";
  }
  if (!allowed) return refuse(policy->Reason(res));
  line["decision"] = res.decision == policy::Decision::kAsk ? "ask" : "allow";
  line["target"] = *to;
  RunRequest run;
  run.qube = *to;
  run.relay = true;
  run.open.user.clear();
  run.open.service = wire::ServiceCall{"qubes.ClipboardPaste", "", source, *to};
  if (res.user && *res.user != "DEFAULT") run.open.user = *res.user;
  auto conn = std::make_shared<AdminServer::Call>(std::move(call));
  auto begun = std::chrono::steady_clock::now();
  size_t size = buffer_->data.size();
  uint64_t serial = buffer_->serial;
  buffer_->pasting = true;
  auto done = [this, alive = alive_, conn, line, begun, size, serial,
               target = *to](Collect::Result r) mutable {
    if (!*alive) return;
    line["duration_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begun).count();
    line["bytes_in"] = r.reply ? size : 0;
    line["bytes_out"] = 0;
    int status = r.reply ? r.reply->value("exit_code", 125) : 125;
    line["exit_status"] = status;
    ApiResult<json> answer;
    if (r.timed_out) {
      answer = Fail(codes::kFailed, "qubes.ClipboardPaste in " + target + " did not end within " +
                                        std::to_string(kServiceTimeout.count()) +
                                        " s; the host's clipboard is kept");
      line["error"] = answer.error().message;
    } else if (status != 0) {
      answer = Fail(codes::kFailed, Why("qubes.ClipboardPaste", target, r.reply, r.err) +
                                        "; the host's clipboard is kept");
      line["error"] = answer.error().message;
    } else {
      answer = json{{"source", line["source"]}, {"target", target}, {"size", size}};
      Clear("pasted into " + target, serial);
    }
    if (buffer_ && buffer_->serial == serial) buffer_->pasting = false;
    audit_.Write(std::move(line));
    server_.Reply(*conn, std::move(answer));
  };
  runs_.Start(std::make_unique<Collect>(loop_, buffer_->data, std::move(done)), std::move(run));
}

void Clipboard::HandleShow(AdminServer::Call call) {
  if (auto ok = OnlyKeys(call.params, {}, "clipboard.show"); !ok) {
    return server_.Reply(call, Fail(codes::kBadRequest, ok.error().message()));
  }
  if (!buffer_) return server_.Reply(call, json{{"empty", true}});
  server_.Reply(call, json{{"empty", false},
                           {"source", buffer_->source},
                           {"size", buffer_->data.size()},
                           {"copied_at", UnixSeconds(buffer_->copied_at)}});
}

void Clipboard::HandleClear(AdminServer::Call call) {
  if (auto ok = OnlyKeys(call.params, {}, "clipboard.clear"); !ok) {
    return server_.Reply(call, Fail(codes::kBadRequest, ok.error().message()));
  }
  bool had = buffer_.has_value();
  Clear("cleared by uid " + std::to_string(call.peer.uid));
  server_.Reply(call, json{{"cleared", had}});
}

void Clipboard::Clear(const std::string& why, uint64_t serial) {
  if (!buffer_ || (serial != 0 && buffer_->serial != serial)) return;
  // Overwritten before it is freed: the text was a secret as often as not.
  std::fill(buffer_->data.begin(), buffer_->data.end(), '\0');
  std::string source = buffer_->source;
  buffer_.reset();
  events_.Emit({{"event", "clipboard"}, {"op", "cleared"}, {"source", source}, {"why", why}});
}

}  // namespace tessera::daemon
