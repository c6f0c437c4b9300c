#pragma once
// Runs the real `tessera` binary (TESSERA_CLI, set by tests/CMakeLists.txt)
// without a shell and captures its exit code, stdout and stderr. For tests of
// the command line itself.
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

// `env` entries ("NAME=value") are added to the environment; TESSERA_CONFIG
// is always cleared first.
inline CliRun RunCli(const std::vector<std::string>& args,
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
    std::string cli = TESSERA_CLI;
    argv.push_back(cli.data());
    std::vector<std::string> copy = args;
    for (std::string& arg : copy) argv.push_back(arg.data());
    argv.push_back(nullptr);
    unsetenv("TESSERA_CONFIG");
    for (const std::string& entry : env) putenv(const_cast<char*>(entry.c_str()));
    execv(cli.c_str(), argv.data());
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

}  // namespace tessera::testing
