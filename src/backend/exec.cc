#include "backend/exec.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "wire/agent_protocol.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace tessera::backend {
namespace {

using wire::FrameType;

// Writes all of `data` to `fd`; a caller that closed its end loses the rest
// (the session goes on, as a command writing into a closed pipe would).
void WriteOut(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

Error SessionFailed(const wire::Frame& frame) {
  auto e = wire::ParseSessionError(frame.payload);
  if (!e) return Error("agent sent a malformed error: " + e.error().ToString(), EPROTO);
  // 127 and 126 carry their reason as the errno (callers branch on it).
  int err = e->code == 127 ? ENOENT : e->code == 126 ? EACCES : 0;
  return Error(e->message, err);
}

}  // namespace

Result<int> RunSession(int channel_fd, uint32_t session, const ExecRequest& request,
                       bool pass_fds) {
  if (request.argv.empty()) return Err(Error("exec: empty argv", EINVAL));
  wire::OpenMessage open;
  open.argv = request.argv;
  open.env = request.env;
  open.cwd = request.cwd;
  open.user = request.user;
  const int given[3] = {request.stdin_fd, request.stdout_fd, request.stderr_fd};
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) {
    if (given[i] < 0) {
      open.stdio[i] = wire::Stdio::kNull;
    } else if (pass_fds) {
      open.stdio[i] = wire::Stdio::kFd;
      fds.push_back(given[i]);
    } else {
      open.stdio[i] = wire::Stdio::kPipe;
    }
  }
  TRY_CTX(wire::WriteFrame(channel_fd, FrameType::kOpen, session, 0, wire::SerializeOpen(open), fds),
          "send exec request");
  wire::FrameDecoder decoder(wire::DecoderRules::HostSide());
  bool stdin_open = open.stdio[0] == wire::Stdio::kPipe;
  uint64_t stdin_window = wire::kInitialWindow;
  for (;;) {
    pollfd p[2] = {{channel_fd, POLLIN, 0}, {request.stdin_fd, POLLIN, 0}};
    nfds_t count = stdin_open && stdin_window > 0 ? 2 : 1;
    if (::poll(p, count, -1) < 0) {
      if (errno == EINTR) continue;
      return Err(Error::FromErrno("poll"));
    }
    if (count == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char buf[wire::kMaxDataPayload];
      size_t want = static_cast<size_t>(std::min<uint64_t>(stdin_window, sizeof(buf)));
      ssize_t n = ::read(request.stdin_fd, buf, want);
      if (n > 0) {
        stdin_window -= static_cast<uint64_t>(n);
        TRY(wire::WriteFrame(channel_fd, FrameType::kData, session, wire::kStdin,
                             std::string_view(buf, static_cast<size_t>(n))));
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
        TRY(wire::WriteFrame(channel_fd, FrameType::kEof, session, wire::kStdin, {}));
      }
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    wire::RecvResult r = TRY(wire::RecvInto(channel_fd, &decoder));
    if (r == wire::RecvResult::kEof) {
      return Err(Error("the agent closed the channel while the command ran", ECONNRESET));
    }
    while (auto frame = TRY(decoder.Next())) {
      if (frame->session != session) {
        return Err(Error("agent answered for another session", EPROTO));
      }
      switch (frame->type) {
        case FrameType::kStarted:
          break;
        case FrameType::kData:
          if (frame->stream == wire::kStdin || given[frame->stream] < 0 || pass_fds) {
            return Err(Error("agent sent data on a stream it does not relay", EPROTO));
          }
          WriteOut(given[frame->stream], frame->payload);
          TRY(wire::WriteFrame(channel_fd, FrameType::kCredit, session, frame->stream,
                               wire::EncodeU32(static_cast<uint32_t>(frame->payload.size()))));
          break;
        case FrameType::kEof:
          break;
        case FrameType::kCredit:
          if (frame->stream != wire::kStdin) return Err(Error("agent credited an output", EPROTO));
          stdin_window += TRY(wire::DecodeU32(*frame));
          break;
        case FrameType::kExit: {
          uint32_t status = TRY(wire::DecodeU32(*frame));
          if (status > 255) return Err(Error("agent sent exit status > 255", EPROTO));
          return static_cast<int>(status);
        }
        case FrameType::kError:
          return Err(SessionFailed(*frame));
        default:
          return Err(Error("unexpected " + std::string(wire::ToString(frame->type)) +
                               " frame from the agent",
                           EPROTO));
      }
    }
  }
}

Result<int> Exec(const Instance& instance, const ExecRequest& request, StreamMode mode,
                 const Capabilities& capabilities) {
  if (mode == StreamMode::kPassFds && !capabilities.pass_fds) {
    return Err(Error("this backend cannot pass descriptors into a qube", ENOTSUP));
  }
  bool pass = mode == StreamMode::kPassFds || (mode == StreamMode::kAuto && capabilities.pass_fds);
  UniqueFd channel = TRY_CTX(instance.OpenChannel(), "qube " + instance.name() + ": agent channel");
  return RunSession(channel.get(), 1, request, pass);
}

}  // namespace tessera::backend
