#include "wire/admin_protocol.h"

#include "common/json_access.h"

namespace tessera::wire {

using nlohmann::json;

Result<AdminRequest> ParseAdminRequest(std::string_view payload) {
  // Parameters are shallow (apply carries its description as a string).
  json doc = TRY(ParseJsonObject(payload, {.what = "request", .max_depth = 6}));
  TRY(OnlyKeys(doc, {"v", "id", "method", "params"}, "request"));
  int64_t v = TRY(RequiredInt(doc, "v", 0, INT32_MAX, "request"));
  if (v != kAdminProtocolVersion) {
    return Err(Error("unsupported protocol version " + std::to_string(v) + " (this daemon speaks " +
                         std::to_string(kAdminProtocolVersion) + ")",
                     EPROTO));
  }
  AdminRequest request;
  request.id = TRY(RequiredInt(doc, "id", 0, INT64_MAX, "request"));
  request.method = TRY(RequiredString(doc, "method", "request", kMaxMethodName));
  if (request.method.empty()) return Err(Error("request: empty \"method\"", EPROTO));
  if (const json* params = TRY(OptionalObject(doc, "params", "request"))) request.params = *params;
  return request;
}

std::string SerializeAdminRequest(int64_t id, std::string_view method, const json& params) {
  return DumpJson(json{{"v", kAdminProtocolVersion}, {"id", id}, {"method", method},
                       {"params", params}});
}

std::string OkResponse(int64_t id, const json& result) {
  return DumpJson(json{{"id", id}, {"ok", true}, {"result", result}});
}

std::string ErrorResponse(int64_t id, std::string_view code, std::string_view message) {
  return DumpJson(json{{"id", id},
                       {"ok", false},
                       {"error", {{"code", std::string(code)}, {"message", std::string(message)}}}});
}

Result<AdminReply> ParseAdminReply(std::string_view payload) {
  json doc = TRY(ParseJsonObject(payload, {.what = "reply from tesserad", .max_depth = 32}));
  AdminReply reply;
  reply.id = TRY(IntOr(doc, "id", 0, 0, INT64_MAX, "reply from tesserad"));
  reply.ok = TRY(BoolOr(doc, "ok", false, "reply from tesserad"));
  if (reply.ok) {
    auto it = doc.find("result");
    reply.result = it == doc.end() ? json::object() : *it;
    return reply;
  }
  const json* error = TRY(OptionalObject(doc, "error", "reply from tesserad"));
  if (error == nullptr) return Err(Error("reply from tesserad: neither result nor error", EPROTO));
  reply.code = TRY(StringOr(*error, "code", "failed", "reply from tesserad", 256));
  reply.message = TRY(StringOr(*error, "message", "", "reply from tesserad"));
  return reply;
}

}  // namespace tessera::wire
