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
#include "common/unique_fd.h"
#include "wire/agent_protocol.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace {

using tessera::wire::FrameType;
namespace wire = tessera::wire;

constexpr int kFailure = 125;

// The call's stdin and stdout on this side: this process's own, or a local
// program's. Framed through the agent (data frames within the stdin window
// the host grants), or, on a call between cells, two pipes the host sends
// with `started`: a local program gets them as they are; ours are copied.
class Streams {
 public:
  Streams(char** local_argv, const char* name) : local_argv_(local_argv), name_(name) {}

  // The service started; `pipes` (if any): [0] its stdout, [1] its stdin.
  bool Start(std::vector<tessera::UniqueFd> pipes) {
    piped_ = pipes.size() == 2;
    if (piped_) {
      int svc_out = pipes[0].release();
      int svc_in = pipes[1].release();
      if (local_argv_ != nullptr) {
        bool ok = Fork(svc_out, svc_in);
        ::close(svc_out);
        ::close(svc_in);
        return ok;
      }
      ::fcntl(svc_out, F_SETFL, O_NONBLOCK);
      ::fcntl(svc_in, F_SETFL, O_NONBLOCK);
      in_.from = STDIN_FILENO;
      in_.to = svc_in;
      out_.from = svc_out;
      out_.to = STDOUT_FILENO;
      out_.from_is_service = true;
      return true;
    }
    if (local_argv_ == nullptr) return true;
    int to_program[2];
    int from_program[2];
    if (::pipe2(to_program, O_CLOEXEC) != 0 || ::pipe2(from_program, O_CLOEXEC) != 0) return false;
    bool ok = Fork(to_program[0], from_program[1]);
    ::close(to_program[0]);
    ::close(from_program[1]);
    in_fd_ = from_program[0];
    out_fd_ = to_program[1];
    return ok;
  }

  void Credit(uint64_t n) { window_ += n; }

  void AddPolls(bool started, std::vector<pollfd>& p) {
    first_ = p.size();
    roles_.clear();
    auto add = [&](int fd, short events, Role role, Flow* flow) {
      p.push_back({fd, events, 0});
      roles_.push_back({role, flow});
    };
    if (!piped_) {
      if (started && in_open_ && window_ > 0 && in_fd_ >= 0) {
        add(in_fd_, POLLIN, kFramedIn, nullptr);
      }
      return;
    }
    for (Flow* f : {&in_, &out_}) {
      if (!f->buf.empty() || f->to_full) {
        add(f->to, POLLOUT, kWrite, f);
      } else if (f->from >= 0) {
        add(f->from, POLLIN, kRead, f);
      }
    }
  }

  void Serve(const std::vector<pollfd>& p, int sock) {
    for (size_t i = 0; i < roles_.size(); ++i) {
      short revents = p[first_ + i].revents;
      if ((revents & (POLLIN | POLLOUT | POLLHUP | POLLERR | POLLNVAL)) == 0) continue;
      auto [role, flow] = roles_[i];
      if ((revents & POLLNVAL) != 0 && flow != nullptr) {  // not a descriptor: give up on it
        Fail(*flow, "a descriptor of the call is not open");
        continue;
      }
      switch (role) {
        case kFramedIn:
          ReadFramed(sock);
          break;
        case kRead:
          Read(*flow);
          break;
        case kWrite:
          Write(*flow);
          break;
      }
    }
  }

  // A data frame of the service's stdout or stderr.
  void Output(uint8_t stream, std::string_view data) {
    int fd = stream == tessera::wire::kStderr ? STDERR_FILENO : out_fd_;
    // A reader that went away: the rest is dropped (and still credited, so
    // the service is never left blocked on us).
    if (fd >= 0) (void)tessera::agent::WriteFull(fd, data.data(), data.size());
  }
  void OutputEnded() {
    if (out_fd_ >= 0 && out_fd_ != STDOUT_FILENO) {
      ::close(out_fd_);  // the local program sees the service's end
      out_fd_ = -1;
    }
  }
  // The call failed: nothing more goes either way.
  void Abandon() {
    Broken(in_);
    Broken(out_);
  }
  // Output still to pass on (piped streams: until the service's stdout ends).
  bool Busy() const { return out_.from >= 0 || !out_.buf.empty(); }
  // Whether passing the piped streams on failed.
  bool failed() const { return failed_; }

