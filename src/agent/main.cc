// tessera-agent: PID 1 of every cell. It serves exec sessions on channels the
// host opens to the control socket it inherited (--control-fd), reaps every
// orphan, and on the host's SIGTERM ends everything in the cell and exits.
// Commands run in the qube's inner user and mount namespaces (--userns-fd,
// --mntns-fd); the agent stays in the outer ones, non-dumpable, so the qube's
// root can neither trace it nor read its memory or descriptors. Built static:
// templates carry no libc. Protocol: wire/agent_protocol.h, docs/CELL.md.

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/agent.h"

namespace {

// "--NAME=N" with N an open descriptor >= 3; -1 when absent.
bool ParseFdFlag(const std::string& arg, const char* name, int* out) {
  std::string prefix = std::string("--") + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  *out = std::atoi(arg.c_str() + prefix.size());
  return true;
}

bool ValidFd(int fd) { return fd >= 3 && ::fcntl(fd, F_GETFD) >= 0; }

}  // namespace

int main(int argc, char** argv) {
  int control_fd = -1;
  tessera::agent::CommandNamespaces ns;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (ParseFdFlag(a, "control-fd", &control_fd) || ParseFdFlag(a, "userns-fd", &ns.user) ||
        ParseFdFlag(a, "mntns-fd", &ns.mount)) {
      continue;
    }
    if (a.rfind("--drop-caps=", 0) == 0) {
      ns.drop_caps = std::strtoull(a.c_str() + 12, nullptr, 16);
      continue;
    }
    std::fprintf(stderr, "tessera-agent: unknown argument %s\n", a.c_str());
    return 2;
  }
  bool ns_ok = (ns.user < 0 && ns.mount < 0) || (ValidFd(ns.user) && ValidFd(ns.mount));
  if (!ValidFd(control_fd) || !ns_ok) {
    std::fprintf(stderr,
                 "tessera-agent: usage: tessera-agent --control-fd=N [--userns-fd=N "
                 "--mntns-fd=N --drop-caps=HEX] (open descriptors >= 3)\n");
    return 2;
  }
  for (int fd : {control_fd, ns.user, ns.mount}) {
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  // Out of the qube root's reach: ptrace, process_vm_readv, pidfd_getfd and
  // /proc/1/{mem,fd,environ} all need CAP_SYS_PTRACE in the user namespace
  // our memory belongs to (the outer one, where qube processes hold nothing).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // Orphans of the cell come to us when we are PID 1; outside a pid namespace
  // (tests) the subreaper flag gives the same duty.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  // Dispositions survive exec only when ignored (a host shell may have set
  // SIGINT or SIGQUIT to SIG_IGN): reset them once, so commands start with
  // every signal at its default.
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
  }
  // The host may shield the agent from the OOM killer; its commands are reset
  // to 0 (and, the host having used the legacy interface, cannot go back).
  bool reset_oom_score = false;
  int adj = ::open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
  if (adj >= 0) {
    char buf[16] = {};
    reset_oom_score = ::read(adj, buf, sizeof(buf) - 1) > 0 && std::atoi(buf) != 0;
    ::close(adj);
  }
  tessera::agent::Agent agent(tessera::UniqueFd(control_fd), ns, reset_oom_score);
  return agent.Run();
}
