#pragma once
// The processes of one session (setsid) as /proc shows them: how the agent
// finds what a finished command left running. The agent is PID 1 of the
// qube's pid namespace and its /proc is that namespace's, so every process
// of the qube is visible, and only those.

#include <sys/types.h>

#include <string_view>

namespace tessera::agent {

// The session id in the text of /proc/PID/stat (field 6, after the command
// name in parentheses, which may itself hold ") "); -1 if malformed.
pid_t SessionOfStat(std::string_view stat);

// Sends `signo` to every process whose session id is `session_id`; returns
// how many there were.
int SignalSession(pid_t session_id, int signo, const char* proc = "/proc");

}  // namespace tessera::agent
