#pragma once
// qube.run: one command in a qube (started first if halted) or in a fresh
// disposable, as an exec session on the qube's agent channel. The caller's
// stdin/stdout/stderr are either passed into the qube (`"streams":"fds"`,
// descriptors attached to the request; only where the backend can) or relayed
// through this admin connection (`"streams":"relay"`: data/eof/credit frames
// whose session is the request id, signal and close frames from the client),
// with end-to-end credits, so a slow reader never makes the daemon buffer more
// than a window per stream. Signal, close and (tty runs) resize frames from
// the client reach the command in either mode. `"tty":{"rows","cols"}` gives
// the command a pty in the qube (relayed streams only); `"detach":true` starts
// it with no streams and answers once it runs. When the caller goes away the
// command is hung up, and a disposable made for it is destroyed. The result
// names the exit code and, when the qube says why, a reason (an OOM kill; the
// qube stopping under the command, which ends it with 143).
//
//   RunCommands runs(server, manager, backend.capabilities());
//   server.Register("qube.run", {.accepts_fds = true}, [&](auto call) {
//   runs.Handle(std::move(call)); });

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "backend/backend.h"
#include "daemon/admin_server.h"
#include "daemon/audit.h"
#include "daemon/qube_manager.h"
#include "wire/agent_protocol.h"

namespace tessera::daemon {

// What a run does: a command (or an RPC service, open.service) in a named
// qube, or in a fresh disposable.
struct RunRequest {
  std::string qube;
  bool disposable = false;
  std::string dvm_template;  // disposable: "" = the default
  wire::OpenMessage open;    // user "" = the qube's default_user
  bool relay = false;
};

// How a run ended, for whoever started it (the RPC broker audits each call).
struct RunOutcome {
  std::string qube;        // where it ran; "" if it never got one
  int exit_code = -1;      // -1: none (it failed to start, or was hung up)
  std::string error_code;  // wire::codes when it failed
  std::string message;
  uint64_t bytes_in = 0;   // caller -> command (stdin)
  uint64_t bytes_out = 0;  // command -> caller (stdout and stderr)
};
using RunEnded = std::function<void(const RunOutcome&)>;

// Whoever asked for a run, as the run sees it: an admin connection
// (`qube.run`, `rpc.call` from the host), or a qube's call on its agent
// channel (the RPC broker's).
class RunCaller {
 public:
  virtual ~RunCaller() = default;
  // From now on the caller's stream frames (data/eof on stdin, credit,
  // signal, close) go to `handler`, and its going away too.
  virtual void Attach(AdminServer::StreamHandler* handler) = 0;
  // A frame of the relayed streams (started, data, eof, credit) to the caller.
  virtual void Send(wire::FrameType type, uint8_t stream, std::string_view payload) = 0;
  // The outcome: the last thing the caller hears.
  virtual void Reply(ApiResult<nlohmann::json> result) = 0;
  // The caller's own descriptors for a `"streams":"fds"` run; null: none.
  virtual std::vector<UniqueFd>* fds() { return nullptr; }
  // Whether the caller can take a relayed run's stdin and stdout as two
  // pipes (a qube's call: its agent hands them to tessera-call). Where the
  // backend passes descriptors, the run then moves them with a PipeRelay
  // (no data frames; stderr stays framed).
  virtual bool TakesPipes() const { return false; }
  // `started`, with the pipes when the caller takes them: [0] the read end
  // of the command's stdout, [1] the write end of its stdin.
  virtual void SendStarted(std::vector<UniqueFd> pipes) {
    (void)pipes;
    Send(wire::FrameType::kStarted, 0, wire::EncodeU32(0));
  }
};

// The admin connection that sent the request (`qube.run`, `rpc.call`).
class AdminCaller : public RunCaller {
 public:
  AdminCaller(AdminServer& server, AdminServer::Call call)
      : server_(server), call_(std::move(call)) {}
  void Attach(AdminServer::StreamHandler* handler) override;
  void Send(wire::FrameType type, uint8_t stream, std::string_view payload) override;
  void Reply(ApiResult<nlohmann::json> result) override;
  std::vector<UniqueFd>* fds() override { return call_.fds.get(); }

 private:
  AdminServer& server_;
  AdminServer::Call call_;
};

class RunCommands {
 public:
  RunCommands(EventLoop& loop, AdminServer& server, QubeManager& manager, AuditLog& audit,
              backend::Capabilities capabilities);
  ~RunCommands();

  // qube.run: parses the request, then Start.
  void Handle(AdminServer::Call call);
  // Runs `request` for `call` (answered by the run); `ended` hears the
  // outcome just before the caller gets its answer.
  void Start(AdminServer::Call call, RunRequest request, RunEnded ended = nullptr);
  void Start(std::unique_ptr<RunCaller> caller, RunRequest request, RunEnded ended = nullptr);
  size_t in_flight() const { return runs_.size(); }

 private:
  class Run;
  void Finished(uint64_t serial);

  EventLoop& loop_;
  AdminServer& server_;
  QubeManager& manager_;
  AuditLog& audit_;
  backend::Capabilities capabilities_;
  uint64_t next_serial_ = 1;
  std::map<uint64_t, std::unique_ptr<Run>> runs_;
};

}  // namespace tessera::daemon
