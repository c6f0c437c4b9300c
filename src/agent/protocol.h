#pragma once
// The control channel between the host (cell backend, daemon) and
// tessera-agent, the PID 1 of every cell. Documented in docs/CELL.md.
//
// One connection = one request. A frame is a little-endian u32 length followed
// by that many bytes of JSON (1 <= length <= kMaxFrame). File descriptors ride
// along with the frame's bytes as SCM_RIGHTS (at most kMaxFds per frame).
//
//   host -> agent  {"type":"exec","argv":[...],"env":[...],"cwd":"/","user":"root",
//                   "stdio":[0,1,-1]}            + the attached fds
//   agent -> host  {"type":"started","pid":12}   then {"type":"exit","code":0}
//               or {"type":"error","code":127,"message":"..."}
//
// Everything arriving on the channel is hostile in both directions (the agent
// runs qube code's neighbours; the host must not trust what a qube's PID 1
// says): strict parsing, size and count limits, unknown keys rejected.
//
//   UniqueFd conn = TRY(cell.ConnectControl());
//   TRY(agent::SendFrame(conn.get(), agent::SerializeExec(msg), fds));
//   std::string text = TRY(agent::ReadFrame(conn.get(), nullptr));
//   agent::Reply reply = TRY(agent::ParseReply(text));

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::agent {

inline constexpr size_t kMaxFrame = 1u << 20;
inline constexpr size_t kMaxFds = 3;
inline constexpr size_t kMaxArgs = 4096;
inline constexpr size_t kMaxJsonDepth = 4;

// Incremental decoder for a byte stream of frames.
class FrameReader {
 public:
  void Feed(const char* data, size_t size);
  // The next complete frame's payload; nullopt if more bytes are needed; an
  // error (and the stream is unusable) on a bad length.
  Result<std::optional<std::string>> Next();

 private:
  std::string buffer_;
  bool failed_ = false;
};

// Frames `payload` (CHECKs it fits: callers build payloads themselves).
std::string EncodeFrame(std::string_view payload);

struct ExecMessage {
  std::vector<std::string> argv;  // non-empty
  std::vector<std::string> env;   // "K=V"
  std::string cwd = "/";
  std::string user = "root";
  // For stdin, stdout, stderr: index into the attached fds, or -1 (/dev/null).
  int stdio[3] = {-1, -1, -1};
  size_t nfds = 0;  // number of fds that must be attached
};

Result<ExecMessage> ParseExec(std::string_view payload);
std::string SerializeExec(const ExecMessage& message);

struct Reply {
  enum class Kind { kStarted, kExit, kError };
  Kind kind = Kind::kError;
  int64_t pid = 0;      // kStarted: pid inside the cell
  int code = 0;         // kExit: exit code (128+signal); kError: 125/126/127
  std::string message;  // kError
};

Result<Reply> ParseReply(std::string_view payload);
std::string SerializeReply(const Reply& reply);

// Blocking helpers for a connected SOCK_STREAM unix socket.
Status SendFrame(int fd, std::string_view payload, std::span<const int> fds = {});
// Reads exactly one frame. Attached fds go to `fds` (refused if `fds` is null
// or more than kMaxFds arrive). EOF before a full frame is an error (ECONNRESET).
Result<std::string> ReadFrame(int fd, std::vector<UniqueFd>* fds);

}  // namespace tessera::agent
