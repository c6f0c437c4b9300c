#include "daemon/run_command.h"

#include <signal.h>

#include <optional>

#include "common/json_access.h"
#include "common/log.h"
#include "common/names.h"
#include "daemon/pipe_relay.h"
#include "wire/agent_protocol.h"

namespace tessera::daemon {

using nlohmann::json;
using wire::FrameType;
namespace codes = wire::codes;

namespace {

// 768 MiB, 1.5 GiB, 512 KiB: how a limit is said in messages.
std::string DescribeBytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30) && bytes % (uint64_t{1} << 29) == 0) {
    uint64_t halves = bytes >> 29;
    return std::to_string(halves / 2) + (halves % 2 != 0 ? ".5" : "") + " GiB";
  }
  if (bytes >= (uint64_t{1} << 20)) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

ApiResult<RunRequest> ParseRunRequest(const json& p, size_t fds) {
  auto bad = [](const Error& e) { return Fail(codes::kBadRequest, e.message()); };
  if (auto s =
          OnlyKeys(p, {"qube", "dispvm", "argv", "env", "cwd", "user", "streams", "tty", "detach"},
                   "qube.run");
      !s) {
    return bad(s.error());
  }
  RunRequest r;
  auto argv = StringArray(p, "argv", "qube.run", {.required = true, .max_items = wire::kMaxArgs});
  if (!argv) return bad(argv.error());
  r.open.argv = std::move(*argv);
  if (r.open.argv[0].empty()) return Fail(codes::kBadRequest, "qube.run: empty program name");
  auto env = StringArray(p, "env", "qube.run", {.max_items = wire::kMaxArgs});
  if (!env) return bad(env.error());
  for (const auto& e : *env) {
    if (e.find('=') == std::string::npos || e[0] == '=') {
      return Fail(codes::kBadRequest, "qube.run: env entry without NAME=: " + e);
    }
  }
  r.open.env = std::move(*env);
  auto cwd = StringOr(p, "cwd", "", "qube.run", 4096);
  if (!cwd) return bad(cwd.error());
  if (!cwd->empty() && (*cwd)[0] != '/') {
    return Fail(codes::kBadRequest, "qube.run: cwd must be an absolute path, got " + *cwd);
  }
  r.open.cwd = *cwd;
  auto user = StringOr(p, "user", "", "qube.run", 64);
  if (!user) return bad(user.error());
  if (p.contains("user") && !IsUserSpec(*user)) {
    return Fail(codes::kBadRequest,
                "qube.run: user must be a user name or UID[:GID], got \"" + *user + "\"");
  }
  r.open.user = *user;
  if (p.contains("detach")) {
    if (!p["detach"].is_boolean())
      return Fail(codes::kBadRequest, "qube.run: detach must be true or false");
    r.open.detach = p["detach"].get<bool>();
  }
  if (p.contains("tty")) {
    const json& t = p["tty"];
    if (!t.is_object() || !t.contains("rows") || !t.contains("cols") || t.size() != 2 ||
        !t["rows"].is_number_unsigned() || !t["cols"].is_number_unsigned() ||
        t["rows"].get<uint64_t>() - 1 > 65534 || t["cols"].get<uint64_t>() - 1 > 65534) {
      return Fail(codes::kBadRequest,
                  "qube.run: tty must be {\"rows\": 1..65535, \"cols\": 1..65535}");
    }
    r.open.tty = wire::WindowSize{static_cast<uint16_t>(t["rows"].get<uint64_t>()),
                                  static_cast<uint16_t>(t["cols"].get<uint64_t>())};
  }
  auto streams = StringOr(p, "streams", fds > 0 ? "fds" : "relay", "qube.run", 16);
  if (!streams) return bad(streams.error());
  if (*streams != "fds" && *streams != "relay") {
    return Fail(codes::kBadRequest, "qube.run: streams must be \"fds\" or \"relay\"");
  }
  r.relay = *streams == "relay";
  if (r.relay && fds > 0) {
    return Fail(codes::kBadRequest, "qube.run: descriptors attached to a relayed run");
  }
  if (r.open.tty && !r.relay)
    return Fail(codes::kBadRequest, "qube.run: a tty run relays its streams");
  if (r.open.detach && (fds > 0 || r.open.tty || p.contains("streams"))) {
    return Fail(codes::kBadRequest, "qube.run: a detached run has no streams");
  }
  if (fds > 3) return Fail(codes::kBadRequest, "qube.run: more than 3 descriptors");
  bool has_qube = p.contains("qube");
  bool has_dispvm = p.contains("dispvm");
  if (has_qube == has_dispvm) {
    return Fail(codes::kBadRequest, "qube.run needs exactly one of \"qube\" and \"dispvm\"");
  }
  if (has_qube) {
    auto q = RequiredString(p, "qube", "qube.run", 64);
    if (!q) return bad(q.error());
    r.qube = *q;
  } else {
    auto d = RequiredString(p, "dispvm", "qube.run", 64);
    if (!d) return bad(d.error());
    r.disposable = true;
    r.dvm_template = *d;
    if (r.open.detach) {
      return Fail(codes::kBadRequest,
                  "qube.run: a disposable lives as long as its command; detach needs a named qube");
    }
  }
  return r;
}

}  // namespace

