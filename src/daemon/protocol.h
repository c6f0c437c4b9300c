#pragma once
// The admin protocol spoken on R/admin.sock between `tessera` and tesserad
// (docs/DAEMON.md describes it for other clients).
//
// Every message is one frame: a big-endian u32 length followed by that many
// bytes of UTF-8 JSON. A frame may carry file descriptors (SCM_RIGHTS) attached
// to its first byte; only `qube.run` requests do.
//
//   Request  {"v":1,"id":7,"method":"qube.start","params":{"qube":"work"}}
//   Response {"id":7,"ok":true,"result":{...}}
//            {"id":7,"ok":false,"error":{"code":"no_such_qube","message":"..."}}
//   Event    {"event":"state","qube":"work","state":"running",...}  (after
//            events.subscribe, the connection only carries events)
//
//   TRY(WriteFrame(fd, request.dump(), {stdin_fd, stdout_fd, stderr_fd}));
//   Frame reply = TRY(ReadFrame(fd));

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::daemon {

inline constexpr int kProtocolVersion = 1;
// Larger frames are refused (and the connection closed): a client cannot make
// the daemon allocate without bound.
inline constexpr uint32_t kMaxFrameBytes = 1u << 20;
// A frame carries at most this many descriptors; extra ones are closed.
inline constexpr size_t kMaxFrameFds = 3;

struct Frame {
  std::string payload;
  std::vector<UniqueFd> fds;
};

// Sends one frame; `fds` ride along with its first byte. Blocking.
Status WriteFrame(int fd, const std::string& payload, std::span<const int> fds = {});
// Receives one frame. ECONNRESET-like errors and EOF before a frame is complete
// are errors; a clean EOF before the first byte gives errno 0 and message "eof".
Result<Frame> ReadFrame(int fd, uint32_t max_bytes = kMaxFrameBytes);

// A parsed, shape-checked request. Parsing never throws.
struct Request {
  int64_t id = 0;
  std::string method;
  nlohmann::json params = nlohmann::json::object();
};
// Checks version, id, method and params shape; the error message is sent back
// to the client as code "bad_request".
Result<Request> ParseRequest(const std::string& payload);

// Error codes used in responses (stable API; docs/DAEMON.md lists them).
namespace codes {
inline constexpr const char* kBadRequest = "bad_request";
inline constexpr const char* kUnknownMethod = "unknown_method";
inline constexpr const char* kPermissionDenied = "permission_denied";
inline constexpr const char* kNoSuchQube = "no_such_qube";
inline constexpr const char* kInvalidState = "invalid_state";
inline constexpr const char* kInvalidConfig = "invalid_config";
inline constexpr const char* kNotSupported = "not_supported";
inline constexpr const char* kFailed = "failed";
}  // namespace codes

// json.dump() that never throws: invalid UTF-8 (e.g. in argv) is replaced.
std::string Dump(const nlohmann::json& value);

nlohmann::json OkResponse(int64_t id, nlohmann::json result);
nlohmann::json ErrorResponse(int64_t id, std::string_view code, std::string_view message);

}  // namespace tessera::daemon
