#pragma once
// Runs the real `tessera` binary (TESSERA_CLI, set by tests/CMakeLists.txt),
// or any program, without a shell and captures its exit code, stdout and
// stderr. For tests of the command line itself.
//
//   CliRun run = RunCli({"config", "check", "--example"});
//   EXPECT_EQ(run.exit_code, 0);

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/fs.h"

namespace tessera::testing {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is a path, or a name looked up in PATH) without a
// shell. `env` entries ("NAME=value") are added to the environment;
// TESSERA_CONFIG is always cleared first.
inline CliRun RunProgram(std::vector<std::string> argv_in,
                         const std::vector<std::string>& env = {}) {
  char out_path[] = "/tmp/tessera-cli-out-XXXXXX";
  char err_path[] = "/tmp/tessera-cli-err-XXXXXX";
  int out_fd = mkostemp(out_path, O_CLOEXEC);
  int err_fd = mkostemp(err_path, O_CLOEXEC);
  CliRun run;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    std::vector<char*> argv;
    for (std::string& arg : argv_in) argv.push_back(arg.data());
    argv.push_back(nullptr);
    unsetenv("TESSERA_CONFIG");
    for (const std::string& entry : env) putenv(const_cast<char*>(entry.c_str()));
    execvp(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = ReadFile(out_path).value_or("");
  run.err = ReadFile(err_path).value_or("");
  close(out_fd);
  close(err_fd);
  unlink(out_path);
  unlink(err_path);
  return run;
}

// The tessera binary with `args`.
inline CliRun RunCli(const std::vector<std::string>& args,
                     const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {TESSERA_CLI};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(std::move(argv), env);
}

}  // namespace tessera::testing
