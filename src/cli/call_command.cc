// `tessera call [--source QUBE|dom0] [--timeout S] TARGET SERVICE[+ARG]`: an
// RPC call from the host, as qrexec-client in Qubes' dom0: the policy decides
// (source dom0 unless an admin says otherwise, which the audit log records),
// the service runs in TARGET with this process's stdin, stdout and stderr,
// and its exit status is ours. 126: refused by policy; 127: no such service
// in the target; 125: anything else kept the call from reaching the service.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/relay_session.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

constexpr const char* kHelp =
    "Usage: tessera call [OPTIONS] TARGET SERVICE[+ARGUMENT]\n"
    "Calls an RPC service in TARGET (a qube, @dispvm, @dispvm:TEMPLATE, @default,\n"
    "@adminvm) as the policy allows; the service gets this process's stdin and its\n"
    "stdout and stderr come here. Exits with the service's status, or 126 when the\n"
    "policy refused the call, 127 when TARGET has no such service, 125 when the\n"
    "call failed otherwise (the target did not start, the daemon is not running).\n"
    "\n"
    "Options:\n"
    "  --source QUBE   call as QUBE instead of dom0 (admins only; audited as such)\n"
    "  --timeout S     give up (125) if the service has not started within S seconds\n"
    "  --no-filter-escape-chars\n"
    "                  pass the service's output to this terminal unfiltered\n";

int Usage(const std::string& message) {
  std::fprintf(stderr, "tessera call: %s (see tessera call --help)\n", message.c_str());
  return kExitUsage;
}

int RunCall(const std::vector<std::string>& args) {
  std::string source;
  std::optional<std::chrono::milliseconds> timeout;
  bool filter = true;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* name, std::string* out) -> bool {
      std::string prefix = std::string(name) + "=";
      if (a.rfind(prefix, 0) == 0) {
        *out = a.substr(prefix.size());
        return true;
      }
      if (a != name) return false;
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "--no-filter-escape-chars") {
      filter = false;
    } else if (a.rfind("--source", 0) == 0) {
      if (!value("--source", &source) || source.empty()) return Usage("--source needs a qube name");
    } else if (a.rfind("--timeout", 0) == 0) {
      if (!value("--timeout", &v)) return Usage("--timeout needs a number of seconds");
      char* end = nullptr;
      double seconds = std::strtod(v.c_str(), &end);
      if (v.empty() || end == nullptr || *end != '\0' || !(seconds > 0) || seconds > 86400) {
        return Usage("--timeout must be a number of seconds in (0, 86400], got \"" + v + "\"");
      }
      timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    } else if (a == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    } else if (a.size() > 1 && a[0] == '-') {
      return Usage("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return Usage("expected TARGET and SERVICE[+ARGUMENT]");
  json params = {{"target", positional[0]}, {"service", positional[1]}, {"streams", "relay"}};
  if (!source.empty()) params["source"] = source;
  RelaySession session({.method = "rpc.call",
                        .label = "tessera call",
                        .tty = false,
                        .relay = true,
                        .filter = filter,
                        .start_timeout = timeout});
  return session.Run(std::move(params));
}

void Register(CLI::App& app, CliContext& /*ctx*/) {
  auto* cmd = app.add_subcommand("call", "Call an RPC service in a qube, as the policy allows");
  cmd->allow_extras();
}

const CommandRegistration kRegistration({"call"}, Register, RunCall);

}  // namespace
}  // namespace tessera::cli
