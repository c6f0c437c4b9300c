#pragma once
// The admin socket R/admin.sock (bound here, or passed by socket activation:
// tesserad.socket; then it is left in place when the daemon stops): accepts
// connections on the event loop,
// authorises the peer by SO_PEERCRED (root or the admin group, looked up per
// connection), decodes requests with the one frame codec, dispatches them
// through a method table, audits every request and answer, and carries the
// streams of long requests (qube.run relays, event subscriptions).
//
// Bounded against local users (the socket is 0666 by default so refusals are
// seen and audited): a cap on connections in total and on unauthorised ones
// per uid and in total, a deadline for every request from its first byte to
// its last, accept backoff when descriptors run out, small frames for peers
// that are not authorised, refused-request audit records rate-limited per uid
// (and the number suppressed reported with the next one), and clients that do
// not read their output dropped rather than buffered without bound.
//
//   AdminServer server(loop, audit, options);
//   server.Register("qube.list", {}, [&](AdminServer::Call call) {
//     server.Reply(call, json{{"qubes", ...}});
//   });
//   TRY(server.Listen());

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/unique_fd.h"
#include "daemon/api.h"
#include "daemon/audit.h"
#include "daemon/auth.h"
#include "daemon/event_loop.h"
#include "daemon/rate_limit.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace tessera::daemon {

struct AdminServerOptions {
  std::string socket_path;
  mode_t socket_mode = 0666;
  std::string admin_group = "tessera";
  size_t max_connections = 256;
  size_t max_unauthorized_per_uid = 4;
  size_t max_unauthorized = 32;
  // From a request's first byte to its last.
  std::chrono::milliseconds request_deadline{10000};
  // How long a refused peer may take to say what it wanted.
  std::chrono::milliseconds unauthorized_deadline{2000};
  // Output queued for a client that does not read; beyond it, it is dropped.
  size_t max_output_bytes = 8u << 20;
};

class AdminServer {
 public:
  // One request being served.
  struct Call {
    uint64_t connection = 0;
    int64_t id = 0;
    std::string method;
    nlohmann::json params;
    // Only for methods registered with accepts_fds. Shared so that a Call can
    // be copied into the callbacks that answer it.
    std::shared_ptr<std::vector<UniqueFd>> fds = std::make_shared<std::vector<UniqueFd>>();
    Peer peer;
    // The request's audit record, completed by Reply (also when the client
    // has gone by then: what was done is recorded either way).
    nlohmann::json audit;
    bool audit_failures_only = false;
  };
  using Handler = std::function<void(Call call)>;
  struct MethodFlags {
    bool accepts_fds = false;        // qube.run: the caller's stdio
    bool audit_failures_only = false;  // qube.list: frequent and read-only
  };

  // A request that keeps its connection after it started: it gets the
  // stream frames (data/eof/credit/signal/close) of its session and hears
  // when the client goes away.
  class StreamHandler {
   public:
    virtual ~StreamHandler() = default;
    virtual void OnClientFrame(wire::Frame& frame) = 0;
    virtual void OnClientGone() = 0;
  };

  AdminServer(EventLoop& loop, AuditLog& audit, AdminServerOptions options);
  ~AdminServer();

  void Register(std::string method, MethodFlags flags, Handler handler);
  // Binds (tight umask, then the configured mode and group) and listens.
  Status Listen();
  // Stops accepting, unlinks the socket, and closes every connection.
  void Close();

  // Answers `call` (if its connection is still there), audits it, and frees
  // the connection for its next request.
  void Reply(const Call& call, ApiResult<nlohmann::json> result);
  // Routes the stream frames of the connection's current request to
  // `handler` until Reply or the client goes away.
  void Attach(uint64_t connection, StreamHandler* handler);
  // Sends a frame to the client of `connection`: false when it is gone or
  // does not read its output (it is then dropped).
  bool Send(uint64_t connection, wire::FrameType type, uint32_t session, uint8_t stream,
            std::string_view payload);
  bool Connected(uint64_t connection) const { return connections_.count(connection) != 0; }
  size_t connections() const { return connections_.size(); }

 private:
  struct Connection;
  struct Method {
    MethodFlags flags;
    Handler handler;
  };

  void OnAccept();
  void Serve(Connection& c);
  void Dispatch(Connection& c, wire::Frame& frame);
  void Refuse(Connection& c, const std::string& method, int64_t id, const std::string& why);
  void AuditRefusal(const std::optional<Peer>& peer, const std::string& method,
                    const std::string& why);
  void ArmDeadline(Connection& c);
  void FlushOut(Connection& c);
  void Drop(uint64_t id, const std::string& why);
  std::optional<gid_t> AdminGid();

  EventLoop& loop_;
  AuditLog& audit_;
  AdminServerOptions options_;
  UniqueFd listen_fd_;
  bool activated_ = false;  // listen_fd_ came from socket activation
  EventLoop::Watch accept_watch_;
  EventLoop::Timer accept_backoff_;
  std::map<std::string, Method> methods_;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  uint64_t next_connection_ = 1;
  std::map<uid_t, size_t> unauthorized_by_uid_;
  size_t unauthorized_ = 0;
  struct RefusalLog {
    TokenBucket bucket{1.0, 10.0};
    uint64_t suppressed = 0;
  };
  std::map<uid_t, RefusalLog> refusals_;
};

// The bounded summary of a request's parameters kept in the audit log: what
// was asked, never file contents or descriptions.
nlohmann::json SummarizeParams(const std::string& method, const nlohmann::json& params);

}  // namespace tessera::daemon
