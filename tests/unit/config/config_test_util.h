#pragma once
// Helpers shared by the config unit tests.

#include <gmock/gmock.h>

#include <string>
#include <vector>

#include "config/loader.h"

namespace tessera::config::testing {

inline std::string SourcePath(const std::string& relative) {
  return std::string(TESSERA_SOURCE_DIR) + "/" + relative;
}

// Matches a Diagnostic at line:column with the given path whose message
// contains `text`.
MATCHER_P4(DiagAt, line, column, path, text,
           std::string("diagnostic at ") + std::to_string(line) + ":" + std::to_string(column) +
               " " + path + " containing \"" + text + "\"") {
  return arg.line == line && arg.column == column && arg.path == path &&
         arg.message.find(text) != std::string::npos;
}

// Matches a Diagnostic with the given path whose message contains `text`
// (any location).
MATCHER_P2(DiagPath, path, text, std::string("diagnostic ") + path + " containing \"" + text + "\"") {
  return arg.path == path && arg.message.find(text) != std::string::npos;
}

inline std::string Dump(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics) out += d.ToString() + "\n";
  return out;
}

inline LoadOutcome LoadToml(const std::string& text) {
  return LoadSystemFromString(text, Format::kToml, "t.toml");
}
inline LoadOutcome LoadJson(const std::string& text) {
  return LoadSystemFromString(text, Format::kJson, "t.json");
}

// A valid prefix: one template and a network qube, for tests that add a qube.
inline const char kBase[] = R"(
[qubes.base]
class = "template"
[qubes.net]
class = "standalone"
provides_network = true
)";

}  // namespace tessera::config::testing
