#include "daemon/client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "common/paths.h"
#include "daemon/protocol.h"

namespace tessera::daemon {

std::string AdminSocketPath(const std::string& runtime_dir) {
  return (runtime_dir.empty() ? RuntimeDir() : runtime_dir) + "/admin.sock";
}

std::string ExplainConnectError(const Error& error, const std::string& socket_path) {
  std::string path = socket_path.empty() ? AdminSocketPath() : socket_path;
  switch (error.errno_value()) {
    case ENOENT:
    case ECONNREFUSED:
      return "tesserad is not running (no daemon listens on " + path +
             ").\nStart it with: sudo tessera daemon --config /etc/tessera/system.toml &\n"
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
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Err(Error("admin socket path too long: " + path, ENAMETOOLONG));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Err(Error::FromErrno("socket"));
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const struct sockaddr*>(&addr), sizeof(addr)) == 0) {
      break;
    }
    if (errno == EINTR) continue;
    return Err(Error::FromErrno("connect " + path));
  }
  return AdminClient(std::move(fd));
}

Result<Reply> AdminClient::Call(const std::string& method, nlohmann::json params,
                                std::span<const int> fds) {
  int64_t id = next_id_++;
  nlohmann::json request = {
      {"v", kProtocolVersion}, {"id", id}, {"method", method}, {"params", std::move(params)}};
  TRY_CTX(WriteFrame(fd_.get(), Dump(request), fds), "send request to tesserad");
  auto frame = ReadFrame(fd_.get());
  if (!frame) {
    if (frame.error().message() == "eof") {
      return Err(Error("tesserad closed the connection without answering", ECONNRESET));
    }
    return Err(std::move(frame).error().Wrap("read reply from tesserad"));
  }
  nlohmann::json doc = nlohmann::json::parse(frame->payload, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("ok") || !doc["ok"].is_boolean()) {
    return Err(Error("malformed reply from tesserad"));
  }
  Reply reply;
  reply.ok = doc["ok"].get<bool>();
  if (reply.ok) {
    reply.result = doc.value("result", nlohmann::json());
  } else {
    const nlohmann::json& error = doc.value("error", nlohmann::json::object());
    reply.code = error.is_object() ? error.value("code", "failed") : "failed";
    reply.message = error.is_object() ? error.value("message", "") : "";
  }
  return reply;
}

Result<nlohmann::json> AdminClient::NextEvent() {
  Frame frame = TRY(ReadFrame(fd_.get()));
  nlohmann::json doc = nlohmann::json::parse(frame.payload, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Err(Error("malformed event from tesserad"));
  return doc;
}

}  // namespace tessera::daemon
