// The client side of a request whose streams are relayed through tesserad
// (`tessera run`, `tessera call`): the request, then stdin, stdout, stderr,
// signals and window sizes both ways with end-to-end credit until the
// response, which gives the exit status.

#include "cli/relay_session.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "cli/terminal.h"
#include "common/terminal_filter.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "wire/admin_client.h"
#include "wire/agent_protocol.h"
#include "wire/socket_io.h"

namespace tessera::cli {

using nlohmann::json;
using wire::FrameType;

int ExitForCode(const std::string& code) {
  if (code == wire::codes::kCommandNotFound) return 127;
  if (code == wire::codes::kCommandNotExecutable) return 126;
  if (code == wire::codes::kRequestRefused) return 126;
  return kExitRelayFailure;
}

namespace {

void WriteAll(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our reader went away: the rest is dropped
    done += static_cast<size_t>(n);
  }
}

// Signals this process forwards, read from a signalfd.
class ForwardedSignals {
 public:
  ForwardedSignals() {
    sigemptyset(&mask_);
    // Not SIGTTIN/SIGTTOU: blocked, they would turn a background read of
    // the terminal into EIO instead of stopping us as they stop local jobs.
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGTSTP, SIGCONT})
      sigaddset(&mask_, s);
    sigprocmask(SIG_BLOCK, &mask_, &old_);
    fd_.reset(::signalfd(-1, &mask_, SFD_CLOEXEC | SFD_NONBLOCK));
    ::signal(SIGPIPE, SIG_IGN);
  }
  ~ForwardedSignals() { sigprocmask(SIG_SETMASK, &old_, nullptr); }
  int fd() const { return fd_.get(); }
  // The next pending signal, 0 if none.
  int Next() {
    signalfd_siginfo info;
    if (::read(fd_.get(), &info, sizeof(info)) != static_cast<ssize_t>(sizeof(info))) return 0;
    return static_cast<int>(info.ssi_signo);
  }
  // Stops this process as SIGTSTP would have (the shell takes the terminal
  // back); returns once continued.
  void StopSelf() { ::raise(SIGSTOP); }

 private:
  sigset_t mask_;
  sigset_t old_;
  UniqueFd fd_;
};

}  // namespace

