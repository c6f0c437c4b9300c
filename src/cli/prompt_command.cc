// `tessera prompt`: answers the RPC policy's `ask` rules from a terminal, as
// Qubes' confirmation dialog does (docs/RPC.md "ask"). It registers as a
// prompt front end (rpc.prompt), shows each call that waits, and reads the
// answer from stdin: a number or qube name from the list allows the call to
// that target, Enter takes the pre-selected one, `n` denies. Without a
// running `tessera prompt` (or another front end) every ask is denied.
//
//   tessera prompt                     interactive
//   tessera prompt --list [--json]     what waits now
//   tessera prompt --answer ID allow [TARGET] | deny

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "cli/command.h"
#include "common/json_access.h"
#include "common/text.h"
#include "wire/admin_client.h"

namespace tessera::cli {
namespace {

using nlohmann::json;

struct PromptOptions {
  bool list = false;
  bool as_json = false;
  std::vector<std::string> answer;  // ID allow [TARGET] | ID deny
};

std::string Safe(const std::string& s) { return EscapeControl(s, EscapeNewlines::kEscape); }

int Fail(const std::string& message) {
  std::fprintf(stderr, "tessera prompt: %s\n", Safe(message).c_str());
  return 1;
}

Result<wire::AdminClient> Connect() {
  auto client = wire::AdminClient::Connect();
  if (!client) std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
  return client;
}

// One admin call; prints why it failed.
std::optional<json> CallOnce(const std::string& method, const json& params) {
  auto client = Connect();
  if (!client) return std::nullopt;
  auto reply = client->Call(method, params);
  if (!reply) {
    Fail(reply.error().ToString());
    return std::nullopt;
  }
  if (!reply->ok) {
    Fail(reply->message);
    return std::nullopt;
  }
  return reply->result;
}

void PrintAsk(const json& ask) {
  std::string arg = ask.value("argument", "");
  std::printf("\n[ask %llu] %s wants to call %s%s\n",
              static_cast<unsigned long long>(ask.value("id", uint64_t{0})),
              Safe(ask.value("source", "?")).c_str(), Safe(ask.value("service", "?")).c_str(),
              arg.empty() ? "" : Safe(" with argument " + arg).c_str());
  std::string def =
      ask["default_target"].is_string() ? ask["default_target"].get<std::string>() : "";
  int n = 1;
  for (const auto& t : ask.value("targets", json::array())) {
    std::string name = t.is_string() ? t.get<std::string>() : "?";
    std::printf("  %d) %s%s\n", n++, Safe(name).c_str(), name == def ? "  (default)" : "");
  }
  std::printf("Allow? number or name, Enter for the default, n to deny (%llds to answer): ",
              static_cast<long long>(ask.value("timeout_s", 0)));
  std::fflush(stdout);
}

// The answer a line means: {allow, target}; nullopt = not understood.
std::optional<std::pair<bool, std::string>> Understand(const json& ask, std::string line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) {
    line.pop_back();
  }
  if (line == "n" || line == "no" || line == "deny") return std::make_pair(false, std::string());
  std::vector<std::string> targets;
  for (const auto& t : ask.value("targets", json::array())) {
    if (t.is_string()) targets.push_back(t.get<std::string>());
  }
  if (line.empty()) {
    if (ask["default_target"].is_string()) {
      return std::make_pair(true, ask["default_target"].get<std::string>());
    }
    return std::nullopt;
  }
  if (line.find_first_not_of("0123456789") == std::string::npos && line.size() < 6) {
    size_t i = std::stoul(line);
    if (i >= 1 && i <= targets.size()) return std::make_pair(true, targets[i - 1]);
    return std::nullopt;
  }
  for (const auto& t : targets) {
    if (t == line) return std::make_pair(true, t);
  }
  return std::nullopt;
}

int Interactive() {
  auto client = Connect();
  if (!client) return 1;
  auto reply = client->Call("rpc.prompt", json::object());
  if (!reply) return Fail(reply.error().ToString());
  if (!reply->ok) return Fail(reply->message);
  std::printf(
      "Answering RPC asks (Ctrl-C to stop; asks then wait for another prompt or time out).\n");
  std::fflush(stdout);
  std::deque<json> waiting;  // asks in arrival order; the first is on screen
  std::string input;
  bool input_open = true;
  auto handle = [&](const wire::Frame& frame) {
    if (frame.type != wire::FrameType::kEvent) return;
    auto parsed = ParseJsonObject(frame.payload, {.what = "event"});
    if (!parsed) return;
    const json& event = *parsed;
    std::string kind = event.value("event", "");
    if (kind == "ask") {
      waiting.push_back(event);
      if (waiting.size() == 1) PrintAsk(waiting.front());
      return;
    }
    if (kind != "ask_answered" && kind != "ask_withdrawn") return;
    uint64_t id = event.value("id", uint64_t{0});
    bool was_front = !waiting.empty() && waiting.front().value("id", uint64_t{0}) == id;
    std::erase_if(waiting, [&](const json& a) { return a.value("id", uint64_t{0}) == id; });
    if (!was_front) return;
    std::string what = kind == "ask_withdrawn"         ? "withdrawn by the caller"
                       : event.value("allowed", false) ? "allowed: " + event.value("target", "")
                                                       : "denied: " + event.value("reason", "");
    std::printf("\n[ask %llu] %s\n", static_cast<unsigned long long>(id), Safe(what).c_str());
    if (!waiting.empty()) PrintAsk(waiting.front());
    std::fflush(stdout);
  };
  for (;;) {
    // Input closed: done once nothing waits for this prompt any more.
    if (!input_open && waiting.empty()) return 0;
    // Frames already read along with an earlier one first: poll cannot see them.
    for (;;) {
      auto buffered = client->BufferedFrame();
      if (!buffered) return Fail(buffered.error().ToString());
      if (!*buffered) break;
      handle(**buffered);
    }
    pollfd p[2] = {{client->fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (::poll(p, input_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      return Fail("poll");
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      auto frame = client->NextFrame();
      if (!frame) return Fail("tesserad went away: " + frame.error().ToString());
      handle(*frame);
    }
    if (input_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char buf[256];
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
      if (n <= 0) {
        input_open = false;  // no more answers: the shown ask's outcome, then exit
        continue;
      }
      input.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = input.find('\n')) != std::string::npos) {
        std::string line = input.substr(0, nl);
        input.erase(0, nl + 1);
        if (waiting.empty()) continue;
        const json& ask = waiting.front();
        auto answer = Understand(ask, line);
        if (!answer) {
          std::printf("Not one of the choices.\n");
          PrintAsk(ask);
          continue;
        }
        json params = {{"id", ask.value("id", uint64_t{0})}, {"allow", answer->first}};
        if (answer->first) params["target"] = answer->second;
        (void)CallOnce("rpc.answer", params);  // its outcome comes back as an event
      }
    }
  }
}

int RunPrompt(const PromptOptions& o) {
  if (!o.answer.empty()) {
    const auto& a = o.answer;
    bool allow = a.size() >= 2 && a[1] == "allow";
    bool deny = a.size() == 2 && a[1] == "deny";
    if ((!allow && !deny) || a.size() > 3 ||
        a[0].find_first_not_of("0123456789") != std::string::npos) {
      std::fprintf(stderr, "tessera prompt: --answer ID allow [TARGET] | --answer ID deny\n");
      return kExitUsage;
    }
    json params = {{"id", std::stoll(a[0])}, {"allow", allow}};
    if (a.size() == 3) params["target"] = a[2];
    auto r = CallOnce("rpc.answer", params);
    if (!r) return 1;
    std::printf("ask %s %s%s\n", a[0].c_str(), allow ? "allowed" : "denied",
                allow ? Safe(" to " + r->value("target", "")).c_str() : "");
    return 0;
  }
  if (o.list) {
    auto r = CallOnce("rpc.asks", json::object());
    if (!r) return 1;
    if (o.as_json) {
      std::printf("%s\n",
                  (*r)["asks"].dump(-1, ' ', false, json::error_handler_t::replace).c_str());
      return 0;
    }
    for (const auto& ask : (*r)["asks"]) {
      std::string targets;
      for (const auto& t : ask.value("targets", json::array())) {
        targets += (targets.empty() ? "" : ", ") + (t.is_string() ? t.get<std::string>() : "?");
      }
      std::printf("%llu  %s -> %s  [%s]\n",
                  static_cast<unsigned long long>(ask.value("id", uint64_t{0})),
                  Safe(ask.value("source", "?")).c_str(), Safe(ask.value("service", "?")).c_str(),
                  Safe(targets).c_str());
    }
    if (r->value("prompts", 0) == 0) {
      std::printf("(no prompt is running: asks are denied at once; start `tessera prompt`)\n");
    }
    return 0;
  }
  return Interactive();
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand("prompt", "Answer the RPC policy's ask rules");
  static PromptOptions o;
  cmd->add_flag("--list", o.list, "List the calls waiting for an answer");
  cmd->add_flag("--json", o.as_json, "With --list: JSON");
  cmd->add_option("--answer", o.answer, "ID allow [TARGET] | ID deny: answer one ask")
      ->expected(2, 3);
  cmd->callback([&ctx] { ctx.exit_code = RunPrompt(o); });
}

const CommandRegistration kRegistration({"prompt"}, Register);

}  // namespace
}  // namespace tessera::cli