  // The local program's status; -1 when none ran.
  int WaitLocal() {
    if (out_fd_ >= 0 && out_fd_ != STDOUT_FILENO) ::close(out_fd_);
    out_fd_ = -1;
    if (local_ <= 0) return -1;
    int ws = 0;
    while (::waitpid(local_, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  }

 private:
  enum Role { kFramedIn, kRead, kWrite };
  // One direction of piped streams, `from` to `to`: spliced where the kernel
  // can (no copy through here), else read into `buf` and written.
  struct Flow {
    int from = -1;
    int to = -1;
    bool from_is_service = false;  // else `to` is (ours, stdin/stdout, stay open)
    std::string buf;
    bool to_full = false;  // a splice stopped because `to` was full
    bool splice_works = true;
  };

  bool Fork(int in, int out) {
    local_ = ::fork();
    if (local_ < 0) return false;
    if (local_ == 0) {
      ::signal(SIGPIPE, SIG_DFL);
      if (::dup2(in, STDIN_FILENO) < 0 || ::dup2(out, STDOUT_FILENO) < 0) _exit(kFailure);
      ::execvp(local_argv_[0], local_argv_);
      std::fprintf(stderr, "%s: cannot run %s: %s\n", name_, local_argv_[0], std::strerror(errno));
      _exit(errno == ENOENT ? 127 : 126);
    }
    return true;
  }

  void ReadFramed(int sock) {
    char buf[tessera::wire::kMaxDataPayload];
    ssize_t n = ::read(in_fd_, buf, static_cast<size_t>(std::min<uint64_t>(window_, sizeof(buf))));
    // A write that fails means the call is over (a service that exits
    // without reading its input): its status is already on the way, so
    // stop sending and read on.
    if (n > 0) {
      window_ -= static_cast<uint64_t>(n);
      if (!tessera::wire::WriteFrame(sock, FrameType::kData, 1, tessera::wire::kStdin,
                                     std::string_view(buf, static_cast<size_t>(n)))) {
        in_open_ = false;
      }
    } else if (n == 0 || errno != EINTR) {
      in_open_ = false;
      (void)tessera::wire::WriteFrame(sock, FrameType::kEof, 1, tessera::wire::kStdin, {});
    }
  }

  void Read(Flow& f) {
    if (f.splice_works) {
      ssize_t n = ::splice(f.from, nullptr, f.to, nullptr, size_t{1} << 20,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0 || (n < 0 && errno == EINTR)) return;
      if (n == 0) return Ended(f);
      if (errno == EAGAIN) {
        f.to_full = true;  // `from` was readable
        return;
      }
      if (errno == EPIPE) return Broken(f);
      if (errno != EINVAL) return Fail(f, std::strerror(errno));
      f.splice_works = false;
    }
    char chunk[1 << 16];
    ssize_t n = ::read(f.from, chunk, sizeof(chunk));
    if (n > 0) {
      f.buf.assign(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      Ended(f);
    } else if (errno != EINTR && errno != EAGAIN) {
      Fail(f, std::strerror(errno));
    }
  }

  void Write(Flow& f) {
    f.to_full = false;
    if (f.buf.empty()) return;  // room again: back to reading
    ssize_t n = ::write(f.to, f.buf.data(), f.buf.size());
    if (n > 0) {
      f.buf.erase(0, static_cast<size_t>(n));
      if (f.buf.empty() && f.from < 0) CloseTo(f);
    } else if (n < 0 && errno == EPIPE) {
      Broken(f);
    } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
      Fail(f, std::strerror(errno));
    }
  }

  // Reading or writing failed (a full disk under our stdout, an I/O error):
  // this way is broken, and the call fails even if the service succeeds.
  void Fail(Flow& f, const std::string& why) {
    std::fprintf(stderr, "%s: %s the service: %s\n", name_,
                 f.from_is_service ? "passing on the output of" : "passing input to", why.c_str());
    failed_ = true;
    Broken(f);
  }

  // `from` ended: so does `to`, once what was read is written.
  void Ended(Flow& f) {
    if (f.from_is_service && f.from >= 0) ::close(f.from);
    f.from = -1;
    if (f.buf.empty()) CloseTo(f);
  }
  // `to`'s reader went (or the call failed): nothing more goes this way, and
  // a service still writing into it sees EPIPE, as with a pipe.
  void Broken(Flow& f) {
    f.buf.clear();
    f.to_full = false;
    if (f.from_is_service && f.from >= 0) ::close(f.from);
    f.from = -1;
    CloseTo(f);
  }
  void CloseTo(Flow& f) {
    if (!f.from_is_service && f.to >= 0) ::close(f.to);  // the service's stdin ends
    f.to = -1;
  }

  char** local_argv_;
  const char* name_;
  pid_t local_ = -1;
  bool piped_ = false;
  // Framed: where the service's stdin comes from and its stdout goes.
  int in_fd_ = STDIN_FILENO;
  int out_fd_ = STDOUT_FILENO;
  uint64_t window_ = 0;  // opened by the host once the service runs
  bool in_open_ = true;
  // Piped: our stdin to the service's, its stdout to ours.
  Flow in_;
  Flow out_;
  bool failed_ = false;
  size_t first_ = 0;
  std::vector<std::pair<Role, Flow*>> roles_;
};

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
  // Started with 0, 1 or 2 closed, the agent's socket would take its place
  // and the call's data would go into it: /dev/null stands in for them.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", O_RDWR) != fd) return kFailure;
  }
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

