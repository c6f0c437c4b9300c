// `tessera clipboard`: the host's clipboard between qubes, Qubes' two steps
// (docs/RPC.md "The clipboard"):
//
//   tessera clipboard copy --from QUBE   QUBE's clipboard into the host's
//   tessera clipboard paste --to QUBE    the host's into QUBE's, if the policy
//                                        allows qubes.ClipboardPaste; then
//                                        the host's is empty
//   tessera clipboard [show] [--json]    where the host's came from, its size
//   tessera clipboard clear              empty it
//
// The text itself never passes through this process.

#include <cstdio>
#include <ctime>
#include <string>

#include "cli/command.h"
#include "cli/daemon_call.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

struct ClipboardOptions {
  std::string from;
  std::string to;
  bool as_json = false;
};

int Copy(const ClipboardOptions& o) {
  auto r = CallDaemon("clipboard copy", "clipboard.copy", {{"from", o.from}});
  if (!r) return 1;
  std::printf("copied %llu bytes from %s into the host's clipboard\n",
              static_cast<unsigned long long>(r->value("size", uint64_t{0})),
              r->value("source", o.from).c_str());
  return 0;
}

int Paste(const ClipboardOptions& o) {
  std::string code;
  auto r = CallDaemon("clipboard paste", "clipboard.paste", {{"to", o.to}}, {}, &code);
  if (!r) return code == "request_refused" ? 126 : 1;
  std::printf("pasted %llu bytes from %s into %s; the host's clipboard is empty\n",
              static_cast<unsigned long long>(r->value("size", uint64_t{0})),
              r->value("source", std::string("?")).c_str(), o.to.c_str());
  return 0;
}

int Show(const ClipboardOptions& o) {
  auto r = CallDaemon("clipboard", "clipboard.show", json::object());
  if (!r) return 1;
  if (o.as_json) {
    std::printf("%s\n", r->dump().c_str());
    return 0;
  }
  if (r->value("empty", true)) {
    std::printf("the host's clipboard is empty\n");
    return 0;
  }
  std::time_t at = r->value("copied_at", int64_t{0});
  char when[64] = "?";
  std::tm local{};
  if (localtime_r(&at, &local) != nullptr) std::strftime(when, sizeof(when), "%F %T", &local);
  std::printf("%llu bytes from %s, copied %s\n",
              static_cast<unsigned long long>(r->value("size", uint64_t{0})),
              r->value("source", std::string("?")).c_str(), when);
  return 0;
}

int Clear() {
  auto r = CallDaemon("clipboard clear", "clipboard.clear", json::object());
  if (!r) return 1;
  std::printf(r->value("cleared", false) ? "cleared\n" : "the host's clipboard was empty\n");
  return 0;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand("clipboard", "Copy and paste text between qubes");
  cmd->footer(
      "The host holds one clipboard (at most 65000 bytes). `copy --from QUBE` takes\n"
      "QUBE's; `paste --to QUBE` gives it to QUBE when the policy allows\n"
      "qubes.ClipboardPaste from the qube it came from, and empties it. Inside a qube,\n"
      "`tessera-clipboard get|set` reads and sets that qube's own clipboard.");
  static ClipboardOptions o;
  cmd->require_subcommand(0, 1);
  auto* copy = cmd->add_subcommand("copy", "Take a qube's clipboard into the host's");
  copy->add_option("--from", o.from, "The qube (running) whose clipboard to take")->required();
  copy->callback([&ctx] { ctx.exit_code = Copy(o); });
  auto* paste = cmd->add_subcommand("paste", "Give the host's clipboard to a qube, then empty it");
  paste->add_option("--to", o.to, "The qube (running) to paste into")->required();
  paste->callback([&ctx] { ctx.exit_code = Paste(o); });
  auto* show = cmd->add_subcommand("show", "Where the host's clipboard came from, and its size");
  show->add_flag("--json", o.as_json, "JSON");
  show->callback([&ctx] { ctx.exit_code = Show(o); });
  auto* clear = cmd->add_subcommand("clear", "Empty the host's clipboard");
  clear->callback([&ctx] { ctx.exit_code = Clear(); });
  cmd->add_flag("--json", o.as_json, "JSON (show)");
  cmd->callback([&ctx, cmd] {
    if (cmd->get_subcommands().empty()) ctx.exit_code = Show(o);
  });
}

const CommandRegistration kRegistration({"clipboard"}, Register);

}  // namespace
}  // namespace tessera::cli
