#pragma once
// The admin protocol spoken on R/admin.sock between `tessera` (or any admin
// client) and tesserad, in the frames of wire/frame.h. docs/DAEMON.md
// describes it for other clients.
//
//   request  (type request, session 0)
//            {"v":2,"id":7,"method":"qube.start","params":{"qube":"work"}}
//   response (type response)
//            {"id":7,"ok":true,"result":{...}}
//            {"id":7,"ok":false,"error":{"code":"no_such_qube","message":"..."}}
//   event    (type event, after events.subscribe) {"event":"state",...}
//
// `qube.run` may attach the caller's stdin, stdout and stderr (descriptors
// handed on to the qube) or relay them as data/eof/credit/signal frames whose
// session is the request id, with the flow control of agent_protocol.h.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tessera::wire {

inline constexpr int kAdminProtocolVersion = 2;
inline constexpr size_t kMaxMethodName = 64;

// A parsed, shape-checked request. Parsing never throws.
struct AdminRequest {
  int64_t id = 0;
  std::string method;
  nlohmann::json params = nlohmann::json::object();
};
// Checks version, id, method and params shape (unknown top-level keys are
// refused); the message goes back to the client as code "bad_request".
Result<AdminRequest> ParseAdminRequest(std::string_view payload);
std::string SerializeAdminRequest(int64_t id, std::string_view method,
                                  const nlohmann::json& params);

// Stable error codes of responses (docs/DAEMON.md lists them).
namespace codes {
inline constexpr const char* kBadRequest = "bad_request";
inline constexpr const char* kUnknownMethod = "unknown_method";
inline constexpr const char* kPermissionDenied = "permission_denied";
inline constexpr const char* kBusy = "busy";
inline constexpr const char* kNoSuchQube = "no_such_qube";
inline constexpr const char* kInvalidState = "invalid_state";
inline constexpr const char* kInvalidConfig = "invalid_config";
inline constexpr const char* kNotSupported = "not_supported";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kCommandNotFound = "command_not_found";
inline constexpr const char* kCommandNotExecutable = "command_not_executable";
inline constexpr const char* kRelayRequired = "relay_required";
inline constexpr const char* kShuttingDown = "shutting_down";
// rpc.call: denied by policy, or refused before it (nothing more is said).
inline constexpr const char* kRequestRefused = "request_refused";
}  // namespace codes

std::string OkResponse(int64_t id, const nlohmann::json& result);
std::string ErrorResponse(int64_t id, std::string_view code, std::string_view message);

// A response as the client sees it.
struct AdminReply {
  int64_t id = 0;
  bool ok = false;
  nlohmann::json result;  // ok
  std::string code;       // !ok
  std::string message;    // !ok
};
Result<AdminReply> ParseAdminReply(std::string_view payload);

}  // namespace tessera::wire
