#include "daemon/admin_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstring>

#include "common/json_access.h"
#include "common/log.h"
#include "wire/admin_protocol.h"

namespace tessera::daemon {

using nlohmann::json;
using wire::FrameType;
namespace codes = wire::codes;

struct AdminServer::Connection {
  uint64_t id = 0;
  UniqueFd fd;
  std::optional<Peer> peer;
  bool authorized = false;
  wire::FrameDecoder decoder{wire::DecoderRules::AdminServer()};
  wire::OutQueue out;
  EventLoop::Watch watch;
  EventLoop::Timer deadline;
  bool closing = false;  // answered a refused peer: close once flushed
  // The request being served.
  bool busy = false;
  int64_t request_id = 0;
  StreamHandler* stream = nullptr;
};

json SummarizeParams(const std::string& method, const json& params) {
  json out = json::object();
  for (const char* key : {"qube", "dispvm", "key", "value", "source", "dry_run", "all", "streams",
                          "target", "service"}) {
    auto it = params.find(key);
    if (it == params.end()) continue;
    // Bounded: a hostile admin client cannot make audit records huge.
    std::string text = it->is_string() ? it->get<std::string>() : DumpJson(*it);
    if (text.size() > 256) text = text.substr(0, 256) + "...";
    out[key] = it->is_string() || text.size() > 256 ? json(text) : *it;
  }
  if (method == "qube.run") {
    auto argv = params.find("argv");
    if (argv != params.end() && argv->is_array()) {
      std::string cmd;
      for (const auto& a : *argv) {
        if (a.is_string()) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
        if (cmd.size() > 256) break;
      }
      if (cmd.size() > 256) cmd = cmd.substr(0, 256) + "...";
      out["argv"] = cmd;
    }
  }
  return out;
}

AdminServer::AdminServer(EventLoop& loop, AuditLog& audit, AdminServerOptions options)
    : loop_(loop), audit_(audit), options_(std::move(options)) {}

AdminServer::~AdminServer() { Close(); }

void AdminServer::Register(std::string method, MethodFlags flags, Handler handler) {
  methods_[std::move(method)] = Method{flags, std::move(handler)};
}

std::optional<gid_t> AdminServer::AdminGid() { return LookupGroupId(options_.admin_group); }

Status AdminServer::Listen() {
  const std::string& path = options_.socket_path;
  // Started by socket activation (tesserad.socket): the socket is systemd's,
  // already bound and listening at `path` with the unit's mode and group.
  int passed = sd_listen_fds(1);
  if (passed < 0) return Err(Error("socket activation: " + std::string(std::strerror(-passed))));
  if (passed > 1) {
    return Err(Error("socket activation passed " + std::to_string(passed) +
                     " sockets; tesserad takes one (the admin socket " + path + ")"));
  }
  if (passed == 1) {
    const int fd = SD_LISTEN_FDS_START;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, path.c_str(), 0) <= 0) {
      return Err(
          Error("socket activation: the socket passed is not a listening unix stream socket "
                "at " +
                path + " (the admin socket of this runtime dir)"));
    }
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      return Err(Error::FromErrno("socket activation: set up the admin socket"));
    }
    listen_fd_.reset(fd);
    activated_ = true;
    accept_watch_ = TRY(loop_.WatchFd(listen_fd_.get(), EPOLLIN, [this](uint32_t) { OnAccept(); }));
    Log(LogLevel::kInfo, "admin socket from socket activation", {{"path", path}});
    return Ok();
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Err(Error("socket path too long: " + path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // We hold the instance lock, so an existing socket is a stale leftover.
  ::unlink(path.c_str());
  listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_fd_) return Err(Error::FromErrno("socket"));
  // Bind with a tight umask, then widen to the configured mode: no window in
  // which the socket is more open than intended.
  mode_t old = ::umask(0077);
  int rc = ::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0) return Err(Error::FromErrno("bind " + path));
  std::optional<gid_t> gid = AdminGid();
  if (!gid) {
    Log(LogLevel::kWarn, "admin group does not exist: only root may administer qubes",
        {{"group", options_.admin_group}});
  }
  if (gid && ::chown(path.c_str(), 0, *gid) != 0) return Err(Error::FromErrno("chown " + path));
  mode_t mode = options_.socket_mode;
  if (!gid) mode &= static_cast<mode_t>(~0070);  // no such group: no group access
  if (::chmod(path.c_str(), mode) != 0) return Err(Error::FromErrno("chmod " + path));
  if (::listen(listen_fd_.get(), 128) != 0) return Err(Error::FromErrno("listen " + path));
  accept_watch_ = TRY(loop_.WatchFd(listen_fd_.get(), EPOLLIN, [this](uint32_t) { OnAccept(); }));
  return Ok();
}

