#include "config/nix_eval.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "common/fs.h"
#include "common/unique_fd.h"

extern char** environ;

namespace tessera::config {
namespace {

using Clock = std::chrono::steady_clock;

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

  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.error_message = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.error_message = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);

  std::vector<std::string> args = {options.program,
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
                                   "--",
                                   path};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // dup2 clears FD_CLOEXEC on the target; the pipe originals close on exec.
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // A new process group, so a timeout kills nix and anything it started.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t default_signals;
  sigemptyset(&default_signals);
  sigaddset(&default_signals, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &default_signals);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, options.program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  out_write.reset();
  err_write.reset();
  if (rc != 0) {
    result.error_message = "cannot run " + options.program + ": " + std::strerror(rc) +
                           (rc == ENOENT ? " (install Nix: Debian package nix-bin)" : "");
    return result;
  }

  std::string out_text;
  std::string err_text;
  bool timed_out = false;
  bool too_big = false;
  const auto deadline = Clock::now() + options.timeout;
  pollfd fds[2] = {{out_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
  std::string* sinks[2] = {&out_text, &err_text};
  int open_count = 2;
  while (open_count > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int ready = poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[65536];
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        --open_count;
        continue;
      }
      sinks[i]->append(buffer, static_cast<size_t>(n));
      if (sinks[i]->size() > options.max_output_bytes) too_big = true;
    }
    if (too_big) break;
  }
  if (timed_out || too_big) kill(-pid, SIGKILL);  // the group we created: nix and its children
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  if (timed_out) {
    result.error_message = "nix evaluation did not finish within " +
                           std::to_string(options.timeout.count() / 1000) + " s (killed)";
    return result;
  }
  if (too_big) {
    result.error_message = "nix evaluation printed more than " +
                           std::to_string(options.max_output_bytes >> 20) + " MiB (killed)";
    return result;
  }
  if (WIFSIGNALED(status)) {
    result.error_message = options.program + " was killed by signal " +
                           std::to_string(WTERMSIG(status));
    return result;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // stdout may hold half a document ({"a":) on failure: never use it.
    ParseNixError(err_text, result);
    return result;
  }
  result.ok = true;
  result.json = std::move(out_text);
  return result;
}

}  // namespace tessera::config