class RelaySession::Impl {
 public:
  explicit Impl(const RelayOptions& options)
      : options_(options), tty_(options.tty), relay_(options.relay), terminal_(STDIN_FILENO) {
    for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
      filter_[fd] = options.filter && !tty_ && ::isatty(fd) == 1;
    }
  }

  int Run(json params) {
    auto client = wire::AdminClient::Connect();
    if (!client) {
      std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
      return kExitRelayFailure;
    }
    client_ = &*client;
    std::vector<int> fds;
    if (options_.detach) {
      // No streams at all.
    } else if (relay_) {
      params["streams"] = "relay";
      if (tty_) {
        wire::WindowSize size = WindowSizeOf({STDOUT_FILENO, STDIN_FILENO, STDERR_FILENO});
        params["tty"] = {{"rows", size.rows}, {"cols", size.cols}};
      }
    } else {
      params["streams"] = "fds";
      fds = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
    }
    auto id = client->Send(options_.method, params, fds);
    if (!id) {
      std::fprintf(stderr, "%s: %s\n", options_.label.c_str(), id.error().ToString().c_str());
      return kExitRelayFailure;
    }
    session_ = static_cast<uint32_t>(*id);
    if (options_.start_timeout)
      deadline_ = std::chrono::steady_clock::now() + *options_.start_timeout;
    if (tty_) terminal_.MakeRaw();
    int status = Loop();
    terminal_.Restore();
    return status;
  }

  bool relay_required() const { return relay_required_; }

 private:
  int Loop() {
    int sock = client_->fd();
    for (;;) {
      // Frames that came in with an earlier read are not seen by poll: first them.
      auto buffered = client_->BufferedFrame();
      if (!buffered) return Broken(buffered.error());
      if (*buffered) {
        if (auto status = Handle(**buffered)) return *status;
        continue;
      }
      pollfd p[3] = {{sock, POLLIN, 0}, {signals_.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      nfds_t count = relay_ && stdin_open_ && window_ > 0 && started_ ? 3 : 2;
      int timeout = -1;
      if (options_.start_timeout && !started_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline_ - std::chrono::steady_clock::now());
        if (left.count() <= 0) return TimedOut();
        timeout = static_cast<int>(left.count());
      }
      int ready = ::poll(p, count, timeout);
      if (ready == 0) continue;
      if (ready < 0) {
        if (errno == EINTR) continue;
        return Broken(Error::FromErrno("poll"));
      }
      if ((p[1].revents & POLLIN) != 0) {
        while (int sig = signals_.Next()) Forward(sig);
      }
      if (count == 3 && (p[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0) ReadStdin();
      if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      auto frame = client_->NextFrame();
      if (!frame) return Broken(frame.error());
      if (auto status = Handle(*frame)) return *status;
    }
  }

  void ReadStdin() {
    char buf[wire::kMaxDataPayload];
    ssize_t n =
        ::read(STDIN_FILENO, buf, static_cast<size_t>(std::min<uint64_t>(window_, sizeof(buf))));
    if (n > 0) {
      window_ -= static_cast<uint64_t>(n);
      Send(FrameType::kData, wire::kStdin, std::string_view(buf, static_cast<size_t>(n)));
    } else if (n == 0 || errno != EINTR) {
      stdin_open_ = false;
      Send(FrameType::kEof, wire::kStdin, {});
    }
  }

  void Forward(int sig) {
    switch (sig) {
      case SIGWINCH:
        if (tty_) {
          Send(FrameType::kResize, 0,
               wire::EncodeWindowSize(WindowSizeOf({STDOUT_FILENO, STDIN_FILENO, STDERR_FILENO})));
        } else {
          Send(FrameType::kSignal, 0, wire::EncodeU32(SIGWINCH));
        }
        return;
      case SIGTSTP:
        // Stopped from the keyboard or by job control: the command stops
        // too, and so do we, giving the terminal back to the shell.
        // SIGSTOP, not SIGTSTP: the command leads its own session in the
        // qube, an orphaned process group, to which the kernel does not
        // deliver the keyboard's stop signals.
        Send(FrameType::kSignal, 0, wire::EncodeU32(SIGSTOP));
        terminal_.Restore();
        signals_.StopSelf();
        // Continued (fg/bg): SIGCONT is pending on the signalfd and resumes
        // the command; the terminal is ours again.
        if (tty_) terminal_.MakeRaw();
        return;
      case SIGCONT:
        if (tty_) terminal_.MakeRaw();
        Send(FrameType::kSignal, 0, wire::EncodeU32(SIGCONT));
        return;
      default:
        Send(FrameType::kSignal, 0, wire::EncodeU32(static_cast<uint32_t>(sig)));
    }
  }

  void Send(FrameType type, uint8_t stream, std::string_view payload) {
    (void)wire::WriteFrame(client_->fd(), type, session_, stream, payload);
  }

  // One frame from tesserad: the exit status when it ends the run.
  std::optional<int> Handle(const wire::Frame& frame) {
    switch (frame.type) {
      case FrameType::kStarted:
        started_ = true;
        return std::nullopt;
      case FrameType::kData:
        if (frame.stream == wire::kStdout || frame.stream == wire::kStderr) {
          int fd = frame.stream;
          WriteAll(fd, filter_[fd] ? filters_[fd].Filter(frame.payload) : frame.payload);
          Send(FrameType::kCredit, frame.stream,
               wire::EncodeU32(static_cast<uint32_t>(frame.payload.size())));
        }
        return std::nullopt;
      case FrameType::kEof:
        if ((frame.stream == wire::kStdout || frame.stream == wire::kStderr) &&
            filter_[frame.stream]) {
          WriteAll(frame.stream, filters_[frame.stream].Finish());
        }
        return std::nullopt;
      case FrameType::kCredit:
        if (frame.stream == wire::kStdin) {
          if (auto n = wire::DecodeU32(frame)) window_ += *n;
        }
        return std::nullopt;
      case FrameType::kResponse:
        return Finished(frame);
      default:
        return std::nullopt;
    }
  }

  int Finished(const wire::Frame& frame) {
    terminal_.Restore();
    auto reply = wire::ParseAdminReply(frame.payload);
    if (!reply) {
      std::fprintf(stderr, "%s: %s\n", options_.label.c_str(), reply.error().ToString().c_str());
      return kExitRelayFailure;
    }
    if (!reply->ok) {
      if (reply->code == wire::codes::kRelayRequired && !relay_) {
        relay_required_ = true;
        return kExitRelayFailure;
      }
      std::fprintf(stderr, "%s: %s\n", options_.label.c_str(),
                   EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
      return ExitForCode(reply->code);
    }
    const json& r = reply->result;
    if (r.contains("reason") && r["reason"].is_string()) {
      // After the command's own output, on a line of its own.
      std::fprintf(stderr, "%s%s: %s\n", tty_ ? "\r\n" : "", options_.label.c_str(),
                   EscapeControl(r["reason"].get<std::string>(), EscapeNewlines::kEscape).c_str());
    }
    if (options_.detach) return 0;
    int status = r.value("exit_code", kExitRelayFailure);
    return status >= 0 && status <= 255 ? status : kExitRelayFailure;
  }

  int TimedOut() {
    terminal_.Restore();
    std::fprintf(stderr, "%s: no answer within %lld s; giving up\n", options_.label.c_str(),
                 static_cast<long long>(options_.start_timeout->count() / 1000));
    return kExitRelayFailure;
  }

  int Broken(const Error& error) {
    terminal_.Restore();
    std::fprintf(stderr, "%s: %s\n", options_.label.c_str(), error.ToString().c_str());
    return kExitRelayFailure;
  }

  RelayOptions options_;
  bool tty_;
  bool relay_;
  LocalTerminal terminal_;
  ForwardedSignals signals_;
  wire::AdminClient* client_ = nullptr;
  uint32_t session_ = 0;
  bool started_ = false;  // stdin is read once the command runs
  bool stdin_open_ = true;
  uint64_t window_ = wire::kInitialWindow;
  bool filter_[3] = {false, false, false};
  TerminalFilter filters_[3];
  bool relay_required_ = false;
  std::chrono::steady_clock::time_point deadline_;
};

RelaySession::RelaySession(const RelayOptions& options) : impl_(std::make_unique<Impl>(options)) {}
RelaySession::~RelaySession() = default;
int RelaySession::Run(nlohmann::json params) { return impl_->Run(std::move(params)); }
bool RelaySession::relay_required() const { return impl_->relay_required(); }

}  // namespace tessera::cli
