#pragma once
// Evaluating a Nix description with the real evaluator:
//
//   nix-instantiate --eval --strict --json --readonly-mode
//       --option restrict-eval true --option allow-import-from-derivation false
//       -I <directory of FILE> --argstr file FILE --expr kNixAutoCall
//
// where kNixAutoCall imports FILE and, when it is a function, calls it with
// no arguments ({}), so a top-level function whose arguments all have defaults
// works (nix-instantiate alone refuses: "cannot convert a function to JSON").
// Spawned directly (RunProcess, common/spawn.h: PATH lookup, no shell, clean
// signal state), stdin /dev/null, stdout and stderr captured, killed with its
// process group after a timeout. Restricted evaluation lets the expression
// read only files under its own directory and NIX_PATH entries (no
// builtins.readFile "/etc/shadow", no fetching); --readonly-mode keeps the Nix
// store untouched.
//
//   NixResult r = EvalNixFile("/etc/tessera/system.nix", NixEvalOptions{});
//   if (!r.ok) ... r.error_message, r.error_file, r.error_line ...

#include <chrono>
#include <string>

namespace tessera::config {

// The expression nix evaluates: FILE (passed as the string `file`), called
// with {} when it is a function.
inline constexpr const char* kNixAutoCall =
    "{ file }: let f = import file; in if builtins.isFunction f then f { } else f";

struct NixEvalOptions {
  // The evaluator to run; looked up on PATH when it has no '/'. The environment
  // variable TESSERA_NIX_INSTANTIATE overrides the default.
  std::string program = "nix-instantiate";
  std::chrono::milliseconds timeout{30000};
  size_t max_output_bytes = 16u << 20;
};

// The options with TESSERA_NIX_INSTANTIATE applied.
NixEvalOptions DefaultNixEvalOptions();

struct NixResult {
  bool ok = false;
  std::string json;  // stdout on success
  // On failure: nix's own error text (first "error:" paragraph, without the
  // nixbld warning noise) and the location nix reported ("at FILE:LINE:COL"),
  // or why the evaluator could not run (missing, timeout, killed).
  std::string error_message;
  std::string error_file;
  int error_line = 0;
  int error_column = 0;
};

// `path` should be absolute (it is made absolute if not).
NixResult EvalNixFile(const std::string& path, const NixEvalOptions& options);

// Turns nix-instantiate's stderr into NixResult's error fields (exposed for tests).
void ParseNixError(const std::string& stderr_text, NixResult& result);

}  // namespace tessera::config
