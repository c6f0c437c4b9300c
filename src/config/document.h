#pragma once
// The format-neutral document tree between the readers (TOML, JSON, the JSON that
// Nix evaluation prints) and validation. Each reader turns its syntax into a
// Node tree that remembers where every key and value came from; validation
// (schema.cc) walks one tree shape whatever the format, which is why all formats
// give the same model and the same messages.
//
//   std::vector<Diagnostic> diags;
//   std::optional<Node> root = ReadJson(text, {"system.json", true}, diags);
//   if (root) std::optional<System> system = BuildSystem(*root, source, diags);

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"

namespace tessera::config {

struct Location {
  int line = 0;  // 1-based; 0 = unknown
  int column = 0;
};

// Where a document came from, for diagnostics.
struct SourceInfo {
  std::string file;
  // False for documents without positions (evaluated Nix): messages then say so.
  bool has_locations = true;
};

struct Member;

struct Node {
  enum class Kind { kNull, kBool, kInteger, kFloat, kString, kArray, kTable, kOther };
  Kind kind = Kind::kNull;
  Location location;
  bool boolean = false;
  int64_t integer = 0;
  bool integer_overflow = false;  // JSON number beyond int64 (range checks reject it)
  double floating = 0;
  std::string string;             // kString; for kOther the type's name ("date")
  std::vector<Node> items;        // kArray
  std::vector<Member> members;    // kTable, in document order; duplicates kept
};

struct Member {
  std::string key;
  Location key_location;
  Node value;
};

// Documents nest at most this deep (bounds recursion in every later pass).
inline constexpr int kMaxDepth = 64;
// Larger inputs are refused before parsing.
inline constexpr size_t kMaxDocumentBytes = 1u << 20;

// "string", "integer", "table", ...: the name used in "expected X, got Y".
std::string_view KindName(const Node& node);

// Readers: on a syntax error they add a diagnostic and return nullopt.
std::optional<Node> ReadToml(std::string_view text, const SourceInfo& source,
                             std::vector<Diagnostic>& diagnostics);
std::optional<Node> ReadJson(std::string_view text, const SourceInfo& source,
                             std::vector<Diagnostic>& diagnostics);

// Validation: the System when the document is valid, else nullopt with every
// problem added to `diagnostics`.
std::optional<System> BuildSystem(const Node& root, const SourceInfo& source,
                                  std::vector<Diagnostic>& diagnostics);

// Turns byte offsets into 1-based line/column.
class LineIndex {
 public:
  explicit LineIndex(std::string_view text);
  Location At(size_t offset) const;

 private:
  std::vector<size_t> line_starts_;
  size_t size_;
};

}  // namespace tessera::config
