#include "common/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"

extern char** environ;

namespace tessera {
namespace {

using Clock = std::chrono::steady_clock;

// One captured stream: the parent's read end and where its bytes go.
struct Capture {
  UniqueFd read_end;
  std::string* sink = nullptr;
};

// File actions and attributes for posix_spawn; destroyed with the object.
class SpawnSetup {
 public:
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  posix_spawn_file_actions_t* actions() { return &actions_; }
  posix_spawnattr_t* attr() { return &attr_; }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

// Sets up fd `target` of the child per `mode`; a captured stream gets a pipe
// whose read end is returned in `capture`.
Status SetUpOutput(SpawnSetup& setup, int target, Output mode, std::string* sink,
                   std::vector<UniqueFd>& write_ends, Capture& capture) {
  switch (mode) {
    case Output::kInherit:
      return Ok();
    case Output::kDiscard:
      if (int rc = posix_spawn_file_actions_addopen(setup.actions(), target, "/dev/null",
                                                    O_WRONLY, 0);
          rc != 0) {
        return Err(Error::FromErrno("spawn: redirect to /dev/null", rc));
      }
      return Ok();
    case Output::kCapture: {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) return Err(Error::FromErrno("pipe"));
      capture.read_end.reset(fds[0]);
      capture.sink = sink;
      write_ends.emplace_back(fds[1]);
      // dup2 clears FD_CLOEXEC on the copy; the originals close at exec.
      if (int rc = posix_spawn_file_actions_adddup2(setup.actions(), fds[1], target); rc != 0) {
        return Err(Error::FromErrno("spawn: redirect output", rc));
      }
      return Ok();
    }
  }
  return Ok();
}

void Kill(pid_t pid, ProcessGroup group) {
  ::kill(group == ProcessGroup::kOwn ? -pid : pid, SIGKILL);
}

}  // namespace

std::string ProcessResult::Describe(std::string_view program) const {
  std::string name(program);
  if (timed_out) return name + " timed out (killed)";
  if (output_limit_exceeded) return name + " printed more than the output limit (killed)";
  if (term_signal != 0) return name + " killed by signal " + std::to_string(term_signal);
  return name + " exited with status " + std::to_string(exit_code);
}

Result<ProcessResult> RunProcess(const ProcessOptions& options) {
  if (options.argv.empty()) return Err(Error("RunProcess: empty argv", EINVAL));
  const std::string& program = options.argv[0];
  std::vector<char*> argv;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (options.env) {
    for (const std::string& e : *options.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }

  ProcessResult result;
  SpawnSetup setup;
  std::vector<UniqueFd> write_ends;
  Capture captures[2];
  if (int rc = posix_spawn_file_actions_addopen(setup.actions(), 0, "/dev/null", O_RDONLY, 0);
      rc != 0) {
    return Err(Error::FromErrno("spawn " + program + ": stdin from /dev/null", rc));
  }
  TRY(SetUpOutput(setup, 1, options.out, &result.out, write_ends, captures[0]));
  TRY(SetUpOutput(setup, 2, options.err, &result.err, write_ends, captures[1]));
  // Whatever else is open here (CLOEXEC or not, ours or a library's) stays out.
  if (int rc = posix_spawn_file_actions_addclosefrom_np(setup.actions(), 3); rc != 0) {
    return Err(Error::FromErrno("spawn " + program + ": closefrom", rc));
  }

  sigset_t empty;
  sigset_t all;
  sigemptyset(&empty);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  posix_spawnattr_setsigmask(setup.attr(), &empty);
  posix_spawnattr_setsigdefault(setup.attr(), &all);
  if (options.group == ProcessGroup::kOwn) {
    posix_spawnattr_setpgroup(setup.attr(), 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(setup.attr(), flags);

  pid_t pid = -1;
  char** env = options.env ? envp.data() : environ;
  int rc = options.search_path == SearchPath::kYes
               ? ::posix_spawnp(&pid, program.c_str(), setup.actions(), setup.attr(), argv.data(), env)
               : ::posix_spawn(&pid, program.c_str(), setup.actions(), setup.attr(), argv.data(), env);
  write_ends.clear();  // the child holds the write ends now: EOF when it is done
  if (rc != 0) return Err(Error::FromErrno("spawn " + program, rc));

  // From here on the child is reaped on every path.
  bool reaped = false;
  auto reap = ScopeGuard([&] {
    if (reaped) return;
    Kill(pid, options.group);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  });

  // Without a pipe to wait on, a timeout needs the child's pidfd.
  UniqueFd pidfd;
  bool any_capture = captures[0].read_end.valid() || captures[1].read_end.valid();
  if (options.timeout && !any_capture) {
    pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.valid()) return Err(Error::FromErrno("pidfd_open " + program));
  }

  std::optional<Clock::time_point> deadline;
  if (options.timeout) deadline = Clock::now() + *options.timeout;
  for (;;) {
    pollfd fds[3];
    Capture* owners[3] = {nullptr, nullptr, nullptr};
    nfds_t count = 0;
    for (Capture& c : captures) {
      if (!c.read_end.valid()) continue;
      fds[count] = {c.read_end.get(), POLLIN, 0};
      owners[count++] = &c;
    }
    if (pidfd.valid()) fds[count++] = {pidfd.get(), POLLIN, 0};
    if (count == 0) break;
    int wait_ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) {
        result.timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 1000));
    }
    int ready = ::poll(fds, count, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Err(Error::FromErrno("poll output of " + program));
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      if (owners[i] == nullptr) {  // the pidfd: the child has exited
        pidfd.reset();
        continue;
      }
      char buffer[65536];
      ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return Err(Error::FromErrno("read output of " + program));
      if (n == 0) {
        owners[i]->read_end.reset();
        continue;
      }
      std::string& sink = *owners[i]->sink;
      if (sink.size() + static_cast<size_t>(n) > options.max_capture_bytes) {
        result.output_limit_exceeded = true;
        break;
      }
      sink.append(buffer, static_cast<size_t>(n));
    }
    if (result.output_limit_exceeded) break;
  }
  if (result.timed_out || result.output_limit_exceeded) Kill(pid, options.group);
  // A child still writing after a kill gets EPIPE rather than blocking.
  for (Capture& c : captures) c.read_end.reset();

  int status = 0;
  TRY(Syscall("waitpid " + program, [&] { return ::waitpid(pid, &status, 0); }));
  reaped = true;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

}  // namespace tessera
