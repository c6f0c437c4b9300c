#include "wire/admin_client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "common/json_access.h"
#include "common/paths.h"
#include "wire/socket_io.h"

namespace tessera::wire {

std::string AdminSocketPath(const std::string& runtime_dir) {
  return (runtime_dir.empty() ? RuntimeDir() : runtime_dir) + "/admin.sock";
}

std::string ExplainConnectError(const Error& error, const std::string& socket_path) {
  std::string path = socket_path.empty() ? AdminSocketPath() : socket_path;
  switch (error.errno_value()) {
    case ENOENT:
    case ECONNREFUSED:
      return "tesserad is not running (no daemon listens on " + path +
             ").\nStart it with: tessera daemon --config /etc/tessera/system.toml &\n"
             "(or `tessera daemon --example &` for the built-in example system)";
    case EACCES:
    case EPERM:
      return "permission denied: cannot connect to " + path +
             " (tessera administration needs root or membership in the admin group)";
    default:
      return "cannot connect to tesserad at " + path + ": " + error.ToString();
  }
}

Result<AdminClient> AdminClient::Connect(const std::string& socket_path) {
  std::string path = socket_path.empty() ? AdminSocketPath() : socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Err(Error("admin socket path too long: " + path, ENAMETOOLONG));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Err(Error::FromErrno("socket"));
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) break;
    if (errno == EINTR) continue;
    return Err(Error::FromErrno("connect " + path));
  }
  return AdminClient(std::move(fd));
}

Result<int64_t> AdminClient::Send(const std::string& method, const nlohmann::json& params,
                                  std::span<const int> fds) {
  int64_t id = next_id_++;
  TRY_CTX(WriteFrame(fd_.get(), FrameType::kRequest, 0, 0,
                     SerializeAdminRequest(id, method, params), fds),
          "send request to tesserad");
  return id;
}

Result<Frame> AdminClient::NextFrame() {
  auto frame = ReadFrame(fd_.get(), &decoder_);
  if (!frame) return Err(std::move(frame).error().Wrap("read from tesserad"));
  if (!*frame) return Err(Error("tesserad closed the connection", ECONNRESET));
  return std::move(**frame);
}

Result<AdminReply> AdminClient::Call(const std::string& method, const nlohmann::json& params,
                                     std::span<const int> fds) {
  int64_t id = TRY(Send(method, params, fds));
  for (;;) {
    Frame frame = TRY(NextFrame());
    if (frame.type != FrameType::kResponse) continue;  // events of another request kind
    AdminReply reply = TRY(ParseAdminReply(frame.payload));
    if (reply.id != id) return Err(Error("tesserad answered another request", EPROTO));
    return reply;
  }
}

Result<nlohmann::json> AdminClient::NextEvent() {
  for (;;) {
    Frame frame = TRY(NextFrame());
    if (frame.type != FrameType::kEvent) continue;
    return ParseJsonObject(frame.payload, {.what = "event from tesserad", .max_depth = 32});
  }
}

}  // namespace tessera::wire
