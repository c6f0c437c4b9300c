// `tessera run [--user U] [--relay] QUBE|--dispvm[=T] [--] CMD...`: runs a
// command in a qube (started first if halted) or in a fresh disposable, with
// this process's stdin, stdout and stderr; exits with the command's status
// (125 when tessera failed, 126 not executable, 127 not found: as qvm-run).
//
// The streams are passed into the qube as descriptors where its backend can
// take them (cells), else (or with --relay) carried through tesserad as
// frames, with flow control both ways.

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/daemon_call.h"
#include "common/text.h"
#include "wire/admin_client.h"
#include "wire/agent_protocol.h"
#include "wire/socket_io.h"

namespace tessera::cli {
namespace {

using nlohmann::json;
using wire::FrameType;

constexpr int kExitRunFailure = 125;

int ExitForCode(const std::string& code) {
  if (code == wire::codes::kCommandNotFound) return 127;
  if (code == wire::codes::kCommandNotExecutable) return 126;
  return kExitRunFailure;
}

// CLI11 reorders and eats `--`, but the command line of `run` must reach the
// qube verbatim: take it from /proc/self/cmdline, after the `run` verb (the
// main app's only option before it is --config FILE).
std::vector<std::string> ArgsAfterRun() {
  std::vector<std::string> argv;
  FILE* f = std::fopen("/proc/self/cmdline", "re");
  if (f == nullptr) return argv;
  std::string cur;
  for (int c; (c = std::fgetc(f)) != EOF;) {
    if (c == 0) {
      argv.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(c));
    }
  }
  std::fclose(f);
  size_t i = 1;
  while (i < argv.size() && argv[i] != "run") i += (argv[i] == "--config") ? 2 : 1;
  if (i >= argv.size()) return {};
  return std::vector<std::string>(argv.begin() + static_cast<long>(i) + 1, argv.end());
}

void WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our reader went away: the rest is dropped
    done += static_cast<size_t>(n);
  }
}

