#include "agent/protocol.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/check.h"

namespace tessera::agent {
namespace {

using nlohmann::json;

uint32_t ReadLe32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

// nlohmann's parser is iterative, but a hostile 1 MiB "[[[[..." still costs
// memory and time for nothing: our messages are at most kMaxJsonDepth deep, so
// anything deeper is refused before parsing.
bool DepthWithin(std::string_view text, size_t limit) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    }
  }
  return true;
}

Result<json> ParseObject(std::string_view payload, const char* what) {
  if (payload.size() > kMaxFrame) return Err(std::string(what) + ": message too large");
  if (!DepthWithin(payload, kMaxJsonDepth)) {
    return Err(std::string(what) + ": JSON nested too deeply");
  }
  json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Err(std::string(what) + ": malformed JSON");
  if (!j.is_object()) return Err(std::string(what) + ": not a JSON object");
  return j;
}

Status OnlyKeys(const json& j, std::initializer_list<std::string_view> allowed, const char* what) {
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || key == a;
    if (!ok) return Err(std::string(what) + ": unknown key \"" + key + "\"");
  }
  return Ok();
}

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

Result<std::vector<std::string>> StringArray(const json& j, const char* key, size_t max,
                                             bool require_nonempty) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (require_nonempty) return Err(std::string("exec: missing \"") + key + "\"");
    return std::vector<std::string>{};
  }
  if (!it->is_array()) return Err(std::string("exec: \"") + key + "\" is not an array");
  if (it->size() > max) return Err(std::string("exec: too many entries in \"") + key + "\"");
  if (require_nonempty && it->empty()) return Err(std::string("exec: empty \"") + key + "\"");
  std::vector<std::string> out;
  out.reserve(it->size());
  for (const json& e : *it) {
    if (!e.is_string()) return Err(std::string("exec: \"") + key + "\" holds a non-string");
    const auto& s = e.get_ref<const std::string&>();
    if (HasNul(s)) return Err(std::string("exec: NUL byte in \"") + key + "\"");
    out.push_back(s);
  }
  return out;
}

Result<std::string> OptionalString(const json& j, const char* key, std::string fallback,
                                   const char* what) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_string()) return Err(std::string(what) + ": \"" + key + "\" is not a string");
  const auto& s = it->get_ref<const std::string&>();
  if (HasNul(s)) return Err(std::string(what) + ": NUL byte in \"" + key + "\"");
  return s;
}

Result<int64_t> RequiredInt(const json& j, const char* key, int64_t lo, int64_t hi,
                            const char* what) {
  auto it = j.find(key);
  if (it == j.end()) return Err(std::string(what) + ": missing \"" + key + "\"");
  if (!it->is_number_integer()) return Err(std::string(what) + ": \"" + key + "\" is not an integer");
  int64_t v = it->is_number_unsigned() ? (it->get<uint64_t>() > static_cast<uint64_t>(hi)
                                              ? hi + 1
                                              : static_cast<int64_t>(it->get<uint64_t>()))
                                       : it->get<int64_t>();
  if (v < lo || v > hi) return Err(std::string(what) + ": \"" + key + "\" out of range");
  return v;
}

}  // namespace

void FrameReader::Feed(const char* data, size_t size) {
  if (failed_) return;
  buffer_.append(data, size);
}

Result<std::optional<std::string>> FrameReader::Next() {
  if (failed_) return Err(Error("frame stream already failed", EPROTO));
  if (buffer_.size() < 4) return std::optional<std::string>{};
  uint32_t length = ReadLe32(buffer_.data());
  if (length == 0 || length > kMaxFrame) {
    failed_ = true;
    buffer_.clear();
    return Err(Error("frame length " + std::to_string(length) + " outside 1.." +
                         std::to_string(kMaxFrame),
                     EPROTO));
  }
  if (buffer_.size() - 4 < length) return std::optional<std::string>{};
  std::string payload = buffer_.substr(4, length);
  buffer_.erase(0, 4 + static_cast<size_t>(length));
  return std::optional<std::string>(std::move(payload));
}

std::string EncodeFrame(std::string_view payload) {
  TESSERA_CHECK(!payload.empty() && payload.size() <= kMaxFrame);
  auto n = static_cast<uint32_t>(payload.size());
  std::string out;
  out.reserve(4 + payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.append(payload);
  return out;
}

Result<ExecMessage> ParseExec(std::string_view payload) {
  json j = TRY(ParseObject(payload, "exec"));
  TRY(OnlyKeys(j, {"type", "argv", "env", "cwd", "user", "stdio", "nfds"}, "exec"));
  std::string type = TRY(OptionalString(j, "type", "", "exec"));
  if (type != "exec") return Err("exec: \"type\" must be \"exec\"");
  ExecMessage m;
  m.argv = TRY(StringArray(j, "argv", kMaxArgs, /*require_nonempty=*/true));
  if (m.argv[0].empty()) return Err("exec: empty program name");
  m.env = TRY(StringArray(j, "env", kMaxArgs, /*require_nonempty=*/false));
  for (const auto& e : m.env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) return Err("exec: env entry without NAME=");
  }
  m.cwd = TRY(OptionalString(j, "cwd", "/", "exec"));
  if (m.cwd.empty() || m.cwd[0] != '/') return Err("exec: \"cwd\" must be absolute");
  m.user = TRY(OptionalString(j, "user", "root", "exec"));
  if (m.user.empty() || m.user.size() > 64) return Err("exec: bad \"user\"");
  m.nfds = static_cast<size_t>(TRY(RequiredInt(j, "nfds", 0, kMaxFds, "exec")));
  auto it = j.find("stdio");
  if (it == j.end() || !it->is_array() || it->size() != 3) {
    return Err("exec: \"stdio\" must be an array of 3 integers");
  }
  bool used[kMaxFds] = {false, false, false};
  for (size_t i = 0; i < 3; ++i) {
    const json& e = (*it)[i];
    if (!e.is_number_integer()) return Err("exec: \"stdio\" holds a non-integer");
    int64_t v = e.is_number_unsigned() ? (e.get<uint64_t>() > 1000 ? 1000 : e.get<int64_t>())
                                       : e.get<int64_t>();
    if (v < -1 || v >= static_cast<int64_t>(m.nfds)) return Err("exec: \"stdio\" index out of range");
    if (v >= 0) used[v] = true;
    m.stdio[i] = static_cast<int>(v);
  }
  for (size_t i = 0; i < m.nfds; ++i) {
    if (!used[i]) return Err("exec: an attached fd is not used by \"stdio\"");
  }
  return m;
}

