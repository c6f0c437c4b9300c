#include "agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "cell/fd_passing.h"
#include "wire/agent_protocol.h"

namespace tessera::agent {
namespace {

using wire::FrameType;

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Credits accumulate up to this; a host granting more is capped, not trusted.
constexpr uint64_t kMaxCredit = uint64_t{1} << 32;

// What each poll entry stands for.
enum class Source {
  kControl,
  kSignals,
  kChannel,
  kReport,
  kStdin,
  kStdout,
  kStderr,
  kCallListener,
  kCall
};
struct Watch {
  Source source;
  uint64_t serial;  // channel or session
};

}  // namespace

Agent::Agent(UniqueFd control, CommandNamespaces namespaces, bool reset_oom_score)
    : control_(std::move(control)), namespaces_(namespaces), reset_oom_score_(reset_oom_score) {}

Agent::Session* Agent::FindSession(uint64_t serial) {
  auto it = sessions_.find(serial);
  return it == sessions_.end() || it->second->dead ? nullptr : it->second.get();
}

Agent::Channel* Agent::FindChannel(uint64_t serial) {
  auto it = channels_.find(serial);
  return it == channels_.end() || it->second->dead ? nullptr : it->second.get();
}

int Agent::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) {
    std::fprintf(stderr, "tessera-agent: signalfd: %s\n", std::strerror(errno));
    return 1;
  }
  ListenForCalls();
  std::vector<pollfd> pfds;
  std::vector<Watch> watches;
  for (;;) {
    pfds.clear();
    watches.clear();
    auto watch = [&](int fd, short events, Source source, uint64_t serial) {
      pfds.push_back({fd, events, 0});
      watches.push_back({source, serial});
    };
    watch(signal_fd_.get(), POLLIN, Source::kSignals, 0);
    if (channels_.size() < kMaxChannels) watch(control_.get(), POLLIN, Source::kControl, 0);
    for (auto& [serial, ch] : channels_) {
      watch(ch->fd.get(), static_cast<short>(POLLIN | (ch->out.empty() ? 0 : POLLOUT)),
            Source::kChannel, serial);
    }
    if (call_listener_ && calls_.size() < kMaxLocalCalls) {
      watch(call_listener_.get(), POLLIN, Source::kCallListener, 0);
    }
    for (auto& [serial, call] : calls_) {
      if (call->dead) continue;
      // A caller's input waits while its channel to the host is backed up.
      Channel* host = call->channel != 0 ? FindChannel(call->channel) : nullptr;
      bool room = host == nullptr || host->out.bytes() < kMaxQueuedPerChannel;
      short events = static_cast<short>((room && !call->ended ? POLLIN : 0) |
                                        (call->out.empty() ? 0 : POLLOUT));
      if (events != 0) watch(call->fd.get(), events, Source::kCall, serial);
    }
    int64_t now = NowMs();
    int timeout = -1;
    KillOverdueLeftovers(now, &timeout);
    for (auto& [serial, s] : sessions_) {
      if (s->kill_deadline_ms >= 0) {
        if (s->kill_deadline_ms <= now) {
          ::kill(-s->pid, SIGKILL);
          ::kill(s->pid, SIGKILL);
          s->kill_deadline_ms = -1;
        } else {
          int left = static_cast<int>(s->kill_deadline_ms - now);
          timeout = timeout < 0 ? left : std::min(timeout, left);
        }
      }
      if (s->report) watch(s->report.get(), POLLIN, Source::kReport, serial);
      Channel* ch = s->channel != 0 ? FindChannel(s->channel) : nullptr;
      if (!s->started || ch == nullptr) continue;
      if (s->stdin_pipe && !s->stdin_pending.empty()) {
        watch(s->stdin_pipe.get(), POLLOUT, Source::kStdin, serial);
      }
      bool room = ch->out.bytes() < kMaxQueuedPerChannel;
      if (s->out[0] && s->out_credit[0] > 0 && room) {
        watch(s->out[0].get(), POLLIN, Source::kStdout, serial);
      }
      if (s->out[1] && s->out_credit[1] > 0 && room) {
        watch(s->out[1].get(), POLLIN, Source::kStderr, serial);
      }
    }
    int rc = ::poll(pfds.data(), pfds.size(), timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "tessera-agent: poll: %s\n", std::strerror(errno));
      return 1;
    }
    for (size_t i = 0; i < pfds.size(); ++i) {
      short ev = pfds[i].revents;
      if (ev == 0) continue;
      const Watch& w = watches[i];
      switch (w.source) {
        case Source::kSignals:
          HandleSignals();
          break;
        case Source::kControl:
          Accept();
          break;
        case Source::kCallListener:
          AcceptCall();
          break;
        case Source::kCall:
          if (LocalCall* c = FindCall(w.serial)) {
            if ((ev & POLLOUT) != 0) FlushCall(*c);
            if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0 && !c->dead) {
              if (c->ended) {
                DropCall(*c);
              } else {
                ReadCall(*c);
              }
            }
          }
          break;
        case Source::kChannel:
          if (Channel* ch = FindChannel(w.serial)) {
            if ((ev & POLLOUT) != 0) FlushChannel(*ch);
            if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0 && !ch->dead) ReadChannel(*ch);
          }
          break;
        case Source::kReport:
          if (Session* s = FindSession(w.serial)) SettleSpawn(*s);
          break;
        case Source::kStdin:
          if (Session* s = FindSession(w.serial)) WriteStdin(*s);
          break;
        case Source::kStdout:
        case Source::kStderr:
          if (Session* s = FindSession(w.serial)) {
            PumpOutput(*s, w.source == Source::kStdout ? 0 : 1);
            MaybeFinish(*s);
          }
          break;
      }
    }
    Sweep();
  }
}