void AdminServer::Close() {
  accept_watch_.Reset();
  accept_backoff_.Reset();
  if (listen_fd_) {
    // An activated socket stays: systemd keeps listening on it for the next
    // start of the daemon (clients queue meanwhile).
    if (!activated_) ::unlink(options_.socket_path.c_str());
    listen_fd_.reset();
  }
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : connections_) ids.push_back(id);
  for (uint64_t id : ids) Drop(id, "");
}

void AdminServer::OnAccept() {
  for (;;) {
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: back off instead of spinning on the
        // same pending connection.
        Log(LogLevel::kWarn, "accept failed; pausing", {{"errno", std::to_string(errno)}});
        loop_.SetEvents(accept_watch_, 0);
        accept_backoff_ = loop_.After(std::chrono::milliseconds(100), [this] {
          accept_backoff_.Reset();
          loop_.SetEvents(accept_watch_, EPOLLIN);
        });
      }
      return;
    }
    UniqueFd client(fd);
    auto peer = GetPeer(fd);
    bool authorized = peer && IsAuthorized(*peer, AdminGid());
    if (connections_.size() >= options_.max_connections) {
      AuditRefusal(peer ? std::optional<Peer>(*peer) : std::nullopt, "",
                   "too many connections (" + std::to_string(connections_.size()) + ")");
      continue;  // closed
    }
    if (!authorized) {
      uid_t uid = peer ? peer->uid : static_cast<uid_t>(-1);
      if (unauthorized_ >= options_.max_unauthorized ||
          unauthorized_by_uid_[uid] >= options_.max_unauthorized_per_uid) {
        AuditRefusal(peer ? std::optional<Peer>(*peer) : std::nullopt, "",
                     "too many unauthorised connections");
        continue;
      }
      ++unauthorized_;
      ++unauthorized_by_uid_[uid];
    }
    auto c = std::make_unique<Connection>();
    c->id = next_connection_++;
    c->fd = std::move(client);
    if (peer) c->peer = *peer;
    c->authorized = authorized;
    if (!authorized) {
      // A refused peer only gets to say what it wanted, in a small frame.
      wire::DecoderRules rules = wire::DecoderRules::AdminServer();
      rules.max_json = 4096;
      rules.max_fds = 0;
      c->decoder = wire::FrameDecoder(rules);
    }
    uint64_t id = c->id;
    auto watch = loop_.WatchFd(c->fd.get(), EPOLLIN, [this, id](uint32_t events) {
      auto it = connections_.find(id);
      if (it == connections_.end()) return;
      Connection& conn = *it->second;
      if ((events & EPOLLOUT) != 0) FlushOut(conn);
      if (connections_.count(id) != 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) Serve(conn);
    });
    if (!watch) continue;
    c->watch = std::move(*watch);
    Connection& conn = *c;
    connections_.emplace(id, std::move(c));
    if (!authorized) {
      conn.deadline = loop_.After(options_.unauthorized_deadline, [this, id] {
        auto it = connections_.find(id);
        if (it == connections_.end()) return;
        AuditRefusal(it->second->peer, "", "not root and not in admin group " + options_.admin_group);
        Drop(id, "");
      });
    }
  }
}

void AdminServer::ArmDeadline(Connection& c) {
  if (!c.authorized) return;  // refused peers have their own, shorter one
  if (c.decoder.buffered() == 0) {
    c.deadline.Reset();
    return;
  }
  if (c.deadline) return;
  uint64_t id = c.id;
  c.deadline = loop_.After(options_.request_deadline, [this, id] {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    json who = it->second->peer ? json{{"uid", it->second->peer->uid}, {"pid", it->second->peer->pid}}
                                : json{{"uid", nullptr}};
    audit_.Write({{"kind", "admin"}, {"peer", who}, {"result", "protocol_error"},
                  {"error", "request not completed within " +
                                std::to_string(options_.request_deadline.count()) + " ms"}});
    Drop(id, "");
  });
}

