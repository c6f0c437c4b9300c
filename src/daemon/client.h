#pragma once
// The client side of the admin protocol (protocol.h), used by the `tessera` CLI.
//
//   AdminClient client = TRY(AdminClient::Connect());   // R/admin.sock
//   Reply reply = TRY(client.Call("qube.start", {{"qube", "work"}}));
//   if (!reply.ok) fprintf(stderr, "%s\n", reply.message.c_str());

#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::daemon {

// R/admin.sock for the runtime dir `runtime_dir` (default: RuntimeDir()).
std::string AdminSocketPath(const std::string& runtime_dir = "");

struct Reply {
  bool ok = false;
  nlohmann::json result;  // ok
  std::string code;       // !ok: codes::k...
  std::string message;    // !ok
};

// A message for people when Connect failed: how to start the daemon, or why
// they may not talk to it.
std::string ExplainConnectError(const Error& error, const std::string& socket_path = "");

class AdminClient {
 public:
  // Fails with ENOENT/ECONNREFUSED when no daemon listens (callers explain how
  // to start one) and EACCES when the socket refuses this user.
  static Result<AdminClient> Connect(const std::string& socket_path = "");

  // One request/response exchange. `fds` ride with the request (qube.run).
  Result<Reply> Call(const std::string& method, nlohmann::json params,
                     std::span<const int> fds = {});
  // After a successful events.subscribe: the next event (blocking).
  Result<nlohmann::json> NextEvent();

  int fd() const { return fd_.get(); }

 private:
  explicit AdminClient(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  int64_t next_id_ = 1;
};

}  // namespace tessera::daemon
