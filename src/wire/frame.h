#pragma once
// The one frame codec of tessera. The admin protocol (tessera <-> tesserad),
// the agent channel (tesserad <-> tessera-agent in each qube) and, later,
// inter-qube RPC all carry these frames, so there is one decoder to harden and
// fuzz (tests/fuzz/wire_frame_fuzz.cc).
//
// A frame is a 12-byte little-endian header, then `length` payload bytes:
//
//   u32 length    payload size; its limit depends on the type (kLimits below)
//   u32 session   0 = the connection itself; else one exec session / request
//   u8  type      FrameType
//   u8  stream    0 stdin, 1 stdout, 2 stderr (data, eof, credit); else 0
//   u8  nfds      file descriptors attached (SCM_RIGHTS on the header's first
//                 byte); only request and open frames may carry any
//   u8  reserved  0
//
// Everything a decoder reads may be hostile: a frame breaking any rule fails
// the stream (FrameDecoder::Next returns an error and every later call too),
// and nothing is allocated beyond the declared, checked length.
//
//   FrameDecoder decoder(DecoderRules::Agent());
//   decoder.Feed(bytes, n);
//   while (auto frame = TRY(decoder.Next())) Handle(*frame);

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::wire {

enum class FrameType : uint8_t {
  kHello = 1,     // JSON; first frame each way on an agent channel
  kRequest = 2,   // admin: JSON request (qube.run may attach stdin/stdout/stderr)
  kResponse = 3,  // admin: JSON response to the request with the same id
  kEvent = 4,     // admin: JSON event (after events.subscribe)
  kOpen = 8,      // host -> agent: JSON exec request opening `session`; may attach fds
  kStarted = 9,   // agent -> host: u32 pid of the session's command (in the qube)
  kData = 10,     // raw bytes on `stream`, 1..kMaxDataPayload
  kEof = 11,      // no more bytes on `stream`; empty payload
  kCredit = 12,   // u32: the receiver takes that many more bytes on `stream`
  kSignal = 13,   // u32 signal number for the session's process group
  kExit = 14,     // agent -> host: u32 exit status (128+N: killed by signal N); ends `session`
  kError = 15,    // agent -> host: JSON {code, message}: the session did not start; ends it
  kClose = 16,    // host -> agent: hang the session up (SIGHUP, later SIGKILL); empty
  kResize = 17,   // host -> agent: u32 (rows << 16 | cols): the session's terminal size
  kCall = 18,     // JSON {target, service}: an RPC call from a qube (agent_protocol.h "Calls")
};

std::string_view ToString(FrameType type);

inline constexpr size_t kHeaderSize = 12;
inline constexpr uint32_t kMaxJsonPayload = 1u << 20;
inline constexpr uint32_t kMaxDataPayload = 64u << 10;
inline constexpr uint8_t kMaxFdsPerFrame = 3;
inline constexpr uint8_t kStdin = 0;
inline constexpr uint8_t kStdout = 1;
inline constexpr uint8_t kStderr = 2;

struct Frame {
  FrameType type = FrameType::kHello;
  uint32_t session = 0;
  uint8_t stream = 0;
  std::string payload;
  std::vector<UniqueFd> fds;
};

// Which frames a decoder accepts, and how large. A peer sending anything else
// is a protocol violation.
struct DecoderRules {
  uint32_t max_json = kMaxJsonPayload;
  uint32_t allowed_types = 0;  // bit (1 << type)
  uint8_t max_fds = kMaxFdsPerFrame;

  bool Allows(FrameType type) const { return (allowed_types >> static_cast<int>(type)) & 1u; }
  // What tesserad accepts from an admin client / the CLI from tesserad.
  static DecoderRules AdminServer();
  static DecoderRules AdminClient();
  // What the agent accepts from the host / the host from an agent.
  static DecoderRules AgentSide();
  static DecoderRules HostSide();
  // What the agent accepts from a caller in its qube (tessera-call) / what
  // tessera-call accepts from the agent.
  static DecoderRules CallServer();
  static DecoderRules CallClient();
};

// Header + payload. CHECKs that the frame obeys the rules a decoder enforces
// (callers build their own frames; a violation is a programmer error).
void AppendFrame(std::string* out, FrameType type, uint32_t session, uint8_t stream,
                 std::string_view payload, uint8_t nfds = 0);
std::string EncodeFrame(FrameType type, uint32_t session, uint8_t stream,
                        std::string_view payload, uint8_t nfds = 0);

// The u32 payload of started/credit/signal/exit frames.
std::string EncodeU32(uint32_t value);
Result<uint32_t> DecodeU32(const Frame& frame);

// Incremental decoder of one byte stream (and the descriptors received with
// it). Descriptors are queued in arrival order; a frame claims as many as its
// header says when it is complete, so a frame's fds always arrive no later
// than its last byte.
class FrameDecoder {
 public:
  explicit FrameDecoder(DecoderRules rules) : rules_(rules) {}

  void Feed(const char* data, size_t size);
  // Queues descriptors received with the bytes fed so far. Refuses (and fails
  // the stream) when more are queued than the frames in flight could claim.
  Status AddFds(std::vector<UniqueFd> fds);
  // The next complete frame; nullopt if more bytes are needed.
  Result<std::optional<Frame>> Next();

  bool failed() const { return failed_; }
  // Bytes received but not yet returned as frames.
  size_t buffered() const { return buffer_.size() - offset_; }
  const DecoderRules& rules() const { return rules_; }

 private:
  Status Fail(std::string message);

  DecoderRules rules_;
  std::string buffer_;
  size_t offset_ = 0;  // consumed prefix of buffer_, compacted lazily
  std::deque<UniqueFd> fds_;
  bool failed_ = false;
  std::string failure_;
};

}  // namespace tessera::wire
