// `tessera run [OPTIONS] QUBE|--dispvm[=T] [--] CMD...`: runs a command in a
// qube (started first if halted) or in a fresh disposable, as the qube's
// default user; exits with the command's status (125 when tessera failed, 126
// not executable, 127 not found: as qvm-run; 128+N when signal N ended it).
//
// The caller's terminal never enters a qube. Interactive runs (stdin and
// stdout a terminal, or -t) get a pty made inside the qube, relayed here with
// this terminal in raw mode; otherwise a stream that is a terminal is relayed
// through tesserad and what reaches a terminal is filtered (TerminalFilter).
// Only streams that are no terminal (pipes, files) are passed into the qube
// as descriptors, where its backend can take them. Signals reaching this
// process are forwarded to the command; the terminal's settings are put back
// on the way out.

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/daemon_call.h"
#include "cli/terminal.h"
#include "common/names.h"
#include "common/terminal_filter.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "wire/admin_client.h"
#include "wire/agent_protocol.h"
#include "wire/socket_io.h"

extern char** environ;

namespace tessera::cli {
namespace {

using nlohmann::json;
using wire::FrameType;

constexpr int kExitRunFailure = 125;

constexpr const char* kHelp =
    "Usage: tessera run [OPTIONS] QUBE [--] CMD [ARG...]\n"
    "       tessera run [OPTIONS] --dispvm[=TEMPLATE] [--] CMD [ARG...]\n"
    "Runs CMD in QUBE (started first if needed) and exits with its exit code\n"
    "(125 if tessera failed, 126 not executable, 127 not found, 128+N killed by\n"
    "signal N). --dispvm runs it in a fresh disposable made from TEMPLATE\n"
    "(default: the system's default_dispvm), destroyed afterwards.\n"
    "A single CMD argument containing spaces or shell syntax ('echo hi; id') is\n"
    "run by /bin/sh -c, as qvm-run does; several arguments are executed directly.\n"
    "\n"
    "Options:\n"
    "  -u, --user USER      run as USER (a name or UID[:GID]); default: the qube's\n"
    "                       default_user, normally 'user' (uid 1000); -u root for root\n"
    "  -t, --tty            give CMD a terminal (a pty inside the qube) even when\n"
    "                       this process has none; default when stdin and stdout are\n"
    "                       terminals\n"
    "  -T, --no-tty         never give CMD a terminal\n"
    "  --env NAME=VALUE     set an environment variable (repeatable); TERM (with a\n"
    "                       terminal), LANG and LC_* are passed on from here\n"
    "  --cwd DIR            working directory (default: the user's home)\n"
    "  --detach             start CMD and return at once; it runs on with no\n"
    "                       streams and is not ended when this process ends\n"
    "  --no-filter-escape-chars\n"
    "                       pass CMD's output to this terminal unfiltered (default:\n"
    "                       control characters and escape sequences become '_')\n"
    "  --relay              relay the streams through tesserad even where the qube\n"
    "                       could take them as descriptors\n"
    "Your terminal is never passed into the qube. Signals to this process (Ctrl-C,\n"
    "SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGTSTP/SIGCONT) reach CMD; if this process\n"
    "is killed, CMD is hung up (SIGHUP, then SIGKILL). When CMD exits, whatever it\n"
    "left running in its session is hung up too.\n";

enum class TtyMode { kAuto, kForce, kNone };

struct RunOptions {
  std::optional<std::string> dispvm;
  std::string qube;
  std::string user;
  std::string cwd;
  std::vector<std::string> env;
  std::vector<std::string> command;
  TtyMode tty = TtyMode::kAuto;
  bool relay = false;
  bool detach = false;
  bool filter = true;
};

int ExitForCode(const std::string& code) {
  if (code == wire::codes::kCommandNotFound) return 127;
  if (code == wire::codes::kCommandNotExecutable) return 126;
  return kExitRunFailure;
}

bool HasShellSyntax(const std::string& word) {
  return word.find_first_of(" \t\n;&|<>()$`\\\"'*?[]#~=%{}!") != std::string::npos;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "tessera run: %s (see tessera run --help)\n", message.c_str());
  return kExitUsage;
}

// `run` parses its own arguments: everything after the qube name (or after
// `--`) belongs to the command, including things that look like options.
// Returns an exit code when the process should end here.
std::optional<int> ParseRunArgs(const std::vector<std::string>& args, RunOptions* o) {
  size_t i = 0;
  // An option's value: "--opt=V" or the next argument.
  auto value = [&](const std::string& a, const std::string& name, std::string* out) -> bool {
    if (a.size() > name.size() && a.compare(0, name.size() + 1, name + "=") == 0) {
      *out = a.substr(name.size() + 1);
      return true;
    }
    if (i + 1 >= args.size()) return false;
    *out = args[++i];
    return true;
  };
  auto is = [](const std::string& a, const char* name) {
    size_t n = std::strlen(name);
    return a == name || (a.size() > n && a.compare(0, n, name) == 0 && a[n] == '=');
  };
  bool dashdash = false;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      dashdash = true;
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    std::string v;
    if (a == "--relay") {
      o->relay = true;
    } else if (a == "--detach") {
      o->detach = true;
    } else if (a == "-t" || a == "--tty") {
      o->tty = TtyMode::kForce;
    } else if (a == "-T" || a == "--no-tty") {
      o->tty = TtyMode::kNone;
    } else if (a == "--no-filter-escape-chars") {
      o->filter = false;
    } else if (a == "--filter-escape-chars") {
      o->filter = true;
    } else if (a == "--dispvm") {
      o->dispvm = "";
    } else if (a.rfind("--dispvm=", 0) == 0) {
      o->dispvm = a.substr(9);
    } else if (a == "-u" || is(a, "--user")) {
      if (!value(a, a == "-u" ? "-u" : "--user", &v)) return Usage(a + " needs a value");
      if (!IsUserSpec(v)) return Usage("--user must be a user name or UID[:GID], got '" + v + "'");
      o->user = v;
    } else if (is(a, "--env")) {
      if (!value(a, "--env", &v)) return Usage("--env needs NAME=VALUE");
      size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0)
        return Usage("--env needs NAME=VALUE, got '" + v + "'");
      o->env.push_back(v);
    } else if (is(a, "--cwd")) {
      if (!value(a, "--cwd", &v)) return Usage("--cwd needs a directory");
      if (v.empty() || v[0] != '/') return Usage("--cwd must be an absolute path, got '" + v + "'");
      o->cwd = v;
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      return Usage("unknown option " + a + " (put -- before a command that starts with -)");
    } else if (!o->dispvm && o->qube.empty()) {
      o->qube = a;
    } else {
      break;  // the command starts here
    }
  }
  for (; i < args.size(); ++i) o->command.push_back(args[i]);
  if (o->dispvm && !dashdash && o->command.size() >= 2 && o->command[1] == "--") {
    // `--dispvm NAME -- CMD`: NAME was taken for the command.
    std::string rest;
    for (size_t k = 2; k < o->command.size(); ++k) rest += " " + o->command[k];
    return Usage("--dispvm takes its template as --dispvm=" + o->command[0] +
                 "; did you mean: tessera run --dispvm=" + o->command[0] + " --" + rest);
  }
  if (!o->dispvm && o->qube.empty()) return Usage("name a qube or use --dispvm");
  if (o->dispvm && !o->qube.empty()) return Usage("name a qube or use --dispvm, not both");
  if (o->command.empty()) return Usage("no command given");
  if (o->detach && o->dispvm) {
    return Usage("--detach needs a named qube (a disposable lives as long as its command)");
  }
  if (o->detach && o->tty == TtyMode::kForce) return Usage("--detach and --tty exclude each other");
  return std::nullopt;
}

