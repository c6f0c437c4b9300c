#include "daemon/agent_channel.h"

#include <fcntl.h>

#include <algorithm>

#include "common/log.h"

namespace tessera::daemon {

using wire::FrameType;

Result<std::unique_ptr<AgentChannel>> AgentChannel::Create(
    EventLoop& loop, std::string qube, UniqueFd fd, Limits limits,
    std::function<void(std::string)> on_broken) {
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  std::unique_ptr<AgentChannel> ch(
      new AgentChannel(loop, std::move(qube), std::move(fd), limits, std::move(on_broken)));
  AgentChannel* self = ch.get();
  ch->watch_ = TRY(loop.WatchFd(ch->fd_.get(), EPOLLIN, [self](uint32_t events) {
    // A sink called from here may destroy the channel (a run that ends stops
    // its disposable): nothing of it is touched once `alive` says so.
    std::shared_ptr<const bool> alive = self->alive_;
    if ((events & EPOLLOUT) != 0) self->Flush();
    if (!*alive) return;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && !self->broken_) self->OnReadable();
  }));
  return ch;
}

AgentChannel::AgentChannel(EventLoop& loop, std::string qube, UniqueFd fd, Limits limits,
                           std::function<void(std::string)> on_broken)
    : loop_(loop),
      qube_(std::move(qube)),
      fd_(std::move(fd)),
      limits_(limits),
      on_broken_(std::move(on_broken)),
      frames_(limits.frames_per_second, limits.frame_burst) {}

AgentChannel::~AgentChannel() {
  *alive_ = false;
  broken_ = true;
  if (call_handler_ != nullptr) {
    calls_.clear();
    call_handler_->OnCallsLost();
  }
  auto sessions = std::move(sessions_);
  for (auto& [id, s] : sessions) {
    if (s.sink != nullptr) s.sink->OnLost("qube " + qube_ + " stopped while the command ran");
  }
}

Result<uint32_t> AgentChannel::Open(const wire::OpenMessage& message, std::vector<UniqueFd> fds,
                                    Sink* sink) {
  if (broken_) return Err(Error("agent channel of " + qube_ + " is closed", ECONNRESET));
  if (sessions_.size() >= limits_.max_sessions) {
    return Err(Error("qube " + qube_ + " has " + std::to_string(sessions_.size()) +
                         " commands running, the most allowed",
                     EAGAIN));
  }
  // Host ids never have the call bit: those are the agent's.
  while (next_id_ == 0 || (next_id_ & wire::kCallSessionBit) != 0 ||
         sessions_.count(next_id_) != 0) {
    next_id_ = (next_id_ + 1) & ~wire::kCallSessionBit;
  }
  uint32_t id = next_id_++;
  sessions_[id].sink = sink;
  sessions_[id].detach = message.detach;
  Push(FrameType::kOpen, id, 0, wire::SerializeOpen(message), std::move(fds));
  Flush();
  return id;
}

bool AgentChannel::SendStdin(uint32_t id, std::string_view data) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || broken_) return true;  // over: dropped
  if (data.size() > it->second.stdin_window) return false;
  it->second.stdin_window -= data.size();
  for (size_t off = 0; off < data.size(); off += wire::kMaxDataPayload) {
    Push(FrameType::kData, id, wire::kStdin, data.substr(off, wire::kMaxDataPayload));
  }
  Flush();
  return true;
}

void AgentChannel::SendStdinEof(uint32_t id) {
  if (sessions_.count(id) == 0 || broken_) return;
  Push(FrameType::kEof, id, wire::kStdin, {});
  Flush();
}

void AgentChannel::Credit(uint32_t id, uint8_t stream, uint32_t bytes) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || broken_ || stream < 1 || stream > 2 || bytes == 0) return;
  it->second.out_window[stream - 1] += bytes;
  Push(FrameType::kCredit, id, stream, wire::EncodeU32(bytes));
  Flush();
}

void AgentChannel::Signal(uint32_t id, int signo) {
  if (sessions_.count(id) == 0 || broken_ || signo <= 0 || signo >= 65) return;
  Push(FrameType::kSignal, id, 0, wire::EncodeU32(static_cast<uint32_t>(signo)));
  Flush();
}

void AgentChannel::Resize(uint32_t id, wire::WindowSize size) {
  if (sessions_.count(id) == 0 || broken_ || size.rows == 0 || size.cols == 0) return;
  Push(FrameType::kResize, id, 0, wire::EncodeWindowSize(size));
  Flush();
}

