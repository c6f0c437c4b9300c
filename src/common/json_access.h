#pragma once
// Strict, non-throwing reads of JSON that came from a peer (an admin client,
// an agent, a qube). Every field read from a peer goes through these: a wrong
// type, an unknown key, a NUL byte or an out-of-range number is an error
// naming the message and the key, never an exception.
//
//   nlohmann::json msg = TRY(ParseJsonObject(payload, {.what = "exec"}));
//   TRY(OnlyKeys(msg, {"argv", "cwd"}, "exec"));
//   std::vector<std::string> argv = TRY(StringArray(msg, "argv", "exec", {.required = true}));
//   std::string cwd = TRY(StringOr(msg, "cwd", "/", "exec"));

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tessera {

struct JsonLimits {
  std::string_view what = "message";  // names the message in errors
  size_t max_bytes = 1u << 20;
  // Messages tessera exchanges are shallow; anything deeper is refused before
  // it is parsed, so a hostile "[[[[..." costs nothing.
  size_t max_depth = 8;
};

// True when no array/object in `text` nests deeper than `limit` (strings are
// skipped correctly; malformed text is left to the parser).
bool JsonDepthWithin(std::string_view text, size_t limit);

// Parses `text` as one JSON object within `limits`.
Result<nlohmann::json> ParseJsonObject(std::string_view text, const JsonLimits& limits = {});

// Refuses any key of object `j` not in `allowed`.
Status OnlyKeys(const nlohmann::json& j, std::initializer_list<std::string_view> allowed,
                std::string_view what);

// Strings: refused if not a string, if they hold a NUL byte, or are longer
// than `max_size`.
Result<std::string> RequiredString(const nlohmann::json& j, std::string_view key,
                                   std::string_view what, size_t max_size = 1u << 20);
Result<std::string> StringOr(const nlohmann::json& j, std::string_view key,
                             std::string_view fallback, std::string_view what,
                             size_t max_size = 1u << 20);

// Integers in [lo, hi]; floats, booleans and strings are refused.
Result<int64_t> RequiredInt(const nlohmann::json& j, std::string_view key, int64_t lo, int64_t hi,
                            std::string_view what);
Result<int64_t> IntOr(const nlohmann::json& j, std::string_view key, int64_t fallback,
                      int64_t lo, int64_t hi, std::string_view what);

Result<bool> BoolOr(const nlohmann::json& j, std::string_view key, bool fallback,
                    std::string_view what);

struct StringArrayRules {
  bool required = false;    // key must be present and the array non-empty
  size_t max_items = 4096;
  size_t max_item_size = 1u << 20;
};
Result<std::vector<std::string>> StringArray(const nlohmann::json& j, std::string_view key,
                                             std::string_view what, StringArrayRules rules = {});

// An optional nested object: a pointer into `j`, null when absent; refused
// when present but not an object.
Result<const nlohmann::json*> OptionalObject(const nlohmann::json& j, std::string_view key,
                                             std::string_view what);

// json.dump() that never throws: invalid UTF-8 (peer-supplied text) is replaced.
std::string DumpJson(const nlohmann::json& value);

}  // namespace tessera