// One run in flight. It owns itself through RunCommands::runs_ and ends with
// Finish, exactly once.
class RunCommands::Run : public AgentChannel::Sink, public AdminServer::StreamHandler {
 public:
  Run(RunCommands& owner, uint64_t serial, std::unique_ptr<RunCaller> caller, RunRequest params,
      RunEnded ended)
      : owner_(owner),
        serial_(serial),
        caller_(std::move(caller)),
        params_(std::move(params)),
        ended_(std::move(ended)) {}

  void Begin() {
    caller_->Attach(this);
    if (params_.disposable) {
      std::string taken = owner_.manager_.TakePreloaded(params_.dvm_template);
      if (!taken.empty()) return Ready(taken, false);
      starting_ = true;
      owner_.manager_.StartDisposable(params_.dvm_template, DisposableOwner::kRun,
                                      [this](ApiResult<std::string> name) {
                                        starting_ = false;
                                        if (!name) return Finish(tl::unexpected(name.error()));
                                        Ready(*name, true);
                                      });
      return;
    }
    starting_ = true;
    owner_.manager_.Start(params_.qube, [this](ApiResult<json> started) {
      starting_ = false;
      if (!started) return Finish(tl::unexpected(started.error()));
      Ready(params_.qube, !started->value("already_running", true));
    });
  }

  // AgentChannel::Sink
  void OnStarted(uint32_t pid) override {
    if (params_.open.detach) {
      channel_ = nullptr;  // the session ended with its start
      return Finish(
          json{{"qube", name_}, {"detached", true}, {"pid", pid}, {"started", started_now_}});
    }
    if (!params_.relay) return;
    if (!caller_pipes_.empty()) return caller_->SendStarted(std::move(caller_pipes_));
    caller_->Send(FrameType::kStarted, 0, wire::EncodeU32(0));
  }
  void OnData(uint8_t stream, std::string data) override {
    bytes_out_ += data.size();
    caller_->Send(FrameType::kData, stream, data);
  }
  void OnEof(uint8_t stream) override { caller_->Send(FrameType::kEof, stream, {}); }
  void OnStdinCredit(uint32_t bytes) override {
    caller_->Send(FrameType::kCredit, wire::kStdin, wire::EncodeU32(bytes));
  }
  void OnExit(int status) override {
    channel_ = nullptr;  // the session is over (the channel forgot it)
    // Through pipes, the command's output may still be on its way: the
    // caller hears the end after the last of it, as it would from a pipe.
    if (relay_ && !relay_->out_done()) {
      exit_after_output_ = status;
      relay_->FinishOutputWhenDrained();  // calls OutputRelayed later
      return;
    }
    if (relay_ && !relay_->out_error().empty()) {
      return Finish(
          Fail(codes::kFailed, "the command's output was cut off: " + relay_->out_error()));
    }
    json result = {{"qube", name_}, {"exit_code", status}, {"started", started_now_}};
    if (std::string why = KillReason(status); !why.empty()) result["reason"] = why;
    Finish(std::move(result));
  }
  void OnError(int code, std::string message) override {
    channel_ = nullptr;
    const char* c = code == 127 ? codes::kCommandNotFound
                                : code == 126 ? codes::kCommandNotExecutable : codes::kFailed;
    Finish(Fail(c, "run in " + name_ + ": " + message));
  }
  void OnLost(std::string reason) override {
    channel_ = nullptr;
    // The qube going away (stop, kill, its end) takes the command with it,
    // as a shutdown takes a local one: SIGTERM's status, and the reason.
    const QubeRecord* record = owner_.manager_.Record(name_);
    if (record == nullptr || record->state != QubeState::kRunning ||
        reason.find("stopped while the command ran") != std::string::npos) {
      std::string why = "qube stopped while the command ran";
      Audit("command_ended", why);
      return Finish(json{{"qube", name_},
                         {"exit_code", 128 + SIGTERM},
                         {"started", started_now_},
                         {"reason", why}});
    }
    Finish(Fail(codes::kFailed, reason));
  }

