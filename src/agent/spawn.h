#pragma once
// How tessera-agent starts a session's command: fork, join the qube's inner
// user and mount namespaces (the agent itself stays outside them, out of reach
// of the qube's root; docs/CELL.md "Agent"), become the requested user, exec.
//
//   Spawned s = TRY(SpawnCommand(request));
//   ... poll s.report: EOF = the command was exec'd; a SpawnReport with a
//   code = it failed; code 0 with a descriptor attached = the master of the
//   pty a tty session's command got (EOF or a failure follows).

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "wire/agent_protocol.h"

namespace tessera::agent {

// The inner namespaces commands run in (-1: none given, commands share the
// agent's; only outside a cell, e.g. in tests of the agent itself).
struct CommandNamespaces {
  int user = -1;
  int mount = -1;
  // Capabilities dropped from the bounding set of every command. Joining a
  // user namespace (setns) gives a full bounding set back, so the drop the
  // cell's setup made must be repeated after it.
  uint64_t drop_caps = 0;
};

struct SpawnRequest {
  const wire::OpenMessage* message = nullptr;
  int stdio[3] = {-1, -1, -1};  // the command's 0, 1, 2 (-1 = /dev/null)
  CommandNamespaces namespaces;
  bool reset_oom_score = false;  // the agent is shielded from the OOM killer; commands are not
};

// What a child that could not exec writes to the report pipe (one write,
// below PIPE_BUF, so it arrives whole).
struct SpawnReport {
  int code = 125;  // 127 not found, 126 not executable, 125 anything else; 0 pty master
  int error = 0;   // errno of the failed step
  char message[200] = {};
};

struct Spawned {
  pid_t pid = -1;
  UniqueFd report;  // SOCK_SEQPACKET; EOF without a failure report = exec succeeded
};

Result<Spawned> SpawnCommand(const SpawnRequest& request);

// "cannot run X: reason" for a report, as sent back in an error frame.
std::string DescribeReport(const SpawnReport& report, const std::string& program);

}  // namespace tessera::agent
