#include "config/node_reader.h"

#include <algorithm>
#include <map>

#include "common/text.h"

namespace tessera::config {

std::string PathKey(std::string_view key) {
  bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  if (bare) return std::string(key);
  std::string out = "\"";
  for (char c : key.substr(0, 64)) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  }
  if (key.size() > 64) out += "...";
  return out + "\"";
}

std::string JoinPath(const std::string& path, std::string_view key) {
  return path.empty() ? PathKey(key) : path + "." + PathKey(key);
}

bool IsAbsoluteWithoutDotDot(std::string_view path) {
  if (path.empty() || path[0] != '/') return false;
  return ("/" + std::string(path) + "/").find("/../") == std::string::npos;
}

std::string QuoteValue(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 64)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (s.size() > 64) out += "...";
  return out + "'";
}

namespace {

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra;
    uint32_t min;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, min = 0x80, cp = c & 0x1fu;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, min = 0x800, cp = c & 0x0fu;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, min = 0x10000, cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace

// A likely typo is one edit away for words of up to 2 letters, two up to 5,
// three beyond.
std::string DidYouMean(std::string_view word, std::span<const std::string_view> candidates) {
  size_t max_distance = std::min<size_t>(3, word.size() / 3 + 1);
  std::optional<std::string> best = ClosestMatch(word, candidates, max_distance);
  return best ? "; did you mean " + QuoteValue(*best) + "?" : "";
}

void NodeReader::Report(Location location, const std::string& path, std::string message) {
  if (!source_.has_locations) message += " [no line numbers: evaluated Nix]";
  diagnostics_.push_back({source_.file, location.line, location.column, path, std::move(message)});
}

bool NodeReader::ExpectKind(const Node& node, Kind kind, const std::string& path,
                            std::string_view what) {
  if (node.kind == kind) return true;
  Report(node.location, path,
         "expected " + std::string(what) + ", got " + std::string(KindName(node)));
  return false;
}

std::vector<const Member*> NodeReader::UniqueMembers(const Node& table, const std::string& path) {
  std::vector<const Member*> out;
  std::map<std::string_view, const Member*> seen;
  for (const Member& member : table.members) {
    auto [it, inserted] = seen.emplace(member.key, &member);
    if (!inserted) {
      std::string where;
      if (it->second->key_location.line > 0) {
        where = " (first defined at line " + std::to_string(it->second->key_location.line) + ")";
      }
      Report(member.key_location, JoinPath(path, member.key),
             "duplicate key " + QuoteValue(member.key) + where);
      continue;
    }
    if (member.value.kind == Kind::kNull) continue;
    out.push_back(&member);
  }
  return out;
}

void NodeReader::UnknownKey(const Member& member, const std::string& path,
                            std::span<const std::string_view> valid) {
  Report(member.key_location, path,
         "unknown key " + QuoteValue(member.key) + DidYouMean(member.key, valid));
}

std::optional<std::string> NodeReader::GetString(const Node& node, const std::string& path) {
  if (!ExpectKind(node, Kind::kString, path, "a string")) return std::nullopt;
  if (node.string.size() > kMaxStringBytes) {
    Report(node.location, path, "string is longer than 4096 bytes");
    return std::nullopt;
  }
  if (!ValidUtf8(node.string)) {
    Report(node.location, path, "string is not valid UTF-8");
    return std::nullopt;
  }
  for (char c : node.string) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      Report(node.location, path, "string contains a control character");
      return std::nullopt;
    }
  }
  return node.string;
}

std::optional<int64_t> NodeReader::GetInteger(const Node& node, const std::string& path,
                                              int64_t min, int64_t max, std::string_view unit) {
  if (!ExpectKind(node, Kind::kInteger, path, "an integer")) return std::nullopt;
  if (node.integer_overflow || node.integer < min || node.integer > max) {
    std::string value =
        node.integer_overflow ? "a number beyond 2^63" : std::to_string(node.integer);
    Report(node.location, path,
           value + " is out of range (expected " + std::to_string(min) + ".." +
               std::to_string(max) + (unit.empty() ? "" : " " + std::string(unit)) + ")");
    return std::nullopt;
  }
  return node.integer;
}

std::optional<bool> NodeReader::GetBool(const Node& node, const std::string& path) {
  if (!ExpectKind(node, Kind::kBool, path, "a boolean (true or false)")) return std::nullopt;
  return node.boolean;
}

std::optional<std::string> NodeReader::GetChoice(const Node& node, const std::string& path,
                                                 std::span<const std::string_view> choices) {
  std::optional<std::string> value = GetString(node, path);
  if (!value) return std::nullopt;
  if (std::find(choices.begin(), choices.end(), *value) != choices.end()) return value;
  std::string list;
  for (std::string_view choice : choices) list += (list.empty() ? "" : ", ") + std::string(choice);
  Report(node.location, path,
         "invalid value " + QuoteValue(*value) + " (expected one of: " + list + ")" +
             DidYouMean(*value, choices));
  return std::nullopt;
}

}  // namespace tessera::config
