#pragma once
// Loading the system description: TOML, JSON or Nix text in, a validated
// config::System (or every problem found) out.
//
//   config::LoadOutcome outcome = config::LoadSystem("/etc/tessera/system.toml");
//   for (const config::Diagnostic& d : outcome.diagnostics)
//     std::fprintf(stderr, "%s\n", d.ToString().c_str());
//   if (!outcome.system) return 1;     // never a half-valid model
//
//   // Or, when one Error is enough:
//   config::System system = TRY(config::LoadSystemFile(path));
//
// All three formats go through the same validation, so they produce the same
// model for the same description. docs/CONFIG.md describes the document.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "config/model.h"

namespace tessera::config {

enum class Format { kToml, kJson, kNix };

// One problem found in a description. Unknown parts are 0 / empty.
struct Diagnostic {
  std::string file;
  int line = 0;    // 1-based; 0 = unknown (e.g. values produced by Nix evaluation)
  int column = 0;  // 1-based; 0 = unknown
  std::string path;  // where in the document, e.g. "qubes.work.netvm"
  std::string message;

  // "file:line:col: qubes.work.netvm: message", leaving out unknown parts.
  std::string ToString() const;
  bool operator==(const Diagnostic&) const = default;
};

struct LoadOutcome {
  // Present only when there are no diagnostics: a System always passed validation.
  std::optional<System> system;
  // Every error found, in document order (all of them, not only the first).
  std::vector<Diagnostic> diagnostics;
};

// The format implied by a file name: .toml, .json or .nix.
std::optional<Format> FormatFromPath(std::string_view path);

// Reads and validates a description; the format comes from the extension. A .nix
// file is evaluated with `nix-instantiate --eval --strict --json` (restricted
// evaluation: only files under the description's directory and NIX_PATH).
LoadOutcome LoadSystem(const std::string& path);

// Validates text held in memory. `display_name` is used as the file name in
// diagnostics. Nix text is written to a temporary file first, so relative
// imports do not resolve.
LoadOutcome LoadSystemFromString(std::string_view text, Format format,
                                 const std::string& display_name);

// LoadSystem with every diagnostic joined (one per line) into a single Error.
Result<System> LoadSystemFile(const std::string& path);

// The normalised model (defaults filled in) as pretty JSON with sorted keys. The
// output is a valid description: loading it gives back the same System, and the
// same System always gives byte-identical text.
std::string ToJson(const System& system);

// The built-in example system (examples/system.toml, embedded at build time).
std::string_view BuiltinExampleToml();
// The display name used for it: "builtin:example".
inline constexpr std::string_view kBuiltinExampleName = "builtin:example";

}  // namespace tessera::config