  // AdminServer::StreamHandler: the client's frames for this run.
  void OnClientFrame(wire::Frame& frame) override {
    if (finished_ || exit_after_output_) return;  // ended: only its output is on its way
    if (channel_ == nullptr) {
      // The qube is still starting. The client may send up to its initial
      // window of stdin (and eof, signals) already: kept, in order, and
      // replayed once the session is open. More than the window is a broken
      // client.
      if (frame.type == FrameType::kData) early_bytes_ += frame.payload.size();
      if (early_bytes_ > wire::kInitialWindow || early_.size() >= 4096) {
        return ClientBroke("stdin beyond the window before the command started");
      }
      early_.push_back(std::move(frame));
      return;
    }
    Relay(frame);
  }

  void Relay(wire::Frame& frame) {
    bool is_stream = frame.type == FrameType::kData || frame.type == FrameType::kEof ||
                     frame.type == FrameType::kCredit;
    if (is_stream && !params_.relay)
      return ClientBroke("stream frames for a run whose streams were passed");
    switch (frame.type) {
      case FrameType::kData:
        if (relay_) return ClientBroke("stdin frames for a run whose stdin is a pipe");
        if (frame.stream != wire::kStdin || !channel_->SendStdin(session_, frame.payload)) {
          return ClientBroke("stdin beyond the window the qube granted");
        }
        bytes_in_ += frame.payload.size();
        return;
      case FrameType::kEof:
        if (frame.stream == wire::kStdin && !relay_) channel_->SendStdinEof(session_);
        return;
      case FrameType::kCredit:
        if (auto n = wire::DecodeU32(frame); n && frame.stream != wire::kStdin) {
          channel_->Credit(session_, frame.stream, *n);
        }
        return;
      case FrameType::kSignal:
        if (auto sig = wire::DecodeU32(frame)) channel_->Signal(session_, static_cast<int>(*sig));
        return;
      case FrameType::kClose:
        channel_->HangUp(session_);
        return;
      case FrameType::kResize:
        if (auto size = wire::DecodeWindowSize(frame.payload)) channel_->Resize(session_, *size);
        return;
      default:
        return;
    }
  }
  void OnClientGone() override {
    client_gone_ = true;
    if (channel_ != nullptr) {
      // Like a hung-up terminal: the command is hung up, nobody hears its end.
      channel_->Detach(session_);
      channel_ = nullptr;
      Log(LogLevel::kInfo, "caller went away: command hung up", {{"qube", name_}});
      Finish(Fail(codes::kFailed, "the caller went away"));
    } else if (exit_after_output_) {
      Finish(Fail(codes::kFailed, "the caller went away"));  // its output goes nowhere
    }
    // Still starting: Ready sees client_gone_.
  }

 private:
  // Who runs the command when the caller did not say: the qube's
  // default_user (a disposable's, its disposable template's), as Qubes.
  std::string DefaultUser(const std::string& name) const {
    const config::System& system = owner_.manager_.config().system();
    const config::Qube* q = system.Find(name);
    if (q == nullptr) {
      if (const QubeRecord* r = owner_.manager_.Record(name); r != nullptr) {
        q = system.Find(r->dvm_template);
      }
    }
    return q != nullptr ? q->default_user : "user";
  }

  // "killed: out of memory (limit 768 MiB)" when a SIGKILL came with an OOM
  // kill in the qube during the run; "" otherwise.
  std::string KillReason(int status) {
    if (status != 128 + SIGKILL || !oom_before_) return "";
    auto now = owner_.manager_.Memory(name_);
    if (!now || now->oom_kills <= oom_before_->oom_kills) return "";
    std::string why = "killed: out of memory";
    if (now->limit_bytes > 0) why += " (limit " + DescribeBytes(now->limit_bytes) + ")";
    Audit("oom_kill", why);
    return why;
  }