void Agent::Accept() {
  int fd = ::accept4(control_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;  // EAGAIN or a transient error: poll tells us again
  auto ch = std::make_unique<Channel>();
  ch->serial = next_serial_++;
  ch->fd.reset(fd);
  channels_.emplace(ch->serial, std::move(ch));
}

void Agent::ReadChannel(Channel& ch) {
  auto r = wire::RecvInto(ch.fd.get(), &ch.decoder);
  if (!r || *r == wire::RecvResult::kEof) {
    DropChannel(ch);
    return;
  }
  for (;;) {
    auto frame = ch.decoder.Next();
    if (!frame) {
      // The host broke the protocol: this channel is unusable. Its sessions
      // are hung up; other channels are unaffected.
      std::fprintf(stderr, "tessera-agent: %s\n", frame.error().ToString().c_str());
      DropChannel(ch);
      return;
    }
    if (!*frame) break;
    if (!HandleFrame(ch, **frame)) {
      DropChannel(ch);
      return;
    }
    if (ch.dead) return;
  }
  FlushChannel(ch);
}

void Agent::FlushChannel(Channel& ch) {
  if (ch.dead) return;
  auto flushed = ch.out.Flush(ch.fd.get());
  if (!flushed) DropChannel(ch);
}

void Agent::DropChannel(Channel& ch) {
  if (ch.dead) return;
  ch.dead = true;
  CallChannelLost(ch);
  for (const auto& [id, serial] : ch.sessions) {
    Session* s = FindSession(serial);
    if (s == nullptr) continue;
    s->channel = 0;
    // Nobody reads the output any more: the command gets EPIPE/SIGPIPE.
    s->out[0].reset();
    s->out[1].reset();
    s->stdin_pipe.reset();
    if (s->exited) {
      EndSession(*s);
    } else {
      HangUp(*s);
    }
  }
  ch.sessions.clear();
}

void Agent::SendError(Channel& ch, uint32_t id, int code, const std::string& message) {
  ch.out.Push(wire::EncodeFrame(FrameType::kError, id, 0,
                                wire::SerializeSessionError({code, message})));
}

void Agent::Send(Session& s, FrameType type, uint8_t stream, std::string_view payload) {
  Channel* ch = s.channel != 0 ? FindChannel(s.channel) : nullptr;
  if (ch == nullptr) return;
  ch->out.Push(wire::EncodeFrame(type, s.id, stream, payload));
  FlushChannel(*ch);
}

bool Agent::HandleFrame(Channel& ch, wire::Frame& frame) {
  if (frame.type == FrameType::kHello) {
    if (frame.session != 0) return false;
    auto hello = wire::ParseHello(frame.payload);
    if (!hello) return false;
    // Version 2: the host takes this qube's calls on this channel.
    wire::Hello reply;
    if (hello->version >= wire::kCallChannelVersion) {
      call_channel_ = ch.serial;
      reply.version = wire::kCallChannelVersion;
    }
    ch.out.Push(wire::EncodeFrame(FrameType::kHello, 0, 0, wire::SerializeHello(reply)));
    return true;
  }
  if ((frame.session & wire::kCallSessionBit) != 0) return HandleHostCallFrame(ch, frame);
  if (frame.session == 0) return false;
  if (frame.type == FrameType::kOpen) return Open(ch, frame);
  auto it = ch.sessions.find(frame.session);
  // A frame for a session that just ended crossed its exit frame: ignore it.
  Session* s = it == ch.sessions.end() ? nullptr : FindSession(it->second);
  switch (frame.type) {
    case FrameType::kData: {
      if (frame.stream != wire::kStdin) return false;
      if (s == nullptr) return true;
      if (frame.payload.size() > s->stdin_window) return false;  // beyond its credit
      s->stdin_window -= frame.payload.size();
      bool awaiting_pty = s->tty && !s->pty && !s->exited;
      if ((!s->stdin_pipe && !awaiting_pty) || s->stdin_eof) {
        // The command closed its stdin (or is gone): drop, but keep the host's
        // window open so it never stalls on us.
        s->stdin_consumed += frame.payload.size();
        WriteStdin(*s);
        return true;
      }
      s->stdin_pending += frame.payload;
      WriteStdin(*s);
      return true;
    }
    case FrameType::kEof:
      if (frame.stream != wire::kStdin) return false;
      if (s != nullptr) {
        s->stdin_eof = true;
        WriteStdin(*s);
      }
      return true;
    case FrameType::kCredit: {
      if (frame.stream == wire::kStdin) return false;
      auto n = wire::DecodeU32(frame);
      if (!n) return false;
      if (s != nullptr) {
        uint64_t& c = s->out_credit[frame.stream - 1];
        c = std::min(kMaxCredit, c + *n);
      }
      return true;
    }
    case FrameType::kSignal: {
      auto sig = wire::DecodeU32(frame);
      if (!sig || *sig == 0 || *sig >= static_cast<uint32_t>(NSIG)) return false;
      if (s != nullptr && !s->exited) {
        if (s->started) {
          ::kill(-s->pid, static_cast<int>(*sig));
        } else if (s->pending_signals.size() < 64) {
          // The command may already run (and have been seen by the caller)
          // before its exec is settled here: delivered once it is.
          s->pending_signals.push_back(static_cast<int>(*sig));
        }
      }
      return true;
    }
    case FrameType::kClose:
      if (s != nullptr) HangUp(*s);
      return true;
    case FrameType::kResize: {
      auto size = wire::DecodeWindowSize(frame.payload);
      if (!size) return false;
      if (s != nullptr && s->pty) {
        winsize ws{};
        ws.ws_row = size->rows;
        ws.ws_col = size->cols;
        ::ioctl(s->pty.get(), TIOCSWINSZ, &ws);  // the kernel tells the foreground group
      }
      return true;
    }
    default:
      return false;
  }
}

bool Agent::Open(Channel& ch, wire::Frame& frame) {
  if (ch.sessions.count(frame.session) != 0) return false;  // the host reused a live id
  if (ch.sessions.size() >= kMaxSessionsPerChannel) {
    SendError(ch, frame.session, 125, "too many sessions on this channel");
    return true;
  }
  auto message = wire::ParseOpen(frame.payload, frame.fds.size());
  if (!message) {
    SendError(ch, frame.session, 125, message.error().ToString());
    return true;
  }
  auto s = std::make_unique<Session>();
  s->serial = next_serial_++;
  s->id = frame.session;
  s->channel = ch.serial;
  s->program = wire::ProgramName(*message);
  s->stdin_window = wire::kInitialWindow;
  s->out_credit[0] = s->out_credit[1] = wire::kInitialWindow;
  s->detach = message->detach;
  s->tty = message->tty.has_value();
  SpawnRequest request;
  request.message = &*message;
  request.namespaces = namespaces_;
  request.reset_oom_score = reset_oom_score_;
  UniqueFd child_ends[3];  // the command's ends of relayed streams; closed after the fork
  size_t next_fd = 0;
  for (int i = 0; i < 3; ++i) {
    switch (message->stdio[i]) {
      case wire::Stdio::kNull:
        break;
      case wire::Stdio::kFd:
        request.stdio[i] = frame.fds[next_fd++].get();
        break;
      case wire::Stdio::kPipe: {
        if (message->tty) break;  // the pty's master serves both, once the child sends it
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
          SendError(ch, frame.session, 125, std::string("pipe: ") + std::strerror(errno));
          return true;
        }
        UniqueFd r(p[0]), w(p[1]);
        if (i == 0) {
          child_ends[0] = std::move(r);
          s->stdin_pipe = std::move(w);
          SetNonBlocking(s->stdin_pipe.get());
        } else {
          child_ends[i] = std::move(w);
          s->out[i - 1] = std::move(r);
          SetNonBlocking(s->out[i - 1].get());
        }
        request.stdio[i] = child_ends[i].get();
        break;
      }
    }
  }
  auto spawned = SpawnCommand(request);
  if (!spawned) {
    SendError(ch, frame.session, 125, "cannot run " + s->program + ": " + spawned.error().ToString());
    return true;
  }
  s->pid = spawned->pid;
  s->report = std::move(spawned->report);
  by_pid_[s->pid] = s->serial;
  ch.sessions[s->id] = s->serial;
  sessions_.emplace(s->serial, std::move(s));
  return true;
}

