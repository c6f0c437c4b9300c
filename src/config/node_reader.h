#pragma once
// Reading a config Node tree with diagnostics instead of exceptions: every
// wrong kind, range, encoding, duplicate or unknown key becomes a Diagnostic
// naming file:line:column and the key path, and reading goes on so that all
// problems are reported at once. The schema (schema.cc) builds on it.
//
//   class Builder : public NodeReader { ... GetInteger(node, "qubes.work.memory", 32, 1 << 20,
//   "MiB") ... };

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/document.h"
#include "config/loader.h"

namespace tessera::config {

// A key as it appears in a diagnostic path: bare if simple, else quoted like TOML.
std::string PathKey(std::string_view key);
// "qubes" + "work" -> "qubes.work".
std::string JoinPath(const std::string& path, std::string_view key);
// A value quoted for a message: control characters shown as '?', cut at 64 bytes.
std::string QuoteValue(std::string_view s);
// An absolute path with no ".." component (paths the description names on the host).
bool IsAbsoluteWithoutDotDot(std::string_view path);
// "; did you mean 'x'?" when `word` is a likely typo of one of `candidates`.
std::string DidYouMean(std::string_view word, std::span<const std::string_view> candidates);

class NodeReader {
 protected:
  using Kind = Node::Kind;
  static constexpr size_t kMaxStringBytes = 4096;

  NodeReader(const SourceInfo& source, std::vector<Diagnostic>& diagnostics)
      : source_(source), diagnostics_(diagnostics) {}

  void Report(Location location, const std::string& path, std::string message);
  bool ExpectKind(const Node& node, Kind kind, const std::string& path, std::string_view what);
  // Members in order, skipping nulls (JSON/Nix "not set") and reporting repeats.
  std::vector<const Member*> UniqueMembers(const Node& table, const std::string& path);
  void UnknownKey(const Member& member, const std::string& path,
                  std::span<const std::string_view> valid);
  // At most kMaxStringBytes of valid UTF-8 without control characters.
  std::optional<std::string> GetString(const Node& node, const std::string& path);
  std::optional<int64_t> GetInteger(const Node& node, const std::string& path, int64_t min,
                                    int64_t max, std::string_view unit);
  std::optional<bool> GetBool(const Node& node, const std::string& path);
  // A string that must be one of `choices`.
  std::optional<std::string> GetChoice(const Node& node, const std::string& path,
                                       std::span<const std::string_view> choices);

  const SourceInfo& source_;
  std::vector<Diagnostic>& diagnostics_;
};

}  // namespace tessera::config