// The streams through tesserad: stdin read within the credit the qube
// grants, stdout/stderr written here and credited back as they are.
int RunRelayed(const json& params) {
  auto client = wire::AdminClient::Connect();
  if (!client) {
    std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
    return kExitRunFailure;
  }
  json relayed = params;
  relayed["streams"] = "relay";
  auto id = client->Send("qube.run", relayed);
  if (!id) {
    std::fprintf(stderr, "tessera run: %s\n", id.error().ToString().c_str());
    return kExitRunFailure;
  }
  auto session = static_cast<uint32_t>(*id);
  int sock = client->fd();
  bool stdin_open = true;
  uint64_t window = wire::kInitialWindow;
  // One frame from tesserad: its exit status when it ends the run.
  auto handle = [&](const wire::Frame& frame) -> std::optional<int> {
    switch (frame.type) {
      case FrameType::kData:
        if (frame.stream == wire::kStdout || frame.stream == wire::kStderr) {
          WriteAll(frame.stream, frame.payload);
          (void)wire::WriteFrame(sock, FrameType::kCredit, session, frame.stream,
                                 wire::EncodeU32(static_cast<uint32_t>(frame.payload.size())));
        }
        return std::nullopt;
      case FrameType::kCredit:
        if (frame.stream == wire::kStdin) {
          if (auto n = wire::DecodeU32(frame)) window += *n;
        }
        return std::nullopt;
      case FrameType::kResponse: {
        auto reply = wire::ParseAdminReply(frame.payload);
        if (!reply) {
          std::fprintf(stderr, "tessera run: %s\n", reply.error().ToString().c_str());
          return kExitRunFailure;
        }
        if (!reply->ok) {
          std::fprintf(stderr, "tessera run: %s\n",
                       EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
          return ExitForCode(reply->code);
        }
        return reply->result.value("exit_code", kExitRunFailure);
      }
      default:
        return std::nullopt;  // started, eof: nothing to do
    }
  };
  for (;;) {
    // Frames that came in with an earlier read are not seen by poll: first them.
    auto buffered = client->BufferedFrame();
    if (!buffered) {
      std::fprintf(stderr, "tessera run: %s\n", buffered.error().ToString().c_str());
      return kExitRunFailure;
    }
    if (*buffered) {
      if (auto status = handle(**buffered)) return *status;
      continue;
    }
    pollfd p[2] = {{sock, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    nfds_t count = stdin_open && window > 0 ? 2 : 1;
    if (::poll(p, count, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("tessera run: poll");
      return kExitRunFailure;
    }
    if (count == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char buf[wire::kMaxDataPayload];
      ssize_t n = ::read(STDIN_FILENO, buf, static_cast<size_t>(std::min<uint64_t>(window, sizeof(buf))));
      if (n > 0) {
        window -= static_cast<uint64_t>(n);
        (void)wire::WriteFrame(sock, FrameType::kData, session, wire::kStdin,
                               std::string_view(buf, static_cast<size_t>(n)));
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
        (void)wire::WriteFrame(sock, FrameType::kEof, session, wire::kStdin, {});
      }
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    auto frame = client->NextFrame();
    if (!frame) {
      std::fprintf(stderr, "tessera run: %s\n", frame.error().ToString().c_str());
      return kExitRunFailure;
    }
    if (auto status = handle(*frame)) return *status;
  }
}

// `run` parses its own arguments: everything after the qube name (or after
// `--`) belongs to the command, including things that look like options.
int RunRun(const std::vector<std::string>& args) {
  std::optional<std::string> dispvm;
  std::string user;
  bool relay = false;
  std::string qube;
  std::vector<std::string> command;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::printf(
          "Usage: tessera run [--user USER] [--relay] QUBE [--] CMD [ARG...]\n"
          "       tessera run [--user USER] [--relay] --dispvm[=TEMPLATE] [--] CMD [ARG...]\n"
          "Runs CMD in QUBE (started first if needed) with this process's stdin, stdout\n"
          "and stderr; exits with CMD's exit code (125 if tessera failed, 126 not\n"
          "executable, 127 not found). --dispvm runs it in a fresh disposable made from\n"
          "TEMPLATE (default: the system's default_dispvm) that is destroyed afterwards.\n"
          "If this process is killed, the command is hung up (SIGHUP, then SIGKILL).\n"
          "--relay carries the streams through tesserad as frames instead of passing the\n"
          "descriptors into the qube (what qubes that cannot take descriptors need).\n");
      return 0;
    }
    if (a == "--relay") {
      relay = true;
    } else if (a == "--dispvm") {
      dispvm = "";
    } else if (a.rfind("--dispvm=", 0) == 0) {
      dispvm = a.substr(9);
    } else if (a == "--user" || a == "-u") {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "tessera run: --user needs a value\n");
        return kExitUsage;
      }
      user = args[++i];
    } else if (a.rfind("--user=", 0) == 0) {
      user = a.substr(7);
    } else if (!a.empty() && a[0] == '-' && qube.empty() && !dispvm) {
      std::fprintf(stderr, "tessera run: unknown option %s (use -- before the command)\n",
                   a.c_str());
      return kExitUsage;
    } else if (!dispvm && qube.empty()) {
      qube = a;
    } else {
      break;  // the command starts here
    }
  }
  for (; i < args.size(); ++i) command.push_back(args[i]);
  if (!dispvm && qube.empty()) {
    std::fprintf(stderr, "tessera run: name a qube or use --dispvm (see tessera run --help)\n");
    return kExitUsage;
  }
  if (command.empty()) {
    std::fprintf(stderr, "tessera run: no command given\n");
    return kExitUsage;
  }
  json params = {{"argv", command}};
  if (dispvm) {
    params["dispvm"] = *dispvm;
  } else {
    params["qube"] = qube;
  }
  if (!user.empty()) params["user"] = user;
  if (relay) return RunRelayed(params);
  int fds[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
  json passed = params;
  passed["streams"] = "fds";
  auto client = wire::AdminClient::Connect();
  if (!client) {
    std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
    return kExitRunFailure;
  }
  auto reply = client->Call("qube.run", passed, fds);
  if (!reply) {
    std::fprintf(stderr, "tessera run: %s\n", reply.error().ToString().c_str());
    return kExitRunFailure;
  }
  if (!reply->ok) {
    // A qube that cannot take descriptors: the same run, relayed.
    if (reply->code == wire::codes::kRelayRequired) return RunRelayed(params);
    std::fprintf(stderr, "tessera run: %s\n",
                 EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
    return ExitForCode(reply->code);
  }
  return reply->result.value("exit_code", kExitRunFailure);
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand("run", "Run a command in a qube or a disposable");
  // Every argument after `run` is ours, also ones that look like options:
  // no fallthrough to the main app, extras kept in order.
  cmd->fallthrough(false);
  cmd->allow_extras();
  cmd->prefix_command();
  cmd->set_help_flag();  // run parses -h itself (it may belong to the command)
  // Two positionals so that CLI11 keeps everything after `--` here instead
  // of handing it to the main app; the values themselves are unused.
  static std::string first;
  static std::vector<std::string> rest;
  cmd->add_option("qube", first, "QUBE (or --dispvm[=TEMPLATE]); [--user U] [--relay]");
  cmd->add_option("command", rest, "[--] CMD [ARG...]");
  cmd->callback([&ctx] { ctx.exit_code = RunRun(ArgsAfterRun()); });
}

const CommandRegistration kRegistration({"run"}, Register);

}  // namespace
}  // namespace tessera::cli

