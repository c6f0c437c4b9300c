#pragma once
// The daemon's end of one qube's agent channel (wire/agent_protocol.h): exec
// sessions multiplexed on one connection, on the event loop. Everything the
// agent sends is hostile: frames are decoded with the host's strict rules,
// data beyond the credit we granted or for a session we never opened breaks
// the channel (every session on it ends; the qube itself is untouched), and a
// token bucket bounds the frames per second one qube can make the daemon
// process — a flood slows only that qube's own sessions.
//
//   auto channel = TRY(AgentChannel::Create(loop, "work", TRY(instance.OpenChannel()), {},
//                                           [](std::string why) { ... drop it ... }));
//   uint32_t id = TRY(channel->Open(open_message, std::move(fds), &sink));
//   channel->Credit(id, wire::kStdout, n);   // as the sink's reader consumes data

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "daemon/event_loop.h"
#include "daemon/rate_limit.h"
#include "wire/agent_protocol.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace tessera::daemon {

class AgentChannel {
 public:
  // One session's receiver. Exactly one of OnExit, OnError, OnLost ends it;
  // a detached session (OpenMessage::detach) ends with OnStarted instead.
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual void OnStarted(uint32_t pid) = 0;
    virtual void OnData(uint8_t stream, std::string data) = 0;
    virtual void OnEof(uint8_t stream) = 0;
    virtual void OnStdinCredit(uint32_t bytes) = 0;
    virtual void OnExit(int status) = 0;
    virtual void OnError(int code, std::string message) = 0;  // it did not start
    virtual void OnLost(std::string reason) = 0;              // the channel broke
  };

  // The qube's RPC calls on this channel (frames whose session id has
  // wire::kCallSessionBit; agent_protocol.h "Calls"). The call's content is
  // the qube's word; who calls is this channel's qube.
  class CallHandler {
   public:
    virtual ~CallHandler() = default;
    virtual void OnCall(uint32_t id, wire::CallMessage call) = 0;
    // The caller's frames of an open call: data/eof (stdin), credit
    // (stdout/stderr), close (it hung up).
    virtual void OnCallFrame(uint32_t id, wire::Frame& frame) = 0;
    // The channel is gone (broken or closed): every call on it is over.
    virtual void OnCallsLost() = 0;
  };

  struct Limits {
    double frames_per_second = 20000;
    double frame_burst = 4000;
    size_t max_sessions = 1024;
  };

  // `on_broken` is posted (never called from inside the channel) when the
  // channel fails: the owner drops it then.
  static Result<std::unique_ptr<AgentChannel>> Create(
      EventLoop& loop, std::string qube, UniqueFd fd, Limits limits,
      std::function<void(std::string reason)> on_broken);
  // Ends every session still open (their sinks get OnLost).
  ~AgentChannel();

  // Opens a session; `fds` are attached for the message's "fd" streams.
  Result<uint32_t> Open(const wire::OpenMessage& message, std::vector<UniqueFd> fds, Sink* sink);
  // Relayed stdin; the caller keeps within the credit OnStdinCredit granted
  // (kInitialWindow to begin with). False when that was exceeded.
  bool SendStdin(uint32_t id, std::string_view data);
  void SendStdinEof(uint32_t id);
  // The sink's reader took `bytes` of `stream`: the agent may send that much more.
  void Credit(uint32_t id, uint8_t stream, uint32_t bytes);
  void Signal(uint32_t id, int signo);
  // A tty session's terminal size (the agent ignores it for other sessions).
  void Resize(uint32_t id, wire::WindowSize size);
  // Hangs the session up (SIGHUP, later SIGKILL in the qube); the sink still
  // gets its end.
  void HangUp(uint32_t id);
  // The sink is going away: hang up, and ignore the session's end.
  void Detach(uint32_t id);

  // Takes this channel's calls (tells the agent with hello version 2).
  // Without a handler a call is answered error 125 at once.
  void TakeCalls(CallHandler* handler);
  // A frame to the caller of call `id` (started, data, eof, credit); Reply
  // frames (exit, error) end the call.
  void SendCallFrame(uint32_t id, wire::FrameType type, uint8_t stream, std::string_view payload,
                     std::vector<UniqueFd> fds = {});
  size_t calls() const { return calls_.size(); }
  // Bytes waiting to be written to the agent.
  size_t queued_bytes() const { return out_.bytes(); }

  size_t sessions() const { return sessions_.size(); }
  bool broken() const { return broken_; }

 private:
  struct Session {
    Sink* sink = nullptr;  // null once detached
    uint64_t out_window[2] = {wire::kInitialWindow, wire::kInitialWindow};
    uint64_t stdin_window = wire::kInitialWindow;
    bool detach = false;
  };

  AgentChannel(EventLoop& loop, std::string qube, UniqueFd fd, Limits limits,
               std::function<void(std::string)> on_broken);
  void OnReadable();
  void Pump();  // decoded frames, within the rate limit
  void HandleFrame(wire::Frame& frame);
  void Push(wire::FrameType type, uint32_t id, uint8_t stream, std::string_view payload,
            std::vector<UniqueFd> fds = {});
  void Flush();
  void Break(std::string reason);
  void End(uint32_t id);
  void HandleCallFrame(wire::Frame& frame);

  EventLoop& loop_;
  std::string qube_;
  UniqueFd fd_;
  Limits limits_;
  std::function<void(std::string)> on_broken_;
  wire::FrameDecoder decoder_{wire::DecoderRules::HostSide()};
  wire::OutQueue out_;
  EventLoop::Watch watch_;
  EventLoop::Timer resume_;
  TokenBucket frames_;
  std::map<uint32_t, Session> sessions_;
  CallHandler* call_handler_ = nullptr;
  std::set<uint32_t> calls_;  // open call ids
  uint32_t next_id_ = 1;
  // False once destroyed; callbacks that may destroy us check a copy.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool broken_ = false;
  bool paused_ = false;
};

}  // namespace tessera::daemon
