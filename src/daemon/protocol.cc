#include "daemon/protocol.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace tessera::daemon {
namespace {

Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(Error::FromErrno("send frame"));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Ok();
}

// Reads exactly `size` bytes (0 = clean EOF before the first byte is reported
// through `eof_ok`).
Status ReadAll(int fd, char* data, size_t size, std::vector<UniqueFd>* fds) {
  size_t done = 0;
  while (done < size) {
    struct iovec iov = {data + done, size - done};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(Error::FromErrno("receive frame"));
    }
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        UniqueFd owned(received);  // closed unless kept below
        if (fds != nullptr && fds->size() < kMaxFrameFds) fds->push_back(std::move(owned));
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      return Err(Error("receive frame: too many file descriptors attached"));
    }
    if (n == 0) {
      if (done == 0) return Err(Error("eof"));
      return Err(Error("receive frame: connection closed in the middle of a frame"));
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace

Status WriteFrame(int fd, const std::string& payload, std::span<const int> fds) {
  if (payload.size() > kMaxFrameBytes) return Err(Error("frame too large"));
  if (fds.size() > kMaxFrameFds) return Err(Error("too many file descriptors for one frame"));
  uint32_t size = static_cast<uint32_t>(payload.size());
  unsigned char header[4] = {static_cast<unsigned char>(size >> 24),
                             static_cast<unsigned char>(size >> 16),
                             static_cast<unsigned char>(size >> 8),
                             static_cast<unsigned char>(size)};
  if (fds.empty()) {
    std::string buffer(reinterpret_cast<const char*>(header), 4);
    buffer += payload;
    return WriteAll(fd, buffer.data(), buffer.size());
  }
  // The descriptors ride on the header; the body follows as plain data.
  struct iovec iov = {header, sizeof(header)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFrameFds)] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(Error::FromErrno("send frame"));
    if (n != static_cast<ssize_t>(sizeof(header))) {
      // A 4-byte write on a stream socket is not split in practice; finish it anyway.
      TRY(WriteAll(fd, reinterpret_cast<const char*>(header) + n,
                   sizeof(header) - static_cast<size_t>(n)));
    }
    break;
  }
  return WriteAll(fd, payload.data(), payload.size());
}

Result<Frame> ReadFrame(int fd, uint32_t max_bytes) {
  Frame frame;
  unsigned char header[4];
  TRY(ReadAll(fd, reinterpret_cast<char*>(header), sizeof(header), &frame.fds));
  uint32_t size = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) |
                  (uint32_t{header[2]} << 8) | uint32_t{header[3]};
  if (size > max_bytes) {
    return Err(Error("frame of " + std::to_string(size) + " bytes exceeds the limit of " +
                     std::to_string(max_bytes)));
  }
  frame.payload.resize(size);
  if (size > 0) TRY(ReadAll(fd, frame.payload.data(), size, &frame.fds));
  return frame;
}

Result<Request> ParseRequest(const std::string& payload) {
  nlohmann::json doc = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Err(Error("request is not valid JSON"));
  if (!doc.is_object()) return Err(Error("request must be a JSON object"));
  auto v = doc.find("v");
  if (v == doc.end() || !v->is_number_integer()) {
    return Err(Error("request needs an integer protocol version \"v\""));
  }
  if (v->get<int64_t>() != kProtocolVersion) {
    return Err(Error("unsupported protocol version " + v->dump() + " (this daemon speaks " +
                     std::to_string(kProtocolVersion) + ")"));
  }
  Request request;
  auto id = doc.find("id");
  if (id == doc.end() || !id->is_number_integer()) {
    return Err(Error("request needs an integer \"id\""));
  }
  request.id = id->get<int64_t>();
  auto method = doc.find("method");
  if (method == doc.end() || !method->is_string() || method->get_ref<const std::string&>().empty()) {
    return Err(Error("request needs a string \"method\""));
  }
  request.method = method->get<std::string>();
  auto params = doc.find("params");
  if (params != doc.end()) {
    if (!params->is_object()) return Err(Error("\"params\" must be an object"));
    request.params = *params;
  }
  return request;
}

std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json OkResponse(int64_t id, nlohmann::json result) {
  return {{"id", id}, {"ok", true}, {"result", std::move(result)}};
}

nlohmann::json ErrorResponse(int64_t id, std::string_view code, std::string_view message) {
  return {{"id", id},
          {"ok", false},
          {"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
}

}  // namespace tessera::daemon
