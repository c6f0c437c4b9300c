#include "wire/agent_protocol.h"

#include <nlohmann/json.hpp>

#include "common/json_access.h"

namespace tessera::wire {
namespace {

using nlohmann::json;

constexpr size_t kMaxMessage = 1024;

std::string_view StdioName(Stdio s) {
  switch (s) {
    case Stdio::kNull: return "null";
    case Stdio::kFd: return "fd";
    case Stdio::kPipe: return "pipe";
  }
  return "null";
}

}  // namespace

size_t FdsNeeded(const OpenMessage& message) {
  size_t n = 0;
  for (Stdio s : message.stdio) n += s == Stdio::kFd ? 1 : 0;
  return n;
}

Result<OpenMessage> ParseOpen(std::string_view payload, size_t attached_fds) {
  json j = TRY(ParseJsonObject(payload, {.what = "open", .max_depth = 2}));
  TRY(OnlyKeys(j, {"argv", "env", "cwd", "user", "stdio"}, "open"));
  OpenMessage m;
  m.argv = TRY(StringArray(j, "argv", "open", {.required = true, .max_items = kMaxArgs}));
  if (m.argv[0].empty()) return Err(Error("open: empty program name", EINVAL));
  m.env = TRY(StringArray(j, "env", "open", {.max_items = kMaxArgs}));
  for (const auto& e : m.env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) return Err(Error("open: env entry without NAME=", EINVAL));
  }
  m.cwd = TRY(StringOr(j, "cwd", "/", "open", 4096));
  if (m.cwd.empty() || m.cwd[0] != '/') return Err(Error("open: \"cwd\" must be absolute", EINVAL));
  m.user = TRY(StringOr(j, "user", "root", "open", 64));
  if (m.user.empty()) return Err(Error("open: empty \"user\"", EINVAL));
  std::vector<std::string> stdio = TRY(StringArray(j, "stdio", "open", {.max_items = 3}));
  if (stdio.size() != 3) return Err(Error("open: \"stdio\" must name 3 streams", EINVAL));
  for (size_t i = 0; i < 3; ++i) {
    if (stdio[i] == "null") {
      m.stdio[i] = Stdio::kNull;
    } else if (stdio[i] == "fd") {
      m.stdio[i] = Stdio::kFd;
    } else if (stdio[i] == "pipe") {
      m.stdio[i] = Stdio::kPipe;
    } else {
      return Err(Error("open: unknown stdio kind \"" + stdio[i] + "\"", EINVAL));
    }
  }
  if (FdsNeeded(m) != attached_fds) {
    return Err(Error("open: " + std::to_string(attached_fds) + " descriptors attached for " +
                         std::to_string(FdsNeeded(m)) + " \"fd\" streams",
                     EINVAL));
  }
  return m;
}

std::string SerializeOpen(const OpenMessage& m) {
  json j = {{"argv", m.argv},
            {"env", m.env},
            {"cwd", m.cwd},
            {"user", m.user},
            {"stdio", {StdioName(m.stdio[0]), StdioName(m.stdio[1]), StdioName(m.stdio[2])}}};
  return DumpJson(j);
}

Result<SessionError> ParseSessionError(std::string_view payload) {
  json j = TRY(ParseJsonObject(payload, {.what = "agent error", .max_bytes = 64u << 10,
                                         .max_depth = 1}));
  TRY(OnlyKeys(j, {"code", "message"}, "agent error"));
  SessionError e;
  e.code = static_cast<int>(TRY(RequiredInt(j, "code", 125, 127, "agent error")));
  e.message = TRY(StringOr(j, "message", "", "agent error", 64u << 10));
  // The text comes from inside a qube: bounded here, escaped where printed.
  if (e.message.size() > kMaxMessage) e.message.resize(kMaxMessage);
  return e;
}

std::string SerializeSessionError(const SessionError& e) {
  return DumpJson(json{{"code", e.code}, {"message", e.message}});
}

Result<Hello> ParseHello(std::string_view payload) {
  json j = TRY(ParseJsonObject(payload, {.what = "hello", .max_bytes = 4096, .max_depth = 1}));
  TRY(OnlyKeys(j, {"version"}, "hello"));
  Hello h;
  h.version = static_cast<int>(TRY(RequiredInt(j, "version", 1, 1000, "hello")));
  return h;
}

std::string SerializeHello(const Hello& h) { return DumpJson(json{{"version", h.version}}); }

}  // namespace tessera::wire
