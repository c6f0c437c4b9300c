#include "cli/daemon_call.h"

#include <cstdio>

#include "common/text.h"
#include "wire/admin_client.h"

namespace tessera::cli {

std::optional<nlohmann::json> CallDaemon(const char* verb, const std::string& method,
                                         const nlohmann::json& params, std::span<const int> fds,
                                         std::string* code) {
  auto client = wire::AdminClient::Connect();
  if (!client) {
    std::fprintf(stderr, "%s\n", wire::ExplainConnectError(client.error()).c_str());
    if (code) *code = "not_running";
    return std::nullopt;
  }
  auto reply = client->Call(method, params, fds);
  if (!reply) {
    std::fprintf(stderr, "tessera %s: %s\n", verb, reply.error().ToString().c_str());
    return std::nullopt;
  }
  if (!reply->ok) {
    if (code) *code = reply->code;
    std::fprintf(stderr, "tessera %s: %s\n", verb,
                 EscapeControl(reply->message, EscapeNewlines::kEscape).c_str());
    return std::nullopt;
  }
  return reply->result;
}

}  // namespace tessera::cli
