// tessera-call (also qrexec-client-vm): an RPC call from inside a qube.
//
//   tessera-call TARGET SERVICE[+ARG] [LOCAL-PROGRAM [ARGS...]]
//
// Without a local program this process's stdin, stdout and stderr are the
// call's streams and its exit status is the service's; with one, the
// program's stdin is the service's stdout and its stdout the service's stdin
// (its stderr stays ours). 126: refused by policy; 127: no such service in
// the target; 125: any other failure. The call goes to the qube's agent
// (wire::kAgentCallSocket), which hands it to the host; nothing here says
// who calls: the host knows which qube's channel it came on.
//
// Static, like tessera-agent: it runs in templates that may have no libc.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/fd_io.h"
#include "wire/agent_protocol.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace {

using tessera::wire::FrameType;
namespace wire = tessera::wire;

constexpr int kFailure = 125;

int Usage(const char* name) {
  std::fprintf(stderr,
               "usage: %s TARGET SERVICE[+ARGUMENT] [LOCAL-PROGRAM [ARGS...]]\n"
               "Calls an RPC service in TARGET (a qube, @default, @dispvm, @dispvm:TEMPLATE,\n"
               "@adminvm) as the policy allows. Exit status: the service's; 126 refused by\n"
               "policy, 127 no such service, 125 any other failure.\n",
               name);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const char* name = argc > 0 ? argv[0] : "tessera-call";
  // Run as the built-in service qubes.WaitForSession: Qubes' scripts call
  // it before using a qube's graphical session; cells have no session to
  // wait for (yet), so it is there at once.
  if (const char* slash = std::strrchr(name, '/');
      std::strcmp(slash != nullptr ? slash + 1 : name, "qubes.WaitForSession") == 0) {
    return 0;
  }
  if (argc >= 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    Usage(name);
    return 0;
  }
  if (argc < 3) return Usage(name);
  ::signal(SIGPIPE, SIG_IGN);
  wire::CallMessage call{argv[1], argv[2]};
  if (call.service.empty() || call.service.size() > 320 || call.target.size() > 128) {
    std::fprintf(stderr, "%s: bad target or service\n", name);
    return kFailure;
  }

  int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, wire::kAgentCallSocket, sizeof(addr.sun_path) - 1);
  if (sock < 0 || ::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(stderr, "%s: cannot reach the qube's agent at %s: %s\n", name,
                 wire::kAgentCallSocket, std::strerror(errno));
    return kFailure;
  }
  if (!wire::WriteFrame(sock, FrameType::kCall, 1, 0, wire::SerializeCall(call))) {
    std::fprintf(stderr, "%s: the agent went away\n", name);
    return kFailure;
  }

  // Where the service's stdin comes from and its stdout goes.
  int in_fd = STDIN_FILENO;
  int out_fd = STDOUT_FILENO;
  pid_t local = -1;
  if (argc > 3) {
    int to_program[2];
    int from_program[2];
    if (::pipe2(to_program, O_CLOEXEC) != 0 || ::pipe2(from_program, O_CLOEXEC) != 0) {
      std::perror("pipe");
      return kFailure;
    }
    local = ::fork();
    if (local < 0) {
      std::perror("fork");
      return kFailure;
    }
    if (local == 0) {
      ::signal(SIGPIPE, SIG_DFL);
      if (::dup2(to_program[0], STDIN_FILENO) < 0 || ::dup2(from_program[1], STDOUT_FILENO) < 0) {
        _exit(kFailure);
      }
      ::execvp(argv[3], argv + 3);
      std::fprintf(stderr, "%s: cannot run %s: %s\n", name, argv[3], std::strerror(errno));
      _exit(errno == ENOENT ? 127 : 126);
    }
    ::close(to_program[0]);
    ::close(from_program[1]);
    in_fd = from_program[0];
    out_fd = to_program[1];
  }

  wire::FrameDecoder decoder(wire::DecoderRules::CallClient());
  bool started = false;
  bool stdin_open = true;
  uint64_t window = 0;  // opened by the host once the service runs
  int status = -1;
  std::string failure;
  char buf[wire::kMaxDataPayload];
  while (status < 0) {
    pollfd p[2] = {{sock, POLLIN, 0}, {in_fd, POLLIN, 0}};
    nfds_t count = started && stdin_open && window > 0 ? 2 : 1;
    if (::poll(p, count, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (count == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::read(in_fd, buf, static_cast<size_t>(std::min<uint64_t>(window, sizeof(buf))));
      // A write that fails means the call is over (a service that exits
      // without reading its input): its status is already on the way, so
      // stop sending and read on.
      if (n > 0) {
        window -= static_cast<uint64_t>(n);
        if (!wire::WriteFrame(sock, FrameType::kData, 1, wire::kStdin,
                              std::string_view(buf, static_cast<size_t>(n)))) {
          stdin_open = false;
        }
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
        (void)wire::WriteFrame(sock, FrameType::kEof, 1, wire::kStdin, {});
      }
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    auto r = wire::RecvInto(sock, &decoder);
    if (!r || *r == wire::RecvResult::kEof) break;
    for (;;) {
      auto frame = decoder.Next();
      if (!frame || !*frame) {
        if (!frame) failure = frame.error().ToString();
        break;
      }
      wire::Frame& f = **frame;
      switch (f.type) {
        case FrameType::kStarted:
          started = true;
          break;
        case FrameType::kCredit:
          if (auto n = wire::DecodeU32(f); n && f.stream == wire::kStdin) window += *n;
          break;
        case FrameType::kData: {
          int fd = f.stream == wire::kStderr ? STDERR_FILENO : out_fd;
          // A reader that went away: the rest is dropped, and still
          // credited, so the service is never left blocked on us.
          if (fd >= 0) (void)tessera::agent::WriteFull(fd, f.payload.data(), f.payload.size());
          (void)wire::WriteFrame(sock, FrameType::kCredit, 1, f.stream,
                                 wire::EncodeU32(static_cast<uint32_t>(f.payload.size())));
          break;
        }
        case FrameType::kEof:
          if (f.stream == wire::kStdout && out_fd >= 0 && out_fd != STDOUT_FILENO) {
            ::close(out_fd);  // the local program sees the service's end
            out_fd = -1;
          }
          break;
        case FrameType::kExit:
          if (auto n = wire::DecodeU32(f)) status = static_cast<int>(*n);
          break;
        case FrameType::kError:
          if (auto e = wire::ParseSessionError(f.payload)) {
            std::fprintf(stderr, "%s: %s\n", name, e->message.c_str());
            status = e->code;
          }
          break;
        default:
          break;
      }
      if (status >= 0) break;
    }
    if (!failure.empty()) break;
  }
  if (status < 0) {
    std::fprintf(stderr, "%s: the call ended without a status%s%s\n", name,
                 failure.empty() ? "" : ": ", failure.c_str());
    status = kFailure;
  }
  if (local > 0) {
    if (out_fd >= 0 && out_fd != STDOUT_FILENO) ::close(out_fd);
    int ws = 0;
    while (::waitpid(local, &ws, 0) < 0 && errno == EINTR) {
    }
    int local_status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    if (status == 0) status = local_status;
  }
  return status;
}
