#include "config/loader.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "common/fs.h"
#include "common/scope_guard.h"
#include "config/document.h"
#include "config/nix_eval.h"

namespace tessera::config {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

LoadOutcome Fail(const std::string& file, std::string message) {
  LoadOutcome outcome;
  outcome.diagnostics.push_back({file, 0, 0, "", std::move(message)});
  return outcome;
}

LoadOutcome FromText(std::string_view text, Format format, const SourceInfo& source) {
  LoadOutcome outcome;
  std::optional<Node> root = format == Format::kToml
                                 ? ReadToml(text, source, outcome.diagnostics)
                                 : ReadJson(text, source, outcome.diagnostics);
  if (root) outcome.system = BuildSystem(*root, source, outcome.diagnostics);
  if (!outcome.diagnostics.empty()) outcome.system.reset();
  return outcome;
}

// Evaluates `path` with nix-instantiate and validates the resulting JSON. Names
// `path` as `display_name` in diagnostics.
LoadOutcome FromNixFile(const std::string& path, const std::string& display_name) {
  std::error_code ec;
  std::string absolute = std::filesystem::absolute(path, ec).lexically_normal().string();
  NixResult result = EvalNixFile(ec ? path : absolute, DefaultNixEvalOptions());
  if (!result.ok) {
    Diagnostic diagnostic{display_name, 0, 0, "", "nix evaluation failed: " + result.error_message};
    if (!result.error_file.empty()) {
      diagnostic.file = result.error_file == absolute ? display_name : result.error_file;
      diagnostic.line = result.error_line;
      diagnostic.column = result.error_column;
    }
    LoadOutcome outcome;
    outcome.diagnostics.push_back(std::move(diagnostic));
    return outcome;
  }
  return FromText(result.json, Format::kJson, SourceInfo{display_name, /*has_locations=*/false});
}

}  // namespace

std::string Diagnostic::ToString() const {
  // Appended piece by piece: `":" + std::to_string(n)` builds a temporary by
  // inserting at its front, which GCC 12 at -O3 misreads as an overlapping
  // memcpy (-Wrestrict); appending is also one allocation less per piece.
  std::string out = file.empty() ? "<input>" : file;
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
    if (column > 0) {
      out += ':';
      out += std::to_string(column);
    }
  }
  out += ": ";
  if (!path.empty()) {
    out += path;
    out += ": ";
  }
  out += message;
  return out;
}

std::optional<Format> FormatFromPath(std::string_view path) {
  if (EndsWith(path, ".toml")) return Format::kToml;
  if (EndsWith(path, ".json")) return Format::kJson;
  if (EndsWith(path, ".nix")) return Format::kNix;
  return std::nullopt;
}

LoadOutcome LoadSystem(const std::string& path) {
  if (path == kBuiltinExampleName) {
    return LoadSystemFromString(BuiltinExampleToml(), Format::kToml, path);
  }
  std::optional<Format> format = FormatFromPath(path);
  if (!format) {
    return Fail(path, "unknown format: the file name must end in .toml, .json or .nix");
  }
  // Read even Nix files first: a missing or unreadable file gets a plain message
  // instead of nix's, and the size limit applies to the top-level file.
  Result<std::string> text = ReadRegularFile(path, kMaxDocumentBytes);
  if (!text) return Fail(path, "cannot read: " + text.error().ToString());
  if (*format == Format::kNix) return FromNixFile(path, path);
  return FromText(*text, *format, SourceInfo{path, true});
}

LoadOutcome LoadSystemFromString(std::string_view text, Format format,
                                 const std::string& display_name) {
  if (format != Format::kNix) return FromText(text, format, SourceInfo{display_name, true});
  // A private directory: restricted evaluation may read the file's directory,
  // which must not be all of /tmp.
  const char* tmpdir = getenv("TMPDIR");
  std::string dir = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/tessera-config-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    return Fail(display_name, "cannot create a temporary directory for nix evaluation");
  }
  const std::string temp = dir + "/system.nix";
  auto remove = ScopeGuard([&] {
    unlink(temp.c_str());
    rmdir(dir.c_str());
  });
  if (Status written = WriteFileAtomic(temp, std::string(text), 0600, Durability::kCrashSafe);
      !written) {
    return Fail(display_name, "cannot write " + temp + ": " + written.error().ToString());
  }
  return FromNixFile(temp, display_name);
}

Result<System> LoadSystemFile(const std::string& path) {
  LoadOutcome outcome = LoadSystem(path);
  if (outcome.system) return std::move(*outcome.system);
  std::string message;
  for (const Diagnostic& diagnostic : outcome.diagnostics) {
    if (!message.empty()) message += "\n";
    message += diagnostic.ToString();
  }
  if (message.empty()) message = path + ": invalid system description";
  return Err(message);
}

}  // namespace tessera::config
