#pragma once
// What the static qube tools share (tessera-copy, tessera-open,
// tessera-clipboard). Those that make a call run `tessera-call TARGET SERVICE SELF ARGS...` with
// themselves as the local program, so their stdout is the service's stdin
// and their stdin the service's stdout.
//
//   int status = tessera::agent::CallWithSelf("@dispvm", "qubes.OpenInVM", {"--send", file});

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/path_search.h"

namespace tessera::agent {

// The last component of `path` ("a/b/" -> "b").
inline std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

using tessera::FindOnPath;
using tessera::IsExecutable;

// Runs tessera-call (beside this executable) for TARGET SERVICE with this
// executable and `self_args` as the local program; its exit status (the
// service's, else the local program's; 125 when it cannot be run).
inline int CallWithSelf(const std::string& target, const std::string& service,
                        const std::vector<std::string>& self_args) {
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return 125;
  exe[n] = '\0';
  std::string self(exe);
  std::string call = self.substr(0, self.rfind('/')) + "/tessera-call";
  std::vector<std::string> cmd = {call, target, service, self};
  cmd.insert(cmd.end(), self_args.begin(), self_args.end());
  std::vector<char*> argv;
  for (auto& c : cmd) argv.push_back(c.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return 125;
  if (pid == 0) {
    ::execv(call.c_str(), argv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", call.c_str(), std::strerror(errno));
    _exit(125);
  }
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

}  // namespace tessera::agent
