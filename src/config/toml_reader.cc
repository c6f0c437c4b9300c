// TOML -> Node, with toml++ in its non-throwing, header-only mode. Only this file
// includes toml++, so its configuration macros are consistent by construction.

#define TOML_EXCEPTIONS 0
#define TOML_HEADER_ONLY 1
#define TOML_ENABLE_FORMATTERS 0
#include <toml++/toml.h>

#include <algorithm>
#include <string>

#include "config/document.h"

namespace tessera::config {
namespace {

Location ToLocation(const toml::source_region& region) {
  return Location{static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
}

Node Convert(const toml::node& in, int depth, bool& too_deep) {
  Node out;
  out.location = ToLocation(in.source());
  if (depth > kMaxDepth) {
    too_deep = true;
    return out;
  }
  switch (in.type()) {
    case toml::node_type::string:
      out.kind = Node::Kind::kString;
      out.string = in.as_string()->get();
      break;
    case toml::node_type::integer:
      out.kind = Node::Kind::kInteger;
      out.integer = in.as_integer()->get();
      break;
    case toml::node_type::floating_point:
      out.kind = Node::Kind::kFloat;
      out.floating = in.as_floating_point()->get();
      break;
    case toml::node_type::boolean:
      out.kind = Node::Kind::kBool;
      out.boolean = in.as_boolean()->get();
      break;
    case toml::node_type::array:
      out.kind = Node::Kind::kArray;
      for (const toml::node& item : *in.as_array()) {
        out.items.push_back(Convert(item, depth + 1, too_deep));
      }
      break;
    case toml::node_type::table:
      out.kind = Node::Kind::kTable;
      for (const auto& [key, value] : *in.as_table()) {
        Member member;
        member.key = std::string(key.str());
        member.key_location = ToLocation(key.source());
        member.value = Convert(value, depth + 1, too_deep);
        out.members.push_back(std::move(member));
      }
      break;
    case toml::node_type::date:
      out.kind = Node::Kind::kOther;
      out.string = "date";
      break;
    case toml::node_type::time:
      out.kind = Node::Kind::kOther;
      out.string = "time";
      break;
    case toml::node_type::date_time:
      out.kind = Node::Kind::kOther;
      out.string = "date-time";
      break;
    case toml::node_type::none:
      out.kind = Node::Kind::kNull;
      break;
  }
  return out;
}

// A pre-scan with a tiny TOML lexer (strings, comments, lines) that refuses two
// kinds of input before toml++ sees them:
//
// - Deep dotted keys. toml++ limits inline nesting (TOML_MAX_NESTED_VALUES) but
//   not "a.a.a... = 1" with tens of thousands of parts, which nests tables so
//   deep that building or destroying them overflows the stack. Dotted keys and
//   headers never span lines, so capping the dots per line (outside strings and
//   comments) caps that nesting.
// - Non-ASCII characters where toml++ 3.3 asks "is this whitespace?":
//   outside strings and comments, and after a backslash in a multi-line basic
//   string. Its generated is_non_ascii_horizontal_whitespace() reaches
//   __builtin_unreachable() for many code points (e.g. U+048B), which is
//   undefined behaviour (found by tests/fuzz/config_fuzz.cc). Outside strings
//   such characters are invalid TOML 1.0 anyway.
constexpr int kMaxDotsPerLine = 64;

struct ScanProblem {
  int line = 0;
  std::string message;
};

std::optional<ScanProblem> PreScan(std::string_view text) {
  int line = 1;
  int dots = 0;
  size_t i = 0;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // byte order mark
  auto starts = [&](std::string_view token) { return text.substr(i, token.size()) == token; };
  auto non_ascii = [](char c) { return static_cast<unsigned char>(c) >= 0x80; };
  while (i < text.size()) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      ++i;
    } else if (c == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
    } else if (starts("\"\"\"") || starts("'''")) {
      std::string_view close = text.substr(i, 3);
      bool basic = c == '"';
      i += 3;
      while (i < text.size() && !starts(close)) {
        if (text[i] == '\n') ++line;
        if (basic && text[i] == '\\') {
          // Skip what toml++ would test for whitespace after the backslash.
          size_t j = i + 1;
          while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r' ||
                                     text[j] == '\n')) {
            if (text[j] == '\n') ++line;
            ++j;
          }
          if (j < text.size() && non_ascii(text[j])) {
            return ScanProblem{line, "non-ASCII character after a backslash in a multi-line "
                                     "string (put it on its own or escape it as \\uXXXX)"};
          }
          i = j > i + 1 ? j : i + 2;
          continue;
        }
        ++i;
      }
      dots = 0;  // the line changed (or the string ended the document)
      i += 3;
    } else if (c == '"' || c == '\'') {
      ++i;
      while (i < text.size() && text[i] != c && text[i] != '\n') {
        i += (c == '"' && text[i] == '\\') ? 2 : 1;
      }
      if (i < text.size() && text[i] == c) ++i;
    } else if (non_ascii(c)) {
      return ScanProblem{line, "non-ASCII character outside a string (TOML bare keys are "
                               "ASCII; quote the key)"};
    } else {
      if (c == '.' && ++dots > kMaxDotsPerLine) {
        return ScanProblem{line, "more than " + std::to_string(kMaxDotsPerLine) +
                                     " dots on one line (dotted keys nest too deep)"};
      }
      ++i;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Node> ReadToml(std::string_view text, const SourceInfo& source,
                             std::vector<Diagnostic>& diagnostics) {
  if (text.size() > kMaxDocumentBytes) {
    diagnostics.push_back({source.file, 0, 0, "", "document is larger than 1 MiB"});
    return std::nullopt;
  }
  if (std::optional<ScanProblem> problem = PreScan(text)) {
    diagnostics.push_back({source.file, problem->line, 0, "", problem->message});
    return std::nullopt;
  }
  // toml++'s whitespace test is undefined for many non-ASCII code points (see
  // PreScan). In valid TOML they occur only inside strings and comments, where
  // it is not asked, so first parse a copy with every non-ASCII byte replaced by
  // '~' (legal in strings and comments, illegal everywhere else): if that copy
  // parses, every non-ASCII byte of the original sits where toml++ never tests
  // it for whitespace, and parsing the original is safe. The copy's error is
  // reported otherwise (its columns count bytes for earlier non-ASCII text).
  auto non_ascii = [](char c) { return static_cast<unsigned char>(c) >= 0x80; };
  if (std::any_of(text.begin(), text.end(), non_ascii)) {
    std::string ascii(text);
    size_t start = ascii.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
    for (size_t i = start; i < ascii.size(); ++i) {
      if (non_ascii(ascii[i])) ascii[i] = '~';
    }
    toml::parse_result probe = toml::parse(std::string_view(ascii), source.file);
    if (!probe) {
      Location at = ToLocation(probe.error().source());
      diagnostics.push_back({source.file, at.line, at.column, "",
                             "TOML syntax error: " + std::string(probe.error().description())});
      return std::nullopt;
    }
  }
  toml::parse_result result = toml::parse(text, source.file);
  if (!result) {
    const toml::parse_error& error = result.error();
    Location at = ToLocation(error.source());
    diagnostics.push_back({source.file, at.line, at.column, "",
                           "TOML syntax error: " + std::string(error.description())});
    return std::nullopt;
  }
  bool too_deep = false;
  Node root = Convert(result.table(), 0, too_deep);
  root.location = Location{1, 1};
  if (too_deep) {
    diagnostics.push_back({source.file, 0, 0, "",
                           "document nests deeper than " + std::to_string(kMaxDepth) + " levels"});
    return std::nullopt;
  }
  return root;
}

}  // namespace tessera::config
