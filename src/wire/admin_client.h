#pragma once
// The client side of the admin protocol (admin_protocol.h): the `tessera` CLI
// and tests use it to talk to tesserad.
//
//   AdminClient client = TRY(AdminClient::Connect());   // R/admin.sock
//   AdminReply reply = TRY(client.Call("qube.start", {{"qube", "work"}}));
//   if (!reply.ok) fprintf(stderr, "%s\n", reply.message.c_str());

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "wire/admin_protocol.h"
#include "wire/frame.h"

namespace tessera::wire {

// R/admin.sock for the runtime dir `runtime_dir` (default: RuntimeDir()).
std::string AdminSocketPath(const std::string& runtime_dir = "");

// A message for people when Connect failed: how to start the daemon, or why
// they may not talk to it.
std::string ExplainConnectError(const Error& error, const std::string& socket_path = "");

class AdminClient {
 public:
  // Fails with ENOENT/ECONNREFUSED when no daemon listens (callers explain how
  // to start one) and EACCES when the socket refuses this user.
  static Result<AdminClient> Connect(const std::string& socket_path = "");

  // One request/response exchange. `fds` ride with the request (qube.run).
  Result<AdminReply> Call(const std::string& method, const nlohmann::json& params,
                          std::span<const int> fds = {});
  // Sends a request without waiting (streaming callers read frames themselves).
  Result<int64_t> Send(const std::string& method, const nlohmann::json& params,
                       std::span<const int> fds = {});
  // The next frame from tesserad (blocking); an error when it hung up.
  Result<Frame> NextFrame();
  // A whole frame already read with an earlier one, if there is one (never
  // blocks). A caller that polls fd() takes these first: poll cannot see them.
  Result<std::optional<Frame>> BufferedFrame() { return decoder_.Next(); }
  // After a successful events.subscribe: the next event (blocking).
  Result<nlohmann::json> NextEvent();

  int fd() const { return fd_.get(); }

 private:
  explicit AdminClient(UniqueFd fd) : fd_(std::move(fd)), decoder_(DecoderRules::AdminClient()) {}
  UniqueFd fd_;
  FrameDecoder decoder_;
  int64_t next_id_ = 1;
};

}  // namespace tessera::wire
