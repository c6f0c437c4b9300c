// The `firewall.*` admin methods (`tessera firewall`, docs/NETWORK.md):
// parameters checked here, the work done by Network.

#include "common/json_access.h"
#include "daemon/network.h"
#include "wire/admin_protocol.h"

namespace tessera::daemon {

using nlohmann::json;
using Call = AdminServer::Call;
namespace codes = wire::codes;

void Network::RegisterMethods(AdminServer& server) {
  auto with_qube = [&server](std::initializer_list<std::string_view> keys, const char* method,
                             auto handler) {
    return [&server, keys = std::vector<std::string_view>(keys), method, handler](Call call) {
      for (const auto& [key, value] : call.params.items()) {
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
          return server.Reply(
              call,
              Fail(codes::kBadRequest, std::string(method) + ": unknown parameter '" + key + "'"));
        }
      }
      auto qube = RequiredString(call.params, "qube", method);
      if (!qube) return server.Reply(call, Fail(codes::kBadRequest, qube.error().message()));
      server.Reply(call, handler(*qube, call.params));
    };
  };
  server.Register("firewall.list", {.audit_failures_only = true},
                  with_qube({"qube"}, "firewall.list",
                            [this](const std::string& q, const json&) { return ListFirewall(q); }));
  server.Register("firewall.add", {},
                  with_qube({"qube", "rule"}, "firewall.add",
                            [this](const std::string& q, const json& p) -> ApiResult<json> {
                              if (!p.contains("rule")) {
                                return Fail(codes::kBadRequest, "firewall.add: missing 'rule'");
                              }
                              return AddRule(q, p["rule"]);
                            }));
  server.Register("firewall.del", {},
                  with_qube({"qube", "number"}, "firewall.del",
                            [this](const std::string& q, const json& p) -> ApiResult<json> {
                              auto n = RequiredInt(p, "number", 1, 1 << 20, "firewall.del");
                              if (!n) return Fail(codes::kBadRequest, n.error().message());
                              return DeleteRule(q, *n);
                            }));
  server.Register("firewall.reload", {},
                  with_qube({"qube"}, "firewall.reload",
                            [this](const std::string& q, const json&) { return Reload(q); }));
}

}  // namespace tessera::daemon
