#include "config/nix_eval.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "common/fs.h"
#include "common/spawn.h"

namespace tessera::config {
namespace {

std::string Trim(std::string_view s) {
  size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  size_t end = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(begin, end - begin + 1));
}

// Parses "at /path/file.nix:12:5:" into its parts.
bool ParseAtLine(const std::string& line, std::string& file, int& line_no, int& column) {
  std::string text = Trim(line);
  if (text.rfind("at ", 0) != 0 || text.back() != ':') return false;
  text = text.substr(3, text.size() - 4);
  size_t col_colon = text.rfind(':');
  if (col_colon == std::string::npos) return false;
  size_t line_colon = text.rfind(':', col_colon - 1);
  if (line_colon == std::string::npos || line_colon == 0) return false;
  try {
    line_no = std::stoi(text.substr(line_colon + 1, col_colon - line_colon - 1));
    column = std::stoi(text.substr(col_colon + 1));
  } catch (...) {  // not a number: not a location line
    return false;
  }
  file = text.substr(0, line_colon);
  return true;
}

}  // namespace

NixEvalOptions DefaultNixEvalOptions() {
  NixEvalOptions options;
  if (const char* program = std::getenv("TESSERA_NIX_INSTANTIATE"); program && *program) {
    options.program = program;
  }
  return options;
}

void ParseNixError(const std::string& stderr_text, NixResult& result) {
  std::istringstream in(stderr_text);
  std::string line;
  std::string message;
  bool started = false;
  while (std::getline(in, line)) {
    std::string text = Trim(line);
    if (!started) {
      if (text.rfind("error: ", 0) == 0) {
        started = true;
        message = text.substr(7);
      }
      continue;
    }
    if (text.empty()) continue;
    if (ParseAtLine(text, result.error_file, result.error_line, result.error_column)) break;
    if (text.rfind("(use '--show-trace'", 0) == 0) break;
    // Source excerpt lines: "12| let x = ..." and "|     ^".
    size_t digits = text.find_first_not_of("0123456789");
    if (digits != std::string::npos && text[digits] == '|') continue;
    if (message.size() < 1024) message += " " + text;
  }
  if (message.empty()) {
    // No "error:" line: keep whatever nix said, minus the nixbld warning noise.
    std::istringstream again(stderr_text);
    while (std::getline(again, line)) {
      std::string text = Trim(line);
      if (text.empty() || text.find("'nixbld'") != std::string::npos) continue;
      if (message.size() < 1024) message += (message.empty() ? "" : " ") + text;
    }
    if (message.empty()) message = "evaluation failed without a message";
  }
  result.error_message = message;
}

NixResult EvalNixFile(const std::string& input_path, const NixEvalOptions& options) {
  NixResult result;
  std::error_code ec;
  std::string path = std::filesystem::absolute(input_path, ec).lexically_normal().string();
  if (ec) path = input_path;
  std::string dir = DirName(path);

  ProcessOptions process;
  process.argv = {options.program,
                  "--eval",
                  "--strict",
                  "--json",
                  "--readonly-mode",
                  "--option",
                  "restrict-eval",
                  "true",
                  "--option",
                  "allow-import-from-derivation",
                  "false",
                  "-I",
                  dir,
                  "--argstr",
                  "file",
                  path,
                  "--expr",
                  kNixAutoCall};
  process.search_path = SearchPath::kYes;
  process.out = Output::kCapture;
  process.err = Output::kCapture;
  process.max_capture_bytes = options.max_output_bytes;
  process.timeout = options.timeout;
  // A group of its own, so a timeout kills nix and anything it started.
  process.group = ProcessGroup::kOwn;
  Result<ProcessResult> run = RunProcess(process);
  if (!run) {
    int rc = run.error().errno_value();
    result.error_message = "cannot run " + options.program + ": " +
                           (rc != 0 ? std::strerror(rc) : run.error().message()) +
                           (rc == ENOENT ? " (install Nix: Debian package nix-bin)" : "");
    return result;
  }
  if (run->timed_out) {
    result.error_message = "nix evaluation did not finish within " +
                           std::to_string(options.timeout.count() / 1000) + " s (killed)";
    return result;
  }
  if (run->output_limit_exceeded) {
    result.error_message = "nix evaluation printed more than " +
                           std::to_string(options.max_output_bytes >> 20) + " MiB (killed)";
    return result;
  }
  if (run->term_signal != 0) {
    result.error_message = options.program + " was killed by signal " +
                           std::to_string(run->term_signal);
    return result;
  }
  if (run->exit_code != 0) {
    // stdout may hold half a document ({"a":) on failure: never use it.
    ParseNixError(run->err, result);
    if (result.error_file == "\u00abstring\u00bb") {
      // The location is in kNixAutoCall, not in anything the user wrote:
      // the call of a top-level function that has an argument without default.
      result.error_file.clear();
      result.error_line = 0;
      result.error_column = 0;
      result.error_message +=
          " (a top-level function is called with no arguments: give every argument a default)";
    }
    return result;
  }
  result.ok = true;
  result.json = std::move(run->out);
  return result;
}

}  // namespace tessera::config