  Streams streams(argc > 3 ? argv + 3 : nullptr, name);
  wire::FrameDecoder decoder(wire::DecoderRules::CallClient());
  bool started = false;
  int status = -1;
  std::string failure;
  while (status < 0 || streams.Busy()) {
    // Once the status is in, only the output is left to drain.
    std::vector<pollfd> p = {{status < 0 ? sock : -1, POLLIN, 0}};
    streams.AddPolls(started, p);
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    streams.Serve(p, sock);
    if (status >= 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
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
          if (started || (f.fds.size() != 0 && f.fds.size() != 2)) {
            failure = "a second start, or the wrong descriptors";
            break;
          }
          started = true;
          if (!streams.Start(std::move(f.fds))) failure = "cannot start the local program";
          break;
        case FrameType::kCredit:
          if (auto n = wire::DecodeU32(f); n && f.stream == wire::kStdin) streams.Credit(*n);
          break;
        case FrameType::kData: {
          streams.Output(f.stream, f.payload);
          (void)wire::WriteFrame(sock, FrameType::kCredit, 1, f.stream,
                                 wire::EncodeU32(static_cast<uint32_t>(f.payload.size())));
          break;
        }
        case FrameType::kEof:
          if (f.stream == wire::kStdout) streams.OutputEnded();
          break;
        case FrameType::kExit:
          if (auto n = wire::DecodeU32(f)) status = static_cast<int>(*n);
          break;
        case FrameType::kError:
          if (auto e = wire::ParseSessionError(f.payload)) {
            std::fprintf(stderr, "%s: %s\n", name, e->message.c_str());
            status = e->code;
            streams.Abandon();
          }
          break;
        default:
          break;
      }
      if (status >= 0 || !failure.empty()) break;
    }
    if (!failure.empty()) break;
  }
  if (status < 0) {
    std::fprintf(stderr, "%s: the call ended without a status%s%s\n", name,
                 failure.empty() ? "" : ": ", failure.c_str());
    status = kFailure;
  }
  int local_status = streams.WaitLocal();
  if (status == 0 && local_status >= 0) status = local_status;
  // Output we could not pass on fails the call whatever the service's
  // status: it may have died of the SIGPIPE our broken end gave it (141).
  if (streams.failed()) status = kFailure;
  return status;
}
