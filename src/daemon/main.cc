// tesserad: the daemon executable. `tessera daemon` execs it with the same
// flags, so the everyday CLI does not load libsystemd and starts faster
// (docs/DAEMON.md "Binaries").

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/paths.h"
#include "daemon/daemon.h"

namespace {

constexpr int kExitUsage = 2;

struct Flags {
  std::string config;
  bool example = false;
  bool no_autostart = false;
  std::string admin_group = "tessera";
  std::string allow_host_sources;
  std::string socket_mode = "0666";
  unsigned stop_grace_ms = 5000;
  std::string cgroups = "auto";
};

int Run(const Flags& flags) {
  using namespace tessera;
  daemon::DaemonOptions options;
  options.layout = storage::Layout::FromEnvironment();
  options.use_example = flags.example;
  if (!flags.example) {
    // Absolute: the path is recorded (daemon.info, applied.json) and compared
    // when the daemon starts again, perhaps from another directory.
    std::error_code ec;
    options.config_path =
        std::filesystem::absolute(ConfigPath(flags.config), ec).lexically_normal().string();
    if (ec) options.config_path = ConfigPath(flags.config);
    struct stat st;
    if (::stat(options.config_path.c_str(), &st) != 0) {
      std::fprintf(stderr,
                   "tessera daemon: no system description at %s\n"
                   "Pass --config FILE (or set TESSERA_CONFIG), or use --example for the "
                   "built-in example system.\n",
                   options.config_path.c_str());
      return 1;
    }
  }
  options.admin_group = flags.admin_group;
  options.allow_host_sources_group = flags.allow_host_sources;
  char* end = nullptr;
  unsigned long mode = std::strtoul(flags.socket_mode.c_str(), &end, 8);
  if (end == flags.socket_mode.c_str() || *end != '\0' || mode > 0777) {
    std::fprintf(stderr, "tessera daemon: --socket-mode must be octal, e.g. 0660\n");
    return kExitUsage;
  }
  options.socket_mode = static_cast<mode_t>(mode);
  options.autostart = !flags.no_autostart;
  options.stop_grace = std::chrono::milliseconds(flags.stop_grace_ms);
  options.cgroups = flags.cgroups == "systemd"   ? daemon::CgroupManager::kSystemd
                    : flags.cgroups == "tessera" ? daemon::CgroupManager::kTessera
                                                 : daemon::CgroupManager::kAuto;
  return daemon::RunDaemon(options);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tesserad: owns every qube of the system description (also: `tessera daemon`)"};
  Flags flags;
  app.add_option("--config", flags.config,
                 "System description (TOML, JSON or Nix); default $TESSERA_CONFIG or "
                 "/etc/tessera/system.toml");
  app.add_flag("--example", flags.example, "Run the built-in example system");
  app.add_flag("--no-autostart", flags.no_autostart, "Do not start autostart qubes");
  app.add_option("--admin-group", flags.admin_group,
                 "Group whose members may use the admin socket (default tessera). Its members are "
                 "root-equivalent, as dom0 is in Qubes: they start qubes with the host's "
                 "resources and change the whole system description");
  app.add_option("--allow-host-sources", flags.allow_host_sources,
                 "Group whose members may also apply host-path template sources (dir:PATH, host), "
                 "which tesserad reads as root; default: root only")
      ->type_name("GROUP");
  app.add_option("--socket-mode", flags.socket_mode,
                 "Mode of R/admin.sock (default 0666: the daemon itself refuses and audits "
                 "non-admins; 0660 adds a kernel check but refusals are not audited)");
  app.add_option("--stop-grace-ms", flags.stop_grace_ms,
                 "How long `stop` waits before killing (default 5000)");
  app.add_option("--cgroups", flags.cgroups,
                 "Who makes the qubes' cgroups: auto (default: a systemd scope per qube in "
                 "tessera.slice where systemd runs a cgroup v2 host, else tessera), systemd "
                 "(refuse to start without it) or tessera (its own hierarchy)")
      ->check(CLI::IsMember({"auto", "systemd", "tessera"}));
  app.footer(
      "The admin group is root-equivalent, as dom0 is in Qubes: give it only to people you "
      "would give root. Even so, only root (or members of --allow-host-sources GROUP) may "
      "make tesserad read a host path a description names (template sources dir:PATH, host).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  return Run(flags);
}