  void Audit(const char* action, const std::string& why) {
    json record = {{"kind", "run"}, {"qube", name_}, {"action", action}, {"reason", why}};
    record["program"] = wire::ProgramName(params_.open);
    owner_.audit_.Write(std::move(record));
  }

  void Ready(const std::string& name, bool started_now) {
    name_ = name;
    started_now_ = started_now;
    if (params_.disposable) disposable_ = true;
    if (finished_) {
      // Ended while the qube started (a broken client): the disposable made
      // for it goes, and so do we now that no callback refers to us.
      if (disposable_) StopDisposable();
      owner_.Finished(serial_);
      return;
    }
    if (client_gone_) return Finish(Fail(codes::kFailed, "the caller went away"));
    if (!params_.relay && !owner_.capabilities_.pass_fds) {
      return Finish(Fail(codes::kRelayRequired,
                         "qube " + name + " cannot take descriptors; relay the streams"));
    }
    auto channel = owner_.manager_.Channel(name);
    if (!channel) return Finish(Fail(codes::kFailed, channel.error().ToString()));
    wire::OpenMessage& open = params_.open;
    if (open.user.empty()) open.user = DefaultUser(name);
    std::vector<UniqueFd> fds;
    std::vector<UniqueFd>* passed = caller_->fds();
    for (int i = 0; i < 3; ++i) {
      if (open.detach) {
        open.stdio[i] = wire::Stdio::kNull;
      } else if (open.tty) {
        open.stdio[i] = i < 2 ? wire::Stdio::kPipe : wire::Stdio::kNull;  // the terminal is 0, 1, 2
      } else if (params_.relay) {
        open.stdio[i] = wire::Stdio::kPipe;
      } else if (passed != nullptr && static_cast<size_t>(i) < passed->size()) {
        open.stdio[i] = wire::Stdio::kFd;
        fds.push_back(std::move((*passed)[i]));
      } else {
        open.stdio[i] = wire::Stdio::kNull;  // fewer descriptors: /dev/null
      }
    }
    if (passed != nullptr) passed->clear();
    if (params_.relay && !open.tty && !open.detach && caller_->TakesPipes() &&
        owner_.capabilities_.pass_fds) {
      if (auto piped = PipeStreams(open, fds); !piped) {
        return Finish(Fail(codes::kFailed, "call pipes: " + piped.error().ToString()));
      }
    }
    if (auto memory = owner_.manager_.Memory(name)) oom_before_ = *memory;
    auto session = (*channel)->Open(open, std::move(fds), this);
    if (!session) {
      return Finish(Fail(session.error().errno_value() == EAGAIN ? codes::kBusy : codes::kFailed,
                         session.error().ToString()));
    }
    channel_ = *channel;
    session_ = *session;
    counted_ = true;
    owner_.manager_.SessionStarted(name);
    auto early = std::move(early_);
    early_.clear();
    for (auto& frame : early) {
      if (channel_ == nullptr) break;
      Relay(frame);
    }
  }

  // The command's stdin and stdout become pipes relayed by a PipeRelay to
  // the pipes the caller gets with `started` (its stderr stays framed).
  Status PipeStreams(wire::OpenMessage& open, std::vector<UniqueFd>& fds) {
    auto caller_in = TRY(MakeRelayPipe());    // caller -> daemon
    auto command_in = TRY(MakeRelayPipe());   // daemon -> command's stdin
    auto command_out = TRY(MakeRelayPipe());  // command's stdout -> daemon
    auto caller_out = TRY(MakeRelayPipe());   // daemon -> caller
    open.stdio[0] = wire::Stdio::kFd;
    open.stdio[1] = wire::Stdio::kFd;
    fds.clear();
    fds.push_back(std::move(command_in.from));
    fds.push_back(std::move(command_out.to));
    std::vector<UniqueFd> pipes;
    pipes.push_back(std::move(caller_out.from));
    pipes.push_back(std::move(caller_in.to));
    relay_ = TRY(PipeRelay::Start(
        owner_.loop_, {std::move(caller_in.from), std::move(command_in.to)},
        {std::move(command_out.from), std::move(caller_out.to)}, [this] { OutputRelayed(); }));
    caller_pipes_ = std::move(pipes);
    return {};
  }

  // The last of the command's output went to the caller (or the caller
  // stopped reading it): an exit that came first is delivered now.
  void OutputRelayed() {
    if (!exit_after_output_ || finished_) return;
    int status = *exit_after_output_;
    exit_after_output_.reset();
    OnExit(status);
  }

