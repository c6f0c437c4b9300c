#pragma once
// Running one command in a qube and waiting for it: an exec session on a
// channel to the qube's agent (wire/agent_protocol.h), the same for every
// backend. Blocking; for `tessera cell run`, tests and benchmarks (tesserad
// runs sessions on its event loop instead, src/daemon/agent_channel.h).
//
//   ExecRequest req{.argv = {"/bin/sh", "-c", "echo hi"}, .stdout_fd = STDOUT_FILENO};
//   int status = TRY(Exec(*instance, req, StreamMode::kAuto, backend.capabilities()));

#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"

namespace tessera::backend {

struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"; empty = a minimal default (PATH, HOME, TERM)
  std::string cwd = "/";
  std::string user = "root";     // "root", a name in the qube's /etc/passwd, or "UID[:GID]"
  int stdin_fd = -1;             // the caller's descriptors; -1 = /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
};

enum class StreamMode {
  kAuto,     // pass descriptors when the backend can, else relay
  kPassFds,  // the command gets the caller's descriptors (cells)
  kRelay,    // the streams cross the channel as frames (any backend)
};

// The command's exit status (128+N when killed by signal N). A command that
// could not start is an error: errno ENOENT (127, not found), EACCES (126,
// not executable), else the agent's reason.
Result<int> Exec(const Instance& instance, const ExecRequest& request, StreamMode mode,
                 const Capabilities& capabilities);

// The same on an open channel, as session `session`.
Result<int> RunSession(int channel_fd, uint32_t session, const ExecRequest& request,
                       bool pass_fds);

}  // namespace tessera::backend
