#include "wire/agent_protocol.h"

#include <nlohmann/json.hpp>

#include "common/json_access.h"
#include "wire/frame.h"

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

Result<CallMessage> ParseCall(std::string_view payload) {
  json j = TRY(ParseJsonObject(payload, {.what = "call", .max_depth = 1}));
  TRY(OnlyKeys(j, {"target", "service"}, "call"));
  CallMessage call;
  call.target = TRY(StringOr(j, "target", "", "call", 128));
  call.service = TRY(RequiredString(j, "service", "call", 320));
  if (call.service.empty()) return Err(Error("call: empty service", EINVAL));
  return call;
}

std::string SerializeCall(const CallMessage& call) {
  return DumpJson(json{{"target", call.target}, {"service", call.service}});
}

std::string ProgramName(const OpenMessage& message) {
  if (message.service) return "service " + message.service->FullName();
  return message.argv.empty() ? std::string() : message.argv[0];
}

bool IsServiceWord(std::string_view word, bool plus_allowed) {
  if (word.empty() || word == "." || word == "..") return false;
  for (char c : word) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || (plus_allowed && c == '+');
    if (!ok) return false;
  }
  return true;
}

std::vector<std::string> ServiceCandidates(const ServiceCall& call) {
  static constexpr const char* kDirs[] = {"/usr/local/etc/qubes-rpc/",
                                          "/usr/local/etc/tessera-rpc/", "/etc/qubes-rpc/",
                                          "/etc/tessera-rpc/", "/run/tessera/tools/rpc/"};
  std::vector<std::string> out;
  if (!call.argument.empty()) {
    for (const char* dir : kDirs) out.push_back(dir + call.FullName());
  }
  for (const char* dir : kDirs) out.push_back(dir + call.name);
  return out;
}

namespace {

Result<ServiceCall> ParseServiceCall(const json& j) {
  if (!j.is_object()) return Err(Error("open: \"service\" must be an object", EINVAL));
  TRY(OnlyKeys(j, {"name", "argument", "source", "requested_target"}, "open service"));
  ServiceCall call;
  call.name = TRY(RequiredString(j, "name", "open service", 64));
  call.argument = TRY(StringOr(j, "argument", "", "open service", 255));
  call.source = TRY(RequiredString(j, "source", "open service", 64));
  call.requested_target = TRY(StringOr(j, "requested_target", "", "open service", 128));
  if (!IsServiceWord(call.name, false)) {
    return Err(Error("open: invalid service name \"" + call.name + "\"", EINVAL));
  }
  if (!call.argument.empty() && !IsServiceWord(call.argument, true)) {
    return Err(Error("open: invalid service argument \"" + call.argument + "\"", EINVAL));
  }
  for (const std::string* word : {&call.source, &call.requested_target}) {
    for (char c : *word) {
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
        return Err(
            Error("open: control character or space in a service's source or target", EINVAL));
      }
    }
  }
  if (call.source.empty()) return Err(Error("open: empty service source", EINVAL));
  return call;
}

}  // namespace

Result<OpenMessage> ParseOpen(std::string_view payload, size_t attached_fds) {
  json j = TRY(ParseJsonObject(payload, {.what = "open", .max_depth = 2}));
  TRY(OnlyKeys(j, {"argv", "service", "env", "cwd", "user", "stdio", "tty", "detach"}, "open"));
  OpenMessage m;
  if (j.contains("service")) {
    if (j.contains("argv")) return Err(Error("open: both \"argv\" and \"service\"", EINVAL));
    m.service = TRY(ParseServiceCall(j["service"]));
  } else {
    m.argv = TRY(StringArray(j, "argv", "open", {.required = true, .max_items = kMaxArgs}));
    if (m.argv[0].empty()) return Err(Error("open: empty program name", EINVAL));
  }
  m.env = TRY(StringArray(j, "env", "open", {.max_items = kMaxArgs}));
  for (const auto& e : m.env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) return Err(Error("open: env entry without NAME=", EINVAL));
  }
  m.cwd = TRY(StringOr(j, "cwd", "", "open", 4096));
  if (!m.cwd.empty() && m.cwd[0] != '/')
    return Err(Error("open: \"cwd\" must be absolute", EINVAL));
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
  if (j.contains("tty")) {
    const json& t = j["tty"];
    if (!t.is_object()) return Err(Error("open: \"tty\" must be an object", EINVAL));
    TRY(OnlyKeys(t, {"rows", "cols"}, "open tty"));
    WindowSize size;
    size.rows = static_cast<uint16_t>(TRY(RequiredInt(t, "rows", 1, 65535, "open tty")));
    size.cols = static_cast<uint16_t>(TRY(RequiredInt(t, "cols", 1, 65535, "open tty")));
    m.tty = size;
    if (m.stdio[0] != Stdio::kPipe || m.stdio[1] != Stdio::kPipe || m.stdio[2] != Stdio::kNull) {
      return Err(Error("open: a tty session's stdio must be pipe, pipe, null", EINVAL));
    }
  }
  if (j.contains("detach")) {
    if (!j["detach"].is_boolean())
      return Err(Error("open: \"detach\" must be true or false", EINVAL));
    m.detach = j["detach"].get<bool>();
    for (Stdio s : m.stdio) {
      if (m.detach && s != Stdio::kNull) {
        return Err(Error("open: a detached session's stdio must be null", EINVAL));
      }
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
  json j = {{"env", m.env},
            {"cwd", m.cwd},
            {"user", m.user},
            {"stdio", {StdioName(m.stdio[0]), StdioName(m.stdio[1]), StdioName(m.stdio[2])}}};
  if (m.service) {
    j["service"] = {{"name", m.service->name},
                    {"argument", m.service->argument},
                    {"source", m.service->source},
                    {"requested_target", m.service->requested_target}};
  } else {
    j["argv"] = m.argv;
  }
  if (m.tty) j["tty"] = {{"rows", m.tty->rows}, {"cols", m.tty->cols}};
  if (m.detach) j["detach"] = true;
  return DumpJson(j);
}

std::string EncodeWindowSize(WindowSize size) {
  return EncodeU32((static_cast<uint32_t>(size.rows) << 16) | size.cols);
}

Result<WindowSize> DecodeWindowSize(std::string_view payload) {
  if (payload.size() != 4) return Err(Error("resize: payload is not 4 bytes", EINVAL));
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(payload[static_cast<size_t>(i)]);
  WindowSize size{static_cast<uint16_t>(v >> 16), static_cast<uint16_t>(v & 0xffff)};
  if (size.rows == 0 || size.cols == 0) return Err(Error("resize: zero rows or columns", EINVAL));
  return size;
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
