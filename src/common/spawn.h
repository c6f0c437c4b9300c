#pragma once
// RunProcess: the one way tessera runs a helper program (debootstrap, busybox
// --list-full, nix-instantiate, ...) and waits for it.
//
//   ProcessOptions options;
//   options.argv = {"/usr/sbin/debootstrap", "--variant=minbase", suite, root, mirror};
//   ProcessResult r = TRY(RunProcess(options));
//   if (!r.Succeeded()) return Err(r.Describe(options.argv[0]));
//
// Whatever the caller's state, the child starts clean: an empty signal mask
// and every signal at its default disposition (the daemon blocks SIGTERM and
// SIGINT for its event loop; a helper inheriting that could not be stopped),
// stdin from /dev/null, and no descriptor but 0, 1 and 2 (every other one is
// closed in the child, CLOEXEC or not). posix_spawn (vfork-like; thread-safe).

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tessera {

// Where a child's stdout or stderr goes.
enum class Output {
  kInherit,  // the caller's
  kCapture,  // a pipe read into ProcessResult::out / err
  kDiscard,  // /dev/null
};

enum class SearchPath { kNo, kYes };        // kYes: argv[0] without '/' is looked up on PATH
enum class ProcessGroup { kInherit, kOwn };  // kOwn: a timeout kills the child's whole group

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0] is the program
  // The child's environment; nullopt = the caller's.
  std::optional<std::vector<std::string>> env;
  SearchPath search_path = SearchPath::kNo;
  Output out = Output::kInherit;
  Output err = Output::kInherit;
  // Per captured stream: more than this kills the child (output_limit_exceeded).
  size_t max_capture_bytes = 16u << 20;
  // After this the child (its group with kOwn) is killed with SIGKILL (timed_out).
  std::optional<std::chrono::milliseconds> timeout;
  ProcessGroup group = ProcessGroup::kInherit;
};

struct ProcessResult {
  int exit_code = -1;   // the exit status if the child exited, else -1
  int term_signal = 0;  // the signal that ended it, else 0
  bool timed_out = false;
  bool output_limit_exceeded = false;
  std::string out;  // captured stdout (Output::kCapture)
  std::string err;  // captured stderr (Output::kCapture)

  bool Succeeded() const {
    return exit_code == 0 && term_signal == 0 && !timed_out && !output_limit_exceeded;
  }
  // "<program> exited with status 3", "<program> killed by signal 9", ...
  std::string Describe(std::string_view program) const;
};

// Starts argv and waits for it (and for EOF on the captured streams). An
// error only when the child could not be started (errno of posix_spawn:
// ENOENT, EACCES, ...) or waiting failed; how it ended is in the result.
Result<ProcessResult> RunProcess(const ProcessOptions& options);

}  // namespace tessera