std::string SerializeExec(const ExecMessage& m) {
  json j = {{"type", "exec"},
            {"argv", m.argv},
            {"env", m.env},
            {"cwd", m.cwd},
            {"user", m.user},
            {"stdio", {m.stdio[0], m.stdio[1], m.stdio[2]}},
            {"nfds", m.nfds}};
  return j.dump();
}

Result<Reply> ParseReply(std::string_view payload) {
  json j = TRY(ParseObject(payload, "agent reply"));
  TRY(OnlyKeys(j, {"type", "pid", "code", "message"}, "agent reply"));
  std::string type = TRY(OptionalString(j, "type", "", "agent reply"));
  Reply r;
  if (type == "started") {
    r.kind = Reply::Kind::kStarted;
    r.pid = TRY(RequiredInt(j, "pid", 1, (1 << 22), "agent reply"));
  } else if (type == "exit") {
    r.kind = Reply::Kind::kExit;
    r.code = static_cast<int>(TRY(RequiredInt(j, "code", 0, 255, "agent reply")));
  } else if (type == "error") {
    r.kind = Reply::Kind::kError;
    r.code = static_cast<int>(TRY(RequiredInt(j, "code", 0, 255, "agent reply")));
    r.message = TRY(OptionalString(j, "message", "", "agent reply"));
    if (r.message.size() > 4096) r.message.resize(4096);
  } else {
    return Err("agent reply: unknown \"type\"");
  }
  return r;
}

std::string SerializeReply(const Reply& r) {
  json j;
  switch (r.kind) {
    case Reply::Kind::kStarted:
      j = {{"type", "started"}, {"pid", r.pid}};
      break;
    case Reply::Kind::kExit:
      j = {{"type", "exit"}, {"code", r.code}};
      break;
    case Reply::Kind::kError:
      j = {{"type", "error"}, {"code", r.code}, {"message", r.message}};
      break;
  }
  // Messages may carry bytes from a qube (file names): never throw on bad UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Status SendFrame(int fd, std::string_view payload, std::span<const int> fds) {
  if (fds.size() > kMaxFds) return Err(Error("SendFrame: too many fds", EINVAL));
  if (payload.empty() || payload.size() > kMaxFrame) {
    return Err(Error("SendFrame: payload size out of range", EMSGSIZE));
  }
  std::string frame = EncodeFrame(payload);
  size_t sent = 0;
  bool fds_sent = fds.empty();
  while (sent < frame.size()) {
    iovec iov{frame.data() + sent, frame.size() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    if (!fds_sent) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(Error::FromErrno("sendmsg to agent channel"));
    }
    fds_sent = true;
    sent += static_cast<size_t>(n);
  }
  return Ok();
}

namespace {

// Reads exactly `size` bytes, collecting SCM_RIGHTS fds.
Status ReadExact(int fd, char* buf, size_t size, std::vector<UniqueFd>* fds) {
  size_t got = 0;
  while (got < size) {
    iovec iov{buf + got, size - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFds + 1))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(Error::FromErrno("recvmsg from agent channel"));
    }
    // Take ownership of every received fd first, so an error path closes them.
    std::vector<UniqueFd> received;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int rfd;
        std::memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        received.emplace_back(rfd);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      return Err(Error("agent channel: too many fds attached", EPROTO));
    }
    if (!received.empty()) {
      if (fds == nullptr || fds->size() + received.size() > kMaxFds) {
        return Err(Error("agent channel: unexpected fds attached", EPROTO));
      }
      for (auto& r : received) fds->push_back(std::move(r));
    }
    if (n == 0) return Err(Error("agent channel closed mid-frame", ECONNRESET));
    got += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace

Result<std::string> ReadFrame(int fd, std::vector<UniqueFd>* fds) {
  char header[4];
  TRY(ReadExact(fd, header, sizeof(header), fds));
  uint32_t length = ReadLe32(header);
  if (length == 0 || length > kMaxFrame) {
    return Err(Error("agent channel: frame length " + std::to_string(length) + " out of range",
                     EPROTO));
  }
  std::string payload(length, '\0');
  TRY(ReadExact(fd, payload.data(), payload.size(), fds));
  return payload;
}

}  // namespace tessera::agent