void AdminServer::Serve(Connection& c) {
  uint64_t id = c.id;
  if (c.closing) {
    // Answered and refused: drain and discard until we can close.
    char sink[4096];
    while (::read(c.fd.get(), sink, sizeof(sink)) > 0) {
    }
    return;
  }
  auto r = wire::RecvInto(c.fd.get(), &c.decoder);
  if (!r || *r == wire::RecvResult::kEof) {
    if (!r && c.authorized) {
      json who = c.peer ? json{{"uid", c.peer->uid}, {"pid", c.peer->pid}} : json{{"uid", nullptr}};
      audit_.Write({{"kind", "admin"}, {"peer", who}, {"result", "protocol_error"},
                    {"error", r.error().ToString()}});
    }
    if (!c.authorized && r) AuditRefusal(c.peer, "", "not root and not in admin group " + options_.admin_group);
    Drop(id, "");
    return;
  }
  for (;;) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& conn = *it->second;
    if (conn.closing) return;
    auto frame = conn.decoder.Next();
    if (!frame) {
      if (conn.authorized) {
        (void)Send(id, FrameType::kResponse, 0, 0,
                   wire::ErrorResponse(0, codes::kBadRequest, frame.error().message()));
        json who = conn.peer ? json{{"uid", conn.peer->uid}, {"pid", conn.peer->pid}} : json{{"uid", nullptr}};
        audit_.Write({{"kind", "admin"}, {"peer", who}, {"result", "protocol_error"},
                      {"error", frame.error().ToString()}});
      } else {
        AuditRefusal(conn.peer, "", "not root and not in admin group " + options_.admin_group);
      }
      Drop(id, "");
      return;
    }
    if (!*frame) break;
    Dispatch(conn, **frame);
  }
  if (auto it = connections_.find(id); it != connections_.end()) ArmDeadline(*it->second);
}

void AdminServer::Dispatch(Connection& c, wire::Frame& frame) {
  uint64_t id = c.id;
  if (frame.type != FrameType::kRequest) {
    // Stream frames belong to the request in progress, and to nothing else.
    if (c.busy && c.stream != nullptr && frame.session == static_cast<uint32_t>(c.request_id)) {
      c.stream->OnClientFrame(frame);
      return;
    }
    (void)Send(id, FrameType::kResponse, 0, 0,
               wire::ErrorResponse(0, codes::kBadRequest,
                                   std::string("unexpected ") + std::string(wire::ToString(frame.type)) +
                                       " frame"));
    Drop(id, "");
    return;
  }
  auto request = wire::ParseAdminRequest(frame.payload);
  if (!c.authorized) {
    Refuse(c, request ? request->method : "", request ? request->id : 0,
           "not root and not in admin group " + options_.admin_group);
    return;
  }
  json who = c.peer ? json{{"uid", c.peer->uid}, {"gid", c.peer->gid}, {"pid", c.peer->pid}}
                    : json{{"uid", nullptr}};
  if (!request) {
    audit_.Write({{"kind", "admin"}, {"peer", who}, {"result", codes::kBadRequest},
                  {"error", request.error().message()}});
    (void)Send(id, FrameType::kResponse, 0, 0,
               wire::ErrorResponse(0, codes::kBadRequest, request.error().message()));
    return;
  }
  if (c.busy) {
    // One request at a time per connection; a client that pipelines is broken.
    (void)Send(id, FrameType::kResponse, 0, 0,
               wire::ErrorResponse(request->id, codes::kBadRequest,
                                   "a request is already in progress on this connection"));
    Drop(id, "");
    return;
  }
  auto m = methods_.find(request->method);
  c.busy = true;
  c.request_id = request->id;
  Call call;
  call.connection = id;
  call.id = request->id;
  call.method = request->method;
  call.peer = c.peer.value_or(Peer{});
  call.audit = {{"kind", "admin"},
                {"peer", who},
                {"method", request->method},
                {"params", SummarizeParams(request->method, request->params)}};
  if (auto q = request->params.find("qube"); q != request->params.end() && q->is_string()) {
    call.audit["qube"] = *q;
  }
  call.params = std::move(request->params);
  if (m == methods_.end()) {
    Reply(call, Fail(codes::kUnknownMethod, "unknown method: " + call.method));
    return;
  }
  call.audit_failures_only = m->second.flags.audit_failures_only;
  if (m->second.flags.accepts_fds) *call.fds = std::move(frame.fds);
  m->second.handler(std::move(call));
}

