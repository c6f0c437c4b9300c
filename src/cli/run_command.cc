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

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/daemon_call.h"
#include "cli/relay_session.h"
#include "common/names.h"

extern char** environ;

namespace tessera::cli {
namespace {

using nlohmann::json;

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
  RelayOptions relay_options;
  relay_options.tty = tty;
  relay_options.relay = relay;
  relay_options.detach = o.detach;
  relay_options.filter = o.filter;
  RelaySession session(relay_options);
  int status = session.Run(params);
  if (session.relay_required()) {
    // A qube that cannot take descriptors: the same run, relayed.
    relay_options.relay = true;
    RelaySession relayed(relay_options);
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
