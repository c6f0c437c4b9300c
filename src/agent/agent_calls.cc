// The agent's side of RPC calls made in its qube (wire/agent_protocol.h
// "Calls"): tessera-call connects to the agent's socket, sends its call, and
// the agent re-frames the call onto the channel the host marked for calls,
// under an id of its own. Both sides are checked here: a caller in the qube
// that breaks the rules (data beyond the stdin the host granted, frames out
// of order) loses only its own connection, never the channel; the host's
// frames for a call go only to that call's caller.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agent/agent.h"
#include "wire/agent_protocol.h"

namespace tessera::agent {

using wire::FrameType;

namespace {

// Frames to a caller carry this session id (one call per connection).
constexpr uint32_t kLocalSession = 1;
constexpr uint64_t kMaxCredit = uint64_t{1} << 32;

}  // namespace

void Agent::ListenForCalls() {
  // Only as a cell's PID 1: an agent run outside a cell (its own tests)
  // must not make sockets in the host's /run.
  if (::getpid() != 1) return;
  ::mkdir("/run/tessera", 0755);
  ::unlink(wire::kAgentCallSocket);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, wire::kAgentCallSocket, sizeof(addr.sun_path) - 1);
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(wire::kAgentCallSocket, 0666) != 0 || ::listen(fd.get(), 64) != 0) {
    std::fprintf(stderr, "tessera-agent: no RPC calls from this qube: %s: %s\n",
                 wire::kAgentCallSocket, std::strerror(errno));
    return;
  }
  call_listener_ = std::move(fd);
}

Agent::LocalCall* Agent::FindCall(uint64_t serial) {
  auto it = calls_.find(serial);
  return it == calls_.end() || it->second->dead ? nullptr : it->second.get();
}

void Agent::AcceptCall() {
  int fd = ::accept4(call_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  auto call = std::make_unique<LocalCall>();
  call->serial = next_serial_++;
  call->fd.reset(fd);
  calls_.emplace(call->serial, std::move(call));
}

void Agent::ReadCall(LocalCall& call) {
  auto r = wire::RecvInto(call.fd.get(), &call.decoder);
  if (!r || *r == wire::RecvResult::kEof) return DropCall(call);
  for (;;) {
    auto frame = call.decoder.Next();
    if (!frame) return DropCall(call);
    if (!*frame) break;
    if (!HandleLocalFrame(call, **frame)) return DropCall(call);
    if (call.dead || call.ended) break;
  }
  FlushCall(call);
}

void Agent::FlushCall(LocalCall& call) {
  if (call.dead) return;
  auto drained = call.out.Flush(call.fd.get());
  if (!drained) return DropCall(call);
  if (*drained && call.ended) {
    call.dead = true;  // its answer is written: done
  }
}

// The caller went away or broke the rules: the host hangs the service up.
// The call's id stays taken until the host ends the call.
void Agent::DropCall(LocalCall& call) {
  if (call.dead) return;
  call.dead = true;
  if (call.id == 0 || call.ended) return;
  Channel* ch = FindChannel(call.channel);
  if (ch == nullptr) return;
  ch->out.Push(wire::EncodeFrame(FrameType::kClose, call.id, 0, {}));
  FlushChannel(*ch);
}

void Agent::EndCall(LocalCall& call, int code, const std::string& message) {
  call.out.Push(wire::EncodeFrame(FrameType::kError, kLocalSession, 0,
                                  wire::SerializeSessionError({code, message})));
  call.ended = true;
  FlushCall(call);
}

bool Agent::HandleLocalFrame(LocalCall& call, wire::Frame& frame) {
  if (frame.type == FrameType::kCall) {
    if (call.id != 0) return false;  // one call per connection
    auto message = wire::ParseCall(frame.payload);
    if (!message) return false;
    Channel* ch = FindChannel(call_channel_);
    if (ch == nullptr) {
      EndCall(call, 125, "no call channel to the host (is tesserad running?)");
      return true;
    }
    uint32_t id;
    do {
      id = wire::kCallSessionBit | (next_call_id_++ & ~wire::kCallSessionBit);
    } while (ch->calls.count(id) != 0);
    ch->calls[id] = call.serial;
    call.id = id;
    call.channel = ch->serial;
    // Re-serialised: the host gets what we parsed, never the caller's bytes.
    ch->out.Push(wire::EncodeFrame(FrameType::kCall, id, 0, wire::SerializeCall(*message)));
    FlushChannel(*ch);
    return true;
  }
  if (call.id == 0) return false;  // nothing before the call frame
  switch (frame.type) {
    case FrameType::kData:
      if (frame.stream != wire::kStdin || frame.payload.size() > call.stdin_window) return false;
      call.stdin_window -= frame.payload.size();
      break;
    case FrameType::kEof:
      if (frame.stream != wire::kStdin) return false;
      break;
    case FrameType::kCredit:
      if (frame.stream == wire::kStdin || !wire::DecodeU32(frame)) return false;
      break;
    case FrameType::kClose:
      break;
    default:
      return false;
  }
  Channel* ch = FindChannel(call.channel);
  if (ch == nullptr) return true;  // the call already ended with an error
  ch->out.Push(wire::EncodeFrame(frame.type, call.id, frame.stream, frame.payload));
  FlushChannel(*ch);
  return true;
}

bool Agent::HandleHostCallFrame(Channel& ch, wire::Frame& frame) {
  auto it = ch.calls.find(frame.session);
  // A frame for a call the host ended already (crossed frames): ignored.
  if (it == ch.calls.end()) return true;
  LocalCall* call = FindCall(it->second);
  bool ends = frame.type == FrameType::kExit || frame.type == FrameType::kError;
  switch (frame.type) {
    case FrameType::kStarted:
      break;
    case FrameType::kData:
    case FrameType::kEof:
      if (frame.stream == wire::kStdin) return false;
      break;
    case FrameType::kCredit: {
      if (frame.stream != wire::kStdin) return false;
      auto n = wire::DecodeU32(frame);
      if (!n) return false;
      if (call != nullptr) call->stdin_window = std::min(kMaxCredit, call->stdin_window + *n);
      break;
    }
    case FrameType::kExit:
      if (!wire::DecodeU32(frame)) return false;
      break;
    case FrameType::kError:
      if (!wire::ParseSessionError(frame.payload)) return false;
      break;
    default:
      return false;
  }
  // Only `started` brings descriptors: the call's pipes (at most two).
  if (!frame.fds.empty() && (frame.type != FrameType::kStarted || frame.fds.size() > 2)) {
    return false;
  }
  if (ends) ch.calls.erase(it);
  if (call == nullptr || call->ended) return true;  // its caller is gone
  auto nfds = static_cast<uint8_t>(frame.fds.size());
  call->out.Push(wire::EncodeFrame(frame.type, kLocalSession, frame.stream, frame.payload, nfds),
                 std::move(frame.fds));
  if (ends) call->ended = true;
  FlushCall(*call);
  return true;
}

void Agent::CallChannelLost(Channel& ch) {
  if (ch.serial == call_channel_) call_channel_ = 0;
  for (const auto& [id, serial] : ch.calls) {
    LocalCall* call = FindCall(serial);
    if (call != nullptr && !call->ended) EndCall(*call, 125, "the host closed the call channel");
  }
  ch.calls.clear();
}

}  // namespace tessera::agent