void AgentChannel::HangUp(uint32_t id) {
  if (sessions_.count(id) == 0 || broken_) return;
  Push(FrameType::kClose, id, 0, {});
  Flush();
}

void AgentChannel::Detach(uint32_t id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  it->second.sink = nullptr;
  // A detached session's output nobody reads: keep its windows open so it
  // drains (and sees the hang-up) instead of blocking on us.
  HangUp(id);
}

void AgentChannel::TakeCalls(CallHandler* handler) {
  call_handler_ = handler;
  if (handler == nullptr || broken_) return;
  Push(FrameType::kHello, 0, 0, wire::SerializeHello({wire::kCallChannelVersion}));
  Flush();
}

void AgentChannel::SendCallFrame(uint32_t id, FrameType type, uint8_t stream,
                                 std::string_view payload, std::vector<UniqueFd> fds) {
  if (broken_ || calls_.count(id) == 0) return;
  if (type == FrameType::kExit || type == FrameType::kError) calls_.erase(id);
  if (!fds.empty()) {
    Push(type, id, stream, payload, std::move(fds));
    Flush();
    return;
  }
  for (size_t off = 0; off == 0 || off < payload.size(); off += wire::kMaxDataPayload) {
    Push(type, id, stream,
         type == FrameType::kData ? payload.substr(off, wire::kMaxDataPayload) : payload);
    if (type != FrameType::kData) break;
  }
  Flush();
}

void AgentChannel::HandleCallFrame(wire::Frame& frame) {
  uint32_t id = frame.session;
  if (frame.type == FrameType::kCall) {
    if (calls_.count(id) != 0) return Break("agent reused call id " + std::to_string(id));
    auto call = wire::ParseCall(frame.payload);
    if (!call) return Break("agent sent a bad call: " + call.error().ToString());
    calls_.insert(id);
    if (call_handler_ == nullptr) {
      calls_.erase(id);
      Push(FrameType::kError, id, 0,
           wire::SerializeSessionError({125, "this qube's calls are not taken"}));
      Flush();
      return;
    }
    return call_handler_->OnCall(id, std::move(*call));
  }
  // A frame for a call that just ended crossed its end: ignored.
  if (calls_.count(id) == 0) return;
  switch (frame.type) {
    case FrameType::kData:
    case FrameType::kEof:
      if (frame.stream != wire::kStdin) return Break("agent sent a caller's output stream");
      break;
    case FrameType::kCredit:
      if (frame.stream == wire::kStdin) return Break("agent credited a call's stdin");
      if (!wire::DecodeU32(frame)) return Break("agent sent a bad credit");
      break;
    case FrameType::kClose:
      break;
    default:
      return Break("unexpected " + std::string(wire::ToString(frame.type)) +
                   " frame for a call from the agent");
  }
  call_handler_->OnCallFrame(id, frame);
}

void AgentChannel::Push(FrameType type, uint32_t id, uint8_t stream, std::string_view payload,
                        std::vector<UniqueFd> fds) {
  // Encoded first: the header's descriptor count must be taken before the
  // vector is moved into the queue (argument evaluation order is unspecified).
  std::string frame = wire::EncodeFrame(type, id, stream, payload, static_cast<uint8_t>(fds.size()));
  out_.Push(std::move(frame), std::move(fds));
}

void AgentChannel::Flush() {
  if (broken_) return;
  auto drained = out_.Flush(fd_.get());
  if (!drained) {
    Break("write to the agent: " + drained.error().ToString());
    return;
  }
  uint32_t out = *drained ? 0u : static_cast<uint32_t>(EPOLLOUT);
  loop_.SetEvents(watch_, paused_ ? out : (EPOLLIN | out));
}

void AgentChannel::OnReadable() {
  auto r = wire::RecvInto(fd_.get(), &decoder_);
  if (!r) {
    Break(r.error().ToString());
    return;
  }
  if (*r == wire::RecvResult::kEof) {
    Break("the agent closed the channel");
    return;
  }
  Pump();
}