void AdminServer::Reply(const Call& call, ApiResult<json> result) {
  json entry = call.audit;
  std::string response;
  if (result) {
    entry["result"] = "ok";
    if (auto q = result->find("qube"); q != result->end() && q->is_string()) entry["qube"] = *q;
    if (auto code = result->find("exit_code"); code != result->end()) entry["exit_code"] = *code;
    response = wire::OkResponse(call.id, *result);
  } else if (result.error().code == codes::kPermissionDenied) {
    // A method's refusal is recorded like the server's own (AuditRefusal).
    entry["result"] = "denied";
    entry["reason"] = result.error().message;
    response = wire::ErrorResponse(call.id, result.error().code, result.error().message);
  } else {
    entry["result"] = result.error().code;
    entry["error"] = result.error().message;
    response = wire::ErrorResponse(call.id, result.error().code, result.error().message);
  }
  if (!call.audit_failures_only || !result) audit_.Write(entry);
  auto it = connections_.find(call.connection);
  if (it == connections_.end()) return;
  Connection& c = *it->second;
  if (!c.busy || c.request_id != call.id) return;
  c.busy = false;
  c.stream = nullptr;
  uint64_t id = c.id;
  if (!Send(id, FrameType::kResponse, 0, 0, response)) return;
  // Frames that arrived while it was busy (the next request) are served now,
  // outside this call stack.
  loop_.Post([this, id] {
    auto again = connections_.find(id);
    if (again != connections_.end() && again->second->decoder.buffered() > 0) {
      Connection& conn = *again->second;
      for (;;) {
        if (conn.busy || conn.closing) break;
        auto frame = conn.decoder.Next();
        if (!frame) {
          Drop(id, "");
          return;
        }
        if (!*frame) break;
        Dispatch(conn, **frame);
        if (connections_.count(id) == 0) return;
      }
      ArmDeadline(conn);
    }
  });
}

void AdminServer::Attach(uint64_t connection, StreamHandler* handler) {
  auto it = connections_.find(connection);
  if (it != connections_.end() && it->second->busy) it->second->stream = handler;
}

bool AdminServer::Send(uint64_t connection, FrameType type, uint32_t session, uint8_t stream,
                       std::string_view payload) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return false;
  Connection& c = *it->second;
  c.out.Push(wire::EncodeFrame(type, session, stream, payload));
  if (c.out.bytes() > options_.max_output_bytes) {
    Log(LogLevel::kWarn, "admin client does not read its output; dropping it",
        {{"connection", std::to_string(connection)}});
    Drop(connection, "");
    return false;
  }
  FlushOut(c);
  return connections_.count(connection) != 0;
}

void AdminServer::FlushOut(Connection& c) {
  auto drained = c.out.Flush(c.fd.get());
  if (!drained) {
    Drop(c.id, "");
    return;
  }
  if (*drained && c.closing) {
    Drop(c.id, "");
    return;
  }
  loop_.SetEvents(c.watch, EPOLLIN | (*drained ? 0u : static_cast<uint32_t>(EPOLLOUT)));
}

void AdminServer::Refuse(Connection& c, const std::string& method, int64_t id,
                         const std::string& why) {
  AuditRefusal(c.peer, method, why);
  c.deadline.Reset();
  c.closing = true;
  (void)Send(c.id, FrameType::kResponse, 0, 0,
             wire::ErrorResponse(id, codes::kPermissionDenied,
                                 "permission denied: tessera administration needs root or "
                                 "membership in group " + options_.admin_group));
}

void AdminServer::AuditRefusal(const std::optional<Peer>& peer, const std::string& method,
                               const std::string& why) {
  uid_t uid = peer ? peer->uid : static_cast<uid_t>(-1);
  RefusalLog& log = refusals_[uid];
  if (!log.bucket.Take()) {
    ++log.suppressed;
    return;
  }
  json who = peer ? json{{"uid", peer->uid}, {"gid", peer->gid}, {"pid", peer->pid}}
                  : json{{"uid", nullptr}};
  json record = {{"kind", "admin"}, {"peer", who}, {"method", method}, {"result", "denied"},
                 {"reason", why}};
  if (log.suppressed > 0) {
    record["suppressed"] = log.suppressed;  // refusals of this uid not recorded one by one
    log.suppressed = 0;
  }
  audit_.Write(record);
  Log(LogLevel::kWarn, "admin request refused",
      {{"uid", peer ? std::to_string(peer->uid) : "?"}, {"method", method}, {"reason", why}});
}

void AdminServer::Drop(uint64_t id, const std::string&) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  std::unique_ptr<Connection> c = std::move(it->second);
  connections_.erase(it);
  if (!c->authorized) {
    uid_t uid = c->peer ? c->peer->uid : static_cast<uid_t>(-1);
    --unauthorized_;
    if (--unauthorized_by_uid_[uid] == 0) unauthorized_by_uid_.erase(uid);
  }
  if (c->busy && c->stream != nullptr) c->stream->OnClientGone();
}

}  // namespace tessera::daemon