void Agent::SettleSpawn(Session& s) {
  if (!s.report) return;
  SpawnReport report;
  ssize_t n;
  UniqueFd attached;
  do {
    int fd = -1;
    n = cell::RecvWithFd(s.report.get(), &report, sizeof(report), &fd);
    attached.reset(fd);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return;
  if (n == static_cast<ssize_t>(sizeof(report)) && report.code == 0) {
    // The master of the command's terminal; its exec (or failure) follows.
    if (!attached || s.pty) {
      report = SpawnReport{};
      report.error = EPROTO;
    } else {
      s.pty = std::move(attached);
      SetNonBlocking(s.pty.get());
      s.stdin_pipe.reset(::fcntl(s.pty.get(), F_DUPFD_CLOEXEC, 3));
      s.out[0].reset(::fcntl(s.pty.get(), F_DUPFD_CLOEXEC, 3));
      if (s.stdin_pipe && s.out[0]) return;
      report = SpawnReport{};
      report.error = errno;
    }
    n = sizeof(report);
  }
  s.report.reset();
  if (n == 0) {
    s.started = true;
    Send(s, FrameType::kStarted, 0, wire::EncodeU32(static_cast<uint32_t>(s.pid)));
    for (int sig : s.pending_signals) {
      if (!s.exited) ::kill(-s.pid, sig);
    }
    s.pending_signals.clear();
    if (s.detach) {
      EndSession(s);  // on its own from now on; reaped as any orphan
      return;
    }
    MaybeFinish(s);
    return;
  }
  if (n != static_cast<ssize_t>(sizeof(report))) {
    report = SpawnReport{};
    report.error = n < 0 ? errno : EIO;
  }
  Channel* ch = s.channel != 0 ? FindChannel(s.channel) : nullptr;
  if (ch != nullptr) {
    SendError(*ch, s.id, report.code, DescribeReport(report, s.program));
    FlushChannel(*ch);
  }
  // The child _exits right after its report; the reaper collects it.
  EndSession(s);
}

void Agent::PumpOutput(Session& s, int index) {
  UniqueFd& pipe = s.out[index];
  if (!pipe) return;
  auto stream = static_cast<uint8_t>(index + 1);
  // Once the command has exited, everything it wrote is in the pipe: read
  // until it is empty (or credit runs out), then the stream is over, even if
  // a process it left behind still holds the pipe open.
  do {
    size_t want = static_cast<size_t>(std::min<uint64_t>(s.out_credit[index], wire::kMaxDataPayload));
    if (want == 0) return;
    char buf[wire::kMaxDataPayload];
    ssize_t n;
    do {
      n = ::read(pipe.get(), buf, want);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      s.out_credit[index] -= static_cast<uint64_t>(n);
      Send(s, FrameType::kData, stream, std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EAGAIN && !s.exited) return;
    pipe.reset();
    Send(s, FrameType::kEof, stream, {});
    return;
  } while (s.exited);
}

void Agent::WriteStdin(Session& s) {
  while (s.stdin_pipe && !s.stdin_pending.empty()) {
    ssize_t n = ::write(s.stdin_pipe.get(), s.stdin_pending.data(), s.stdin_pending.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {  // EPIPE: the command closed its stdin; the rest is dropped
      s.stdin_consumed += s.stdin_pending.size();
      s.stdin_pending.clear();
      s.stdin_pipe.reset();
      break;
    }
    s.stdin_pending.erase(0, static_cast<size_t>(n));
    s.stdin_consumed += static_cast<uint64_t>(n);
  }
  if (s.stdin_pending.empty() && s.stdin_eof && s.stdin_pipe) {
    // A terminal has no end of input of its own: the caller's EOF becomes
    // the terminal's EOF character, as typing Ctrl-D would.
    termios t{};
    if (s.pty && ::tcgetattr(s.pty.get(), &t) == 0 && (t.c_lflag & ICANON) != 0) {
      char eof = static_cast<char>(t.c_cc[VEOF]);
      (void)!::write(s.stdin_pipe.get(), &eof, 1);
    }
    s.stdin_pipe.reset();
  }
  // Credit back in batches: a frame per quarter window, or when caught up.
  if (s.stdin_consumed > 0 &&
      (s.stdin_pending.empty() || s.stdin_consumed >= wire::kInitialWindow / 4)) {
    auto n = static_cast<uint32_t>(std::min<uint64_t>(s.stdin_consumed, UINT32_MAX));
    s.stdin_consumed -= n;
    s.stdin_window += n;
    Send(s, FrameType::kCredit, wire::kStdin, wire::EncodeU32(n));
  }
}

void Agent::HangUp(Session& s) {
  if (s.exited || s.pid <= 0) return;
  if (!s.started) {
    ::kill(s.pid, SIGKILL);  // still between fork and exec
    return;
  }
  // As a terminal hang-up: the group gets SIGHUP (and SIGCONT, in case it is
  // stopped); what ignores it is killed after a grace period.
  ::kill(-s.pid, SIGHUP);
  ::kill(-s.pid, SIGCONT);
  ::kill(s.pid, SIGHUP);
  if (s.kill_deadline_ms < 0) s.kill_deadline_ms = NowMs() + kHangupGraceMs;
}

void Agent::MaybeFinish(Session& s) {
  if (s.dead || !s.exited || s.report) return;
  if (s.channel == 0) {
    EndSession(s);
    return;
  }
  for (int i = 0; i < 2; ++i) PumpOutput(s, i);
  if (s.out[0] || s.out[1]) return;  // waiting for credit to drain the rest
  s.stdin_pipe.reset();
  s.pty.reset();
  Send(s, FrameType::kExit, 0, wire::EncodeU32(static_cast<uint32_t>(s.status)));
  EndSession(s);
}

void Agent::EndSession(Session& s) {
  if (s.dead) return;
  s.dead = true;
  if (Channel* ch = s.channel != 0 ? FindChannel(s.channel) : nullptr) ch->sessions.erase(s.id);
}

void Agent::HandleSignals() {
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    // Only the host may stop the qube: a signal from outside our pid
    // namespace shows sender pid 0. The qube's own root sending SIGTERM to
    // PID 1 is ignored.
    if ((info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) && info.ssi_pid == 0) Shutdown();
  }
  // SIGCHLD is coalesced (one for many exits): reap everything that exited.
  ReapChildren();
}

void Agent::ReapChildren() {
  int status;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    auto it = by_pid_.find(pid);
    if (it == by_pid_.end()) continue;  // an orphan of the qube, reparented to us
    uint64_t serial = it->second;
    by_pid_.erase(it);
    auto sit = sessions_.find(serial);
    if (sit == sessions_.end()) continue;
    Session& s = *sit->second;
    s.exited = true;
    s.kill_deadline_ms = -1;
    s.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (!s.detach) EndLeftovers(pid);
    if (s.dead) continue;
    if (s.report) SettleSpawn(s);  // reaped before its report was read
    MaybeFinish(s);
  }
}

void Agent::EndLeftovers(pid_t session_id) {
  if (SignalSession(session_id, SIGHUP) == 0) return;
  SignalSession(session_id, SIGCONT);
  leftovers_[session_id] = NowMs() + kHangupGraceMs;
}

void Agent::KillOverdueLeftovers(int64_t now, int* timeout) {
  for (auto it = leftovers_.begin(); it != leftovers_.end();) {
    if (it->second <= now) {
      SignalSession(it->first, SIGKILL);
      it = leftovers_.erase(it);
      continue;
    }
    int left = static_cast<int>(it->second - now);
    *timeout = *timeout < 0 ? left : std::min(*timeout, left);
    ++it;
  }
}

void Agent::Sweep() {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    // A dead session whose process still runs stays known by pid until reaped
    // (so its SIGKILL deadline still applies); it is only erased once exited.
    Session& s = *it->second;
    if (s.dead && (s.exited || s.pid <= 0 || !s.started)) {
      if (!s.exited && s.pid > 0) by_pid_.erase(s.pid);
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = channels_.begin(); it != channels_.end();) {
    it = it->second->dead ? channels_.erase(it) : std::next(it);
  }
  for (auto it = calls_.begin(); it != calls_.end();) {
    it = it->second->dead ? calls_.erase(it) : std::next(it);
  }
}

void Agent::Shutdown() {
  // Everything of the qube gets SIGTERM, a moment, then SIGKILL. kill(-1)
  // from a pid namespace's init reaches every other process of the namespace
  // and nothing outside it.
  ::kill(-1, SIGTERM);
  int64_t start = NowMs();
  for (;;) {
    pid_t p = ::waitpid(-1, nullptr, WNOHANG);
    if (p < 0 && errno == ECHILD) break;
    if (p > 0) continue;
    if (NowMs() - start >= 3000) break;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    timespec tick{0, 10 * 1000 * 1000};
    sigtimedwait(&chld, nullptr, &tick);
  }
  ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
  _exit(0);
}

}  // namespace tessera::agent