void AgentChannel::Pump() {
  std::shared_ptr<const bool> alive = alive_;
  while (*alive && !broken_) {
    if (decoder_.buffered() < wire::kHeaderSize) break;
    if (!frames_.Take()) {
      // Over its rate: stop reading this qube's channel for a while. The
      // agent's writes block, and only this qube's commands wait.
      paused_ = true;
      loop_.SetEvents(watch_, out_.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
      resume_ = loop_.After(frames_.WaitFor(), [this] {
        paused_ = false;
        resume_.Reset();
        std::shared_ptr<const bool> still = alive_;
        Pump();
        if (*still && !broken_ && !paused_) Flush();
      });
      return;
    }
    auto frame = decoder_.Next();
    if (!frame) {
      Break("agent protocol error: " + frame.error().ToString());
      return;
    }
    if (!*frame) break;
    HandleFrame(**frame);
  }
}

void AgentChannel::HandleFrame(wire::Frame& frame) {
  if (frame.type == FrameType::kHello) return;  // version information only
  if ((frame.session & wire::kCallSessionBit) != 0) return HandleCallFrame(frame);
  if (frame.type == FrameType::kCall || frame.type == FrameType::kClose) {
    return Break("agent sent a " + std::string(wire::ToString(frame.type)) +
                 " frame outside a call");
  }
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end()) {
    Break("agent sent a " + std::string(wire::ToString(frame.type)) + " frame for session " +
          std::to_string(frame.session) + ", which is not open");
    return;
  }
  Session& s = it->second;
  uint32_t id = frame.session;
  switch (frame.type) {
    case FrameType::kStarted: {
      auto pid = wire::DecodeU32(frame);
      Sink* sink = s.sink;
      if (s.detach) End(id);  // the agent forgets it too
      if (sink != nullptr) sink->OnStarted(pid ? *pid : 0);
      return;
    }
    case FrameType::kData: {
      if (frame.stream == wire::kStdin) return Break("agent sent data on stdin");
      uint64_t& window = s.out_window[frame.stream - 1];
      if (frame.payload.size() > window) return Break("agent sent more data than it was granted");
      window -= frame.payload.size();
      if (s.sink != nullptr) {
        s.sink->OnData(frame.stream, std::move(frame.payload));
      } else {
        // Detached: nobody reads it; grant it back so the command drains.
        Credit(id, frame.stream, static_cast<uint32_t>(frame.payload.size()));
      }
      return;
    }
    case FrameType::kEof:
      if (frame.stream == wire::kStdin) return Break("agent sent eof on stdin");
      if (s.sink != nullptr) s.sink->OnEof(frame.stream);
      return;
    case FrameType::kCredit: {
      if (frame.stream != wire::kStdin) return Break("agent credited an output stream");
      auto n = wire::DecodeU32(frame);
      if (!n) return Break(n.error().ToString());
      s.stdin_window = std::min<uint64_t>(s.stdin_window + *n, uint64_t{1} << 32);
      if (s.sink != nullptr) s.sink->OnStdinCredit(*n);
      return;
    }
    case FrameType::kExit: {
      auto status = wire::DecodeU32(frame);
      if (!status || *status > 255) return Break("agent sent a bad exit status");
      Sink* sink = s.sink;
      End(id);
      if (sink != nullptr) sink->OnExit(static_cast<int>(*status));
      return;
    }
    case FrameType::kError: {
      auto e = wire::ParseSessionError(frame.payload);
      if (!e) return Break(e.error().ToString());
      Sink* sink = s.sink;
      End(id);
      if (sink != nullptr) sink->OnError(e->code, e->message);
      return;
    }
    default:
      Break("unexpected " + std::string(wire::ToString(frame.type)) + " frame from the agent");
  }
}

void AgentChannel::End(uint32_t id) { sessions_.erase(id); }

void AgentChannel::Break(std::string reason) {
  if (broken_) return;
  broken_ = true;
  watch_.Reset();
  resume_.Reset();
  Log(LogLevel::kWarn, "agent channel closed", {{"qube", qube_}, {"reason", reason}});
  // Copies first: a sink told below may destroy us.
  std::shared_ptr<const bool> alive = alive_;
  EventLoop& loop = loop_;
  std::function<void(std::string)> on_broken = on_broken_;
  std::string qube = qube_;
  auto sessions = std::move(sessions_);
  sessions_.clear();
  CallHandler* calls = call_handler_;
  call_handler_ = nullptr;
  calls_.clear();
  if (calls != nullptr) calls->OnCallsLost();
  for (auto& [id, s] : sessions) {
    if (*alive && s.sink != nullptr) {
      s.sink->OnLost("agent channel of " + qube + " closed: " + reason);
    }
  }
  // The owner destroys us; never from inside our own callback.
  loop.Post([cb = std::move(on_broken), reason] { cb(reason); });
}

}  // namespace tessera::daemon
