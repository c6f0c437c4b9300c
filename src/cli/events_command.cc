// `tessera events`: follows the daemon's event stream (state changes, disposables
// destroyed, applies) until interrupted.

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "common/text.h"
#include "wire/admin_client.h"

namespace tessera::cli {
namespace {

int RunEvents(bool as_json) {
  auto client = wire::AdminClient::Connect();
  if (!client) {
    std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
    return 1;
  }
  auto reply = client->Call("events.subscribe", nlohmann::json::object());
  if (!reply) {
    std::fprintf(stderr, "tessera events: %s\n", reply.error().ToString().c_str());
    return 1;
  }
  if (!reply->ok) {
    std::fprintf(stderr, "tessera events: %s\n",
                 EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
    return 1;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a follower: each event now, also into a pipe
  for (;;) {
    auto event = client->NextEvent();
    if (!event) {
      // The daemon went away (stopped or crashed): the stream is over, and a
      // follower that stops following is not a success.
      std::fprintf(stderr, "tessera events: %s\n", event.error().ToString().c_str());
      return 1;
    }
    if (as_json) {
      std::printf("%s\n",
                  event->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      continue;
    }
    std::string line = event->value("ts", "") + "  " + event->value("event", "?");
    if (event->contains("qube")) line += "  " + event->value("qube", "");
    if (event->contains("state")) line += "  " + event->value("state", "");
    if (event->contains("reason")) line += "  (" + event->value("reason", "") + ")";
    if (event->contains("source")) line += "  " + event->value("source", "");
    std::printf("%s\n", EscapeControl(line, EscapeNewlines::kEscape).c_str());
  }
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand("events", "Follow lifecycle events from tesserad");
  static bool as_json = false;
  cmd->add_flag("--json", as_json, "One JSON object per line");
  cmd->callback([&ctx] { ctx.exit_code = RunEvents(as_json); });
}

const CommandRegistration kRegistration({"events"}, Register);

}  // namespace
}  // namespace tessera::cli
