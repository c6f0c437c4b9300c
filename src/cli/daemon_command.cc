// `tessera daemon`: runs tesserad in the foreground (docs/DAEMON.md). The
// daemon is its own executable beside this one (it alone links libsystemd);
// this verb execs it with the same flags.

#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/command.h"

namespace tessera::cli {
namespace {

struct DaemonFlags {
  bool example = false;
  bool no_autostart = false;
  std::string admin_group = "tessera";
  std::string allow_host_sources;
  std::string socket_mode = "0666";
  unsigned stop_grace_ms = 5000;
  std::string cgroups = "auto";
};

// tesserad beside this executable (build dir or install prefix).
std::string TesseradPath() {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return "tesserad";
  exe[n] = '\0';
  std::string dir(exe);
  return dir.substr(0, dir.rfind('/')) + "/tesserad";
}

int ExecDaemon(const CliContext& ctx, const DaemonFlags& flags) {
  std::vector<std::string> args = {"tesserad"};
  if (!ctx.config_flag.empty()) args.insert(args.end(), {"--config", ctx.config_flag});
  if (flags.example) args.push_back("--example");
  if (flags.no_autostart) args.push_back("--no-autostart");
  args.insert(args.end(),
              {"--admin-group", flags.admin_group, "--socket-mode", flags.socket_mode,
               "--stop-grace-ms", std::to_string(flags.stop_grace_ms), "--cgroups", flags.cgroups});
  if (!flags.allow_host_sources.empty()) {
    args.insert(args.end(), {"--allow-host-sources", flags.allow_host_sources});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string path = TesseradPath();
  std::fflush(nullptr);
  ::execv(path.c_str(), argv.data());
  std::fprintf(stderr, "tessera daemon: cannot run %s: %s\n", path.c_str(), std::strerror(errno));
  return 125;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand(
      "daemon", "Run tesserad in the foreground (uses --config FILE or TESSERA_CONFIG)");
  static DaemonFlags flags;
  cmd->add_flag("--example", flags.example, "Run the built-in example system");
  cmd->add_flag("--no-autostart", flags.no_autostart, "Do not start autostart qubes");
  cmd->add_option("--admin-group", flags.admin_group,
                  "Group whose members may use the admin socket (default tessera). Its members are "
                  "root-equivalent, as dom0 is in Qubes: they start qubes with the host's "
                  "resources and change the whole system description");
  cmd->add_option("--allow-host-sources", flags.allow_host_sources,
                  "Group whose members may also apply host-path template sources (dir:PATH, host), "
                  "which tesserad reads as root; default: root only")
      ->type_name("GROUP");
  cmd->add_option("--socket-mode", flags.socket_mode,
                  "Mode of R/admin.sock (default 0666: the daemon itself refuses and audits "
                  "non-admins; 0660 adds a kernel check but refusals are not audited)");
  cmd->add_option("--stop-grace-ms", flags.stop_grace_ms,
                  "How long `stop` waits before killing (default 5000)");
  cmd->add_option("--cgroups", flags.cgroups,
                  "Who makes the qubes' cgroups: auto (default: a systemd scope per qube in "
                  "tessera.slice where systemd runs a cgroup v2 host, else tessera), systemd "
                  "(refuse to start without it) or tessera (its own hierarchy)")
      ->check(CLI::IsMember({"auto", "systemd", "tessera"}));
  cmd->footer(
      "The admin group is root-equivalent, as dom0 is in Qubes: give it only to people you "
      "would give root. Even so, only root (or members of --allow-host-sources GROUP) may "
      "make tesserad read a host path a description names (template sources dir:PATH, host).");
  cmd->callback([&ctx] { ctx.exit_code = ExecDaemon(ctx, flags); });
}

const CommandRegistration kRegistration({"daemon"}, Register);

}  // namespace
}  // namespace tessera::cli
