// time_command: wall time of one command, from spawn to reaped, in
// milliseconds on stdout. Used by scripts/bench-daemon.sh so that a timing
// holds the command's own cost and not the shell's fork of itself.
//
//   time_command [--stderr FILE] -- CMD [ARG...]
//
// The command's stdin and stdout are /dev/null; its stderr goes to FILE (or
// /dev/null). Exit status: the command's (128+N if killed by signal N), or 2
// on a usage or spawn error.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

extern char** environ;

int main(int argc, char** argv) {
  const char* err_file = "/dev/null";
  int i = 1;
  if (i + 1 < argc && std::string(argv[i]) == "--stderr") {
    err_file = argv[i + 1];
    i += 2;
  }
  if (i >= argc || std::string(argv[i]) != "--" || i + 1 >= argc) {
    std::fprintf(stderr, "usage: time_command [--stderr FILE] -- CMD [ARG...]\n");
    return 2;
  }
  char** cmd = argv + i + 1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, err_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  timespec t0;
  timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid;
  int rc = posix_spawnp(&pid, cmd[0], &actions, nullptr, cmd, environ);
  if (rc != 0) {
    std::fprintf(stderr, "time_command: cannot run %s: %s\n", cmd[0], std::strerror(rc));
    return 2;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = static_cast<double>(t1.tv_sec - t0.tv_sec) * 1e3 +
              static_cast<double>(t1.tv_nsec - t0.tv_nsec) / 1e6;
  std::printf("%.3f\n", ms);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