// The environment the caller's locale and terminal type give the command.
std::vector<std::string> PassedEnvironment(bool tty, const std::vector<std::string>& explicit_env) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool locale =
        kv.rfind("LANG=", 0) == 0 || kv.rfind("LANGUAGE=", 0) == 0 || kv.rfind("LC_", 0) == 0;
    bool term = tty && (kv.rfind("TERM=", 0) == 0 || kv.rfind("COLORTERM=", 0) == 0);
    if ((locale || term) && kv.find('=') != std::string_view::npos) env.emplace_back(kv);
  }
  env.insert(env.end(), explicit_env.begin(), explicit_env.end());
  return env;
}

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

// One run: the request, then frames both ways until its response.
class RunSession {
 public:
  RunSession(const RunOptions& options, bool tty, bool relay)
      : options_(options), tty_(tty), relay_(relay), terminal_(STDIN_FILENO) {
    for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
      filter_[fd] = options.filter && !tty && ::isatty(fd) == 1;
    }
  }

  int Run(json params) {
    auto client = wire::AdminClient::Connect();
    if (!client) {
      std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
      return kExitRunFailure;
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
    auto id = client->Send("qube.run", params, fds);
    if (!id) {
      std::fprintf(stderr, "tessera run: %s\n", id.error().ToString().c_str());
      return kExitRunFailure;
    }
    session_ = static_cast<uint32_t>(*id);
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
      if (::poll(p, count, -1) < 0) {
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
      std::fprintf(stderr, "tessera run: %s\n", reply.error().ToString().c_str());
      return kExitRunFailure;
    }
    if (!reply->ok) {
      if (reply->code == wire::codes::kRelayRequired && !relay_) {
        relay_required_ = true;
        return kExitRunFailure;
      }
      std::fprintf(stderr, "tessera run: %s\n",
                   EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
      return ExitForCode(reply->code);
    }
    const json& r = reply->result;
    if (r.contains("reason") && r["reason"].is_string()) {
      // After the command's own output, on a line of its own.
      std::fprintf(stderr, "%stessera run: %s\n", tty_ ? "\r\n" : "",
                   EscapeControl(r["reason"].get<std::string>(), EscapeNewlines::kEscape).c_str());
    }
    if (options_.detach) return 0;
    int status = r.value("exit_code", kExitRunFailure);
    return status >= 0 && status <= 255 ? status : kExitRunFailure;
  }

  int Broken(const Error& error) {
    terminal_.Restore();
    std::fprintf(stderr, "tessera run: %s\n", error.ToString().c_str());
    return kExitRunFailure;
  }

  const RunOptions& options_;
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
};

int RunRun(const std::vector<std::string>& args) {
  RunOptions o;
  if (auto exit = ParseRunArgs(args, &o)) return *exit;
  std::vector<std::string> command = o.command;
  if (command.size() == 1 && HasShellSyntax(command[0])) command = {"/bin/sh", "-c", command[0]};
  bool tty = !o.detach &&
             (o.tty == TtyMode::kForce || (o.tty == TtyMode::kAuto && ::isatty(STDIN_FILENO) == 1 &&
                                           ::isatty(STDOUT_FILENO) == 1));
  // A terminal is never passed into a qube: any stream that is one is relayed.
  bool any_terminal = false;
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) any_terminal |= ::isatty(fd) == 1;
  bool relay = o.relay || tty || any_terminal;
  json params = {{"argv", command}};
  if (o.dispvm) {
    params["dispvm"] = *o.dispvm;
  } else {
    params["qube"] = o.qube;
  }
  if (!o.user.empty()) params["user"] = o.user;
  if (!o.cwd.empty()) params["cwd"] = o.cwd;
  std::vector<std::string> env = PassedEnvironment(tty, o.env);
  if (!env.empty()) params["env"] = env;
  if (o.detach) params["detach"] = true;
  RunSession session(o, tty, relay);
  int status = session.Run(params);
  if (session.relay_required()) {
    // A qube that cannot take descriptors: the same run, relayed.
    RunSession relayed(o, tty, true);
    return relayed.Run(params);
  }
  return status;
}

// Listed in `tessera --help`; the command line itself is RunRun's (main
// passes it the words after `run` untouched, `--` included).
void Register(CLI::App& app, CliContext& /*ctx*/) {
  auto* cmd = app.add_subcommand("run", "Run a command in a qube or a disposable");
  cmd->allow_extras();
}

const CommandRegistration kRegistration({"run"}, Register, RunRun);

}  // namespace
}  // namespace tessera::cli
