#include "common/json_access.h"

namespace tessera {
namespace {

using nlohmann::json;

std::string Quoted(std::string_view what, std::string_view key, std::string_view problem) {
  std::string s(what);
  s += ": \"";
  s += key;
  s += "\" ";
  s += problem;
  return s;
}

const json* Find(const json& j, std::string_view key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

Result<std::string> CheckedString(const json& v, std::string_view key, std::string_view what,
                                  size_t max_size) {
  if (!v.is_string()) return Err(Quoted(what, key, "is not a string"));
  const auto& s = v.get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos) return Err(Quoted(what, key, "holds a NUL byte"));
  if (s.size() > max_size) return Err(Quoted(what, key, "is too long"));
  return s;
}

Result<int64_t> CheckedInt(const json& v, std::string_view key, int64_t lo, int64_t hi,
                           std::string_view what) {
  if (!v.is_number_integer()) return Err(Quoted(what, key, "is not an integer"));
  int64_t n;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return Err(Quoted(what, key, "is out of range"));
    n = static_cast<int64_t>(u);
  } else {
    n = v.get<int64_t>();
  }
  if (n < lo || n > hi) {
    return Err(Quoted(what, key,
                      "is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")"));
  }
  return n;
}

}  // namespace

bool JsonDepthWithin(std::string_view text, size_t limit) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Result<json> ParseJsonObject(std::string_view text, const JsonLimits& limits) {
  std::string what(limits.what);
  if (text.size() > limits.max_bytes) return Err(what + ": message too large");
  if (!JsonDepthWithin(text, limits.max_depth)) return Err(what + ": JSON nested too deeply");
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Err(what + ": malformed JSON");
  if (!j.is_object()) return Err(what + ": not a JSON object");
  return j;
}

Status OnlyKeys(const json& j, std::initializer_list<std::string_view> allowed,
                std::string_view what) {
  if (!j.is_object()) return Err(std::string(what) + ": not a JSON object");
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (std::string_view a : allowed) known = known || key == a;
    if (!known) return Err(Quoted(what, key, "is not a known key"));
  }
  return Ok();
}

Result<std::string> RequiredString(const json& j, std::string_view key, std::string_view what,
                                   size_t max_size) {
  const json* v = Find(j, key);
  if (v == nullptr) return Err(Quoted(what, key, "is missing"));
  return CheckedString(*v, key, what, max_size);
}

Result<std::string> StringOr(const json& j, std::string_view key, std::string_view fallback,
                             std::string_view what, size_t max_size) {
  const json* v = Find(j, key);
  if (v == nullptr) return std::string(fallback);
  return CheckedString(*v, key, what, max_size);
}

Result<int64_t> RequiredInt(const json& j, std::string_view key, int64_t lo, int64_t hi,
                            std::string_view what) {
  const json* v = Find(j, key);
  if (v == nullptr) return Err(Quoted(what, key, "is missing"));
  return CheckedInt(*v, key, lo, hi, what);
}

Result<int64_t> IntOr(const json& j, std::string_view key, int64_t fallback, int64_t lo,
                      int64_t hi, std::string_view what) {
  const json* v = Find(j, key);
  if (v == nullptr) return fallback;
  return CheckedInt(*v, key, lo, hi, what);
}

Result<bool> BoolOr(const json& j, std::string_view key, bool fallback, std::string_view what) {
  const json* v = Find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return Err(Quoted(what, key, "is not true or false"));
  return v->get<bool>();
}

Result<std::vector<std::string>> StringArray(const json& j, std::string_view key,
                                             std::string_view what, StringArrayRules rules) {
  const json* v = Find(j, key);
  if (v == nullptr) {
    if (rules.required) return Err(Quoted(what, key, "is missing"));
    return std::vector<std::string>{};
  }
  if (!v->is_array()) return Err(Quoted(what, key, "is not an array"));
  if (v->size() > rules.max_items) return Err(Quoted(what, key, "has too many entries"));
  if (rules.required && v->empty()) return Err(Quoted(what, key, "is empty"));
  std::vector<std::string> out;
  out.reserve(v->size());
  for (const json& e : *v) {
    if (!e.is_string()) return Err(Quoted(what, key, "holds a non-string"));
    const auto& s = e.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos) return Err(Quoted(what, key, "holds a NUL byte"));
    if (s.size() > rules.max_item_size) return Err(Quoted(what, key, "holds a too long entry"));
    out.push_back(s);
  }
  return out;
}

Result<const json*> OptionalObject(const json& j, std::string_view key, std::string_view what) {
  const json* v = Find(j, key);
  if (v == nullptr) return static_cast<const json*>(nullptr);
  if (!v->is_object()) return Err(Quoted(what, key, "is not an object"));
  return v;
}

std::string DumpJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace tessera
