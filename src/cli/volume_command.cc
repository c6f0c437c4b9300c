// `tessera volume ls|purge|adopt|copy`: private volumes and orphans, thin
// over the volume.* admin methods (docs/STORAGE.md "Orphans").
//
//   tessera volume ls [--json]
//   tessera volume purge NAME...            NAME: an orphan id, or a qube name with one orphan
//   tessera volume adopt NAME [--to QUBE] [--force]
//   tessera volume copy SRC DST [--force]
//   tessera volume resize QUBE SIZE         SIZE: 4G, 512M, 8GiB or a number of MiB
//
// Exit 0 on success, 1 on failure (message on stderr), 2 on usage errors.

#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/daemon_call.h"
#include "common/text.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

std::string Safe(const std::string& s) { return EscapeControl(s, EscapeNewlines::kEscape); }

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

int RunLs(bool as_json) {
  auto result = CallDaemon("volume ls", "volume.list", json::object());
  if (!result) return 1;
  if (as_json) {
    std::printf("%s\n", result->dump(2).c_str());
    return 0;
  }
  // USED: what the volume takes on the host disk; SIZE: its limit (a
  // volume not started since it got one shows its private_size, "at start").
  std::printf("%-36s %-7s %-10s %-19s %s\n", "NAME", "KIND", "USED", "SIZE", "REMOVED");
  for (const auto& v : (*result)["volumes"]) {
    std::string size = "-";
    if (v.contains("size") && v["size"].is_number_unsigned()) {
      size = FormatBytes(v["size"].get<uint64_t>());
    } else if (v.contains("private_size") && v["private_size"].is_number_unsigned()) {
      size = FormatBytes(v["private_size"].get<uint64_t>()) + " at start";
    }
    std::printf("%-36s %-7s %-10s %-19s %s\n", Safe(v.value("qube", "?")).c_str(), "qube",
                HumanBytes(v.value("bytes", uint64_t{0})).c_str(), size.c_str(), "-");
  }
  for (const auto& o : (*result)["orphans"]) {
    std::printf("%-36s %-7s %-10s %-19s %s\n", Safe(o.value("id", "?")).c_str(), "orphan",
                HumanBytes(o.value("bytes", uint64_t{0})).c_str(), "-",
                Safe(o.value("removed", "?")).c_str());
  }
  return 0;
}

int RunPurge(const std::vector<std::string>& names) {
  int rc = 0;
  for (const auto& name : names) {
    auto result = CallDaemon("volume purge", "volume.purge", {{"name", name}});
    if (!result) {
      rc = 1;
      continue;
    }
    const json& o = (*result)["purged"];
    std::printf("purged %s (%s of qube %s)\n", Safe(o.value("id", "")).c_str(),
                HumanBytes(o.value("bytes", uint64_t{0})).c_str(),
                Safe(o.value("qube", "")).c_str());
  }
  return rc;
}

void PrintDisplaced(const json& result) {
  if (result.contains("displaced") && result["displaced"].is_object()) {
    std::printf("the previous volume was kept as orphan %s\n",
                Safe(result["displaced"].value("id", "")).c_str());
  }
}

int RunAdopt(const std::string& name, const std::string& to, bool force) {
  json params = {{"name", name}, {"force", force}};
  if (!to.empty()) params["qube"] = to;
  auto result = CallDaemon("volume adopt", "volume.adopt", params);
  if (!result) return 1;
  std::printf("%s is now the private volume of %s\n",
              Safe((*result)["adopted"].value("id", "")).c_str(),
              Safe(result->value("qube", "")).c_str());
  PrintDisplaced(*result);
  return 0;
}

int RunCopy(const std::string& source, const std::string& dest, bool force) {
  auto result = CallDaemon("volume copy", "volume.copy",
                           {{"source", source}, {"dest", dest}, {"force", force}});
  if (!result) return 1;
  std::printf("copied the private volume of %s to %s (%s)\n", Safe(source).c_str(),
              Safe(dest).c_str(), HumanBytes(result->value("bytes", uint64_t{0})).c_str());
  PrintDisplaced(*result);
  return 0;
}

int RunResize(const std::string& qube, const std::string& size) {
  auto result = CallDaemon("volume resize", "volume.resize", {{"qube", qube}, {"size", size}});
  if (!result) return 1;
  uint64_t now = result->value("size", uint64_t{0});
  uint64_t declared = result->value("private_size", uint64_t{0});
  std::printf("the private volume of %s is %s%s\n", Safe(qube).c_str(), FormatBytes(now).c_str(),
              result->value("pending", false)
                  ? " (the running qube sees the new size after a restart: growing a mounted "
                    "volume needs CAP_SYS_RESOURCE, which tesserad lacks)"
                  : "");
  if (declared != 0 && declared < now) {
    std::printf(
        "note: its private_size in the system description is %s; a volume is never "
        "shrunk to it\n",
        FormatBytes(declared).c_str());
  }
  return 0;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd =
      app.add_subcommand("volume", "Private volumes: list, resize, copy; purge or adopt orphans");
  cmd->require_subcommand(1);

  static bool json_out = false;
  auto* ls = cmd->add_subcommand("ls", "List qubes' volumes and orphaned volumes of removed qubes");
  ls->alias("list");
  ls->add_flag("--json", json_out, "Machine-readable output");
  ls->callback([&ctx] { ctx.exit_code = RunLs(json_out); });

  static std::vector<std::string> purge_names;
  auto* purge = cmd->add_subcommand("purge", "Delete orphaned volumes for good");
  purge->add_option("name", purge_names, "Orphan id, or a qube name with exactly one orphan")
      ->required();
  purge->callback([&ctx] { ctx.exit_code = RunPurge(purge_names); });

  static std::string adopt_name, adopt_to;
  static bool adopt_force = false;
  auto* adopt =
      cmd->add_subcommand("adopt", "Make an orphaned volume a halted qube's private volume again");
  adopt->add_option("name", adopt_name, "Orphan id, or a qube name with exactly one orphan")
      ->required();
  adopt->add_option("--to", adopt_to, "The qube that takes it (default: the one it belonged to)");
  adopt->add_flag("--force", adopt_force,
                  "If the qube's current volume holds data, keep it as an orphan (never deleted)");
  adopt->callback([&ctx] { ctx.exit_code = RunAdopt(adopt_name, adopt_to, adopt_force); });

  static std::string copy_source, copy_dest;
  static bool copy_force = false;
  auto* copy = cmd->add_subcommand(
      "copy", "Copy a halted qube's private volume to another halted qube (like qvm-clone)");
  copy->add_option("source", copy_source, "Qube to copy from")->required();
  copy->add_option("dest", copy_dest, "Qube to copy to")->required();
  copy->add_flag("--force", copy_force,
                 "If the destination's volume holds data, keep it as an orphan (never deleted)");
  copy->callback([&ctx] { ctx.exit_code = RunCopy(copy_source, copy_dest, copy_force); });

  static std::string resize_qube, resize_size;
  auto* resize = cmd->add_subcommand(
      "resize", "Grow a qube's private volume (running or not; volumes never shrink)");
  resize->add_option("qube", resize_qube, "Qube whose volume grows")->required();
  resize->add_option("size", resize_size, "New size: 4G, 512M, 8GiB, or a number of MiB")
      ->required();
  resize->callback([&ctx] { ctx.exit_code = RunResize(resize_qube, resize_size); });
}

const CommandRegistration kRegistration({"volume"}, Register);

}  // namespace
}  // namespace tessera::cli
