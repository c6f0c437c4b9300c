#pragma once
// Frames over SOCK_STREAM unix sockets: blocking helpers for simple callers
// (the CLI, tests, `tessera cell run`) and the pieces of non-blocking I/O the
// daemon and the agent build their loops from.
//
//   TRY(WriteFrame(fd, FrameType::kRequest, 0, 0, request_json, {in, out, err}));
//   FrameDecoder decoder(DecoderRules::AdminClient());
//   std::optional<Frame> reply = TRY(ReadFrame(fd, &decoder));  // nullopt: peer closed
//
//   // Non-blocking: on POLLIN
//   RecvResult r = TRY(RecvInto(fd, &decoder));
//   while (auto frame = TRY(decoder.Next())) ...
//   // Output: queue frames, flush on POLLOUT
//   out.Push(EncodeFrame(...));
//   bool drained = TRY(out.Flush(fd));

#include <cstddef>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "wire/frame.h"

namespace tessera::wire {

// Sends all of `bytes` (blocking); `fds` ride with the first byte. EINTR is
// retried; EPIPE is an error (never SIGPIPE).
Status SendAll(int fd, std::string_view bytes, std::span<const int> fds = {});

// Encodes and sends one frame; the header's nfds is fds.size().
Status WriteFrame(int fd, FrameType type, uint32_t session, uint8_t stream,
                  std::string_view payload, std::span<const int> fds = {});

enum class RecvResult { kProgress, kWouldBlock, kEof };

inline constexpr size_t kRecvChunk = 64u << 10;

// One recvmsg of at most `max_bytes` (<= kRecvChunk) into `decoder`; received
// descriptors are queued on it (and closed if it refuses them). kEof: the
// peer closed its end.
Result<RecvResult> RecvInto(int fd, FrameDecoder* decoder, size_t max_bytes = kRecvChunk);

// Blocking read of the next frame; nullopt when the peer closed the
// connection between frames, an error when it closed mid-frame.
Result<std::optional<Frame>> ReadFrame(int fd, FrameDecoder* decoder);

// Output of a non-blocking socket: encoded frames (and the descriptors each
// carries) waiting for the socket to take them.
class OutQueue {
 public:
  void Push(std::string bytes, std::vector<UniqueFd> fds = {});
  // Writes as much as the socket takes now; true once everything is written.
  // EAGAIN is not an error; EPIPE/ECONNRESET are.
  Result<bool> Flush(int fd);
  size_t bytes() const { return bytes_; }
  bool empty() const { return chunks_.empty(); }

 private:
  struct Chunk {
    std::string bytes;
    size_t sent = 0;
    std::vector<UniqueFd> fds;  // sent with the chunk's first byte
  };
  std::deque<Chunk> chunks_;
  size_t bytes_ = 0;
};

}  // namespace tessera::wire