  void ClientBroke(const std::string& why) {
    if (channel_ != nullptr) channel_->Detach(session_);
    channel_ = nullptr;
    Finish(Fail(codes::kBadRequest, "qube.run: " + why));
  }

  void Finish(ApiResult<json> result) {
    if (finished_) return;
    finished_ = true;
    if (relay_) {
      bytes_in_ += relay_->bytes_in();
      bytes_out_ += relay_->bytes_out();
    }
    if (ended_) {
      RunOutcome outcome;
      outcome.qube = name_;
      outcome.bytes_in = bytes_in_;
      outcome.bytes_out = bytes_out_;
      if (result) {
        outcome.exit_code = result->value("exit_code", -1);
      } else {
        outcome.error_code = result.error().code;
        outcome.message = result.error().message;
      }
      // Before the reply: what the caller learns has been recorded.
      auto ended = std::move(ended_);
      ended(outcome);
    }
    // The caller gets its result first; the teardown of a disposable made
    // for it follows (recorded as stopping, so a crash in between is cleaned
    // up by recovery).
    caller_->Reply(std::move(result));
    relay_.reset();  // a caller still writing sees EPIPE
    caller_pipes_.clear();
    if (counted_) owner_.manager_.SessionEnded(name_);
    if (disposable_ && !name_.empty()) StopDisposable();
    // A start still in flight refers to us: Ready finishes the cleanup.
    if (!starting_) owner_.Finished(serial_);
  }

  void StopDisposable() {
    std::string name = name_;
    owner_.manager_.Stop(name, std::chrono::milliseconds(0), [name](ApiResult<json> r) {
      if (!r) {
        Log(LogLevel::kError, "disposable teardown failed",
            {{"qube", name}, {"error", r.error().message}});
      }
    });
  }

  RunCommands& owner_;
  uint64_t serial_;
  std::unique_ptr<RunCaller> caller_;
  RunRequest params_;
  RunEnded ended_;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  std::string name_;
  bool started_now_ = false;
  bool disposable_ = false;
  bool client_gone_ = false;
  bool finished_ = false;
  bool starting_ = false;  // a start callback refers to this run
  bool counted_ = false;
  AgentChannel* channel_ = nullptr;
  uint32_t session_ = 0;
  std::vector<wire::Frame> early_;  // client frames that came before the session
  std::unique_ptr<PipeRelay> relay_;    // stdin and stdout as pipes (TakesPipes)
  std::vector<UniqueFd> caller_pipes_;  // the caller's ends, until `started`
  std::optional<int> exit_after_output_;
  size_t early_bytes_ = 0;
  std::optional<backend::MemoryEvents> oom_before_;  // at the session's start
};

RunCommands::RunCommands(EventLoop& loop, AdminServer& server, QubeManager& manager,
                         AuditLog& audit, backend::Capabilities capabilities)
    : loop_(loop), server_(server), manager_(manager), audit_(audit), capabilities_(capabilities) {}

RunCommands::~RunCommands() = default;

void RunCommands::Handle(AdminServer::Call call) {
  auto params = ParseRunRequest(call.params, call.fds->size());
  if (!params) return server_.Reply(call, tl::unexpected(params.error()));
  Start(std::move(call), std::move(*params));
}

void AdminCaller::Attach(AdminServer::StreamHandler* handler) {
  server_.Attach(call_.connection, handler);
}

void AdminCaller::Send(FrameType type, uint8_t stream, std::string_view payload) {
  server_.Send(call_.connection, type, static_cast<uint32_t>(call_.id), stream, payload);
}

void AdminCaller::Reply(ApiResult<json> result) { server_.Reply(call_, std::move(result)); }

void RunCommands::Start(AdminServer::Call call, RunRequest request, RunEnded ended) {
  Start(std::make_unique<AdminCaller>(server_, std::move(call)), std::move(request),
        std::move(ended));
}

void RunCommands::Start(std::unique_ptr<RunCaller> caller, RunRequest request, RunEnded ended) {
  uint64_t serial = next_serial_++;
  auto run =
      std::make_unique<Run>(*this, serial, std::move(caller), std::move(request), std::move(ended));
  Run* r = run.get();
  runs_.emplace(serial, std::move(run));
  r->Begin();
}

void RunCommands::Finished(uint64_t serial) {
  // Not from inside the run's own call stack.
  loop_.Post([this, serial] { runs_.erase(serial); });
}

}  // namespace tessera::daemon
