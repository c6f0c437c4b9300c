// tessera-agent: PID 1 of every cell. It accepts connections on the control
// socket it inherited from the host (fd given by --control-fd), runs one exec
// request per connection in a forked handler, reaps every orphan, and on SIGTERM
// terminates everything in the cell and exits. Built static: templates carry no
// libc. Protocol: agent/protocol.h, docs/CELL.md.

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "agent/protocol.h"
#include "common/unique_fd.h"

namespace tessera::agent {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home = "/root";
};

bool ParseId(const std::string& s, unsigned long* out) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::strtoul(s.c_str(), nullptr, 10);
  return *out <= 65535;
}

// "root", "UID[:GID]", or a name from the cell's own /etc/passwd.
bool ResolveUser(const std::string& user, Credentials* creds, std::string* error) {
  if (user == "root") return true;
  unsigned long uid = 0;
  unsigned long gid = 0;
  size_t colon = user.find(':');
  if (ParseId(user.substr(0, colon), &uid) &&
      (colon == std::string::npos || ParseId(user.substr(colon + 1), &gid))) {
    creds->uid = static_cast<uid_t>(uid);
    creds->gid = static_cast<gid_t>(colon == std::string::npos ? uid : gid);
    creds->home = "/";
    return true;
  }
  UniqueFd fd(::open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    *error = "no /etc/passwd in the cell to look up user " + user;
    return false;
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0 && text.size() < (1u << 20)) {
    text.append(buf, static_cast<size_t>(n));
  }
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    std::vector<std::string> fields;
    size_t start = 0;
    for (;;) {
      size_t c = line.find(':', start);
      fields.push_back(line.substr(start, c == std::string::npos ? std::string::npos : c - start));
      if (c == std::string::npos) break;
      start = c + 1;
    }
    if (fields.size() < 6 || fields[0] != user) continue;
    if (!ParseId(fields[2], &uid) || !ParseId(fields[3], &gid)) break;
    creds->uid = static_cast<uid_t>(uid);
    creds->gid = static_cast<gid_t>(gid);
    creds->home = fields[5].empty() ? "/" : fields[5];
    return true;
  }
  *error = "unknown user " + user;
  return false;
}

void SendReply(int conn, const Reply& reply) {
  (void)SendFrame(conn, SerializeReply(reply));
}

void SendError(int conn, int code, const std::string& message) {
  Reply r;
  r.kind = Reply::Kind::kError;
  r.code = code;
  r.message = message;
  SendReply(conn, r);
}

// Handles one connection in a forked process and exits.
[[noreturn]] void HandleConnection(int conn) {
  std::vector<UniqueFd> fds;
  auto payload = ReadFrame(conn, &fds);
  if (!payload) {
    SendError(conn, 125, payload.error().ToString());
    _exit(1);
  }
  auto parsed = ParseExec(*payload);
  if (!parsed) {
    SendError(conn, 125, parsed.error().ToString());
    _exit(1);
  }
  ExecMessage& m = *parsed;
  if (fds.size() != m.nfds) {
    SendError(conn, 125, "exec: attached fd count does not match \"nfds\"");
    _exit(1);
  }
  Credentials creds;
  std::string error;
  if (!ResolveUser(m.user, &creds, &error)) {
    SendError(conn, 125, error);
    _exit(1);
  }
  // Everything the child needs is prepared before fork (no allocation after).
  std::vector<std::string> env = m.env;
  if (env.empty()) {
    env = {std::string("PATH=") + kDefaultPath, "HOME=" + creds.home, "TERM=xterm"};
  }
  std::string path = kDefaultPath;
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  std::vector<char*> argv;
  for (auto& a : m.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  // Candidate program paths (PATH search done here, not with execvpe after fork).
  std::vector<std::string> candidates;
  if (m.argv[0].find('/') != std::string::npos) {
    candidates.push_back(m.argv[0]);
  } else {
    size_t start = 0;
    for (;;) {
      size_t c = path.find(':', start);
      std::string dir = path.substr(start, c == std::string::npos ? std::string::npos : c - start);
      if (dir.empty()) dir = ".";
      candidates.push_back(dir + "/" + m.argv[0]);
      if (c == std::string::npos) break;
      start = c + 1;
    }
  }
  int stdio[3];
  for (int i = 0; i < 3; ++i) stdio[i] = m.stdio[i] >= 0 ? fds[m.stdio[i]].get() : -1;

  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    SendError(conn, 125, std::string("pipe2: ") + std::strerror(errno));
    _exit(1);
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    SendError(conn, 125, std::string("fork: ") + std::strerror(errno));
    _exit(1);
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    // Move the sources above 2 first, so dup2 never clobbers one still needed.
    int src[3];
    for (int i = 0; i < 3; ++i) {
      int s = stdio[i] >= 0 ? stdio[i] : null_fd;
      src[i] = s < 0 ? -1 : ::fcntl(s, F_DUPFD_CLOEXEC, 10);
    }
    for (int i = 0; i < 3; ++i) {
      if (src[i] < 0 || ::dup2(src[i], i) < 0) {
        int e = errno ? errno : EBADF;
        (void)!::write(err_pipe[1], &e, sizeof(e));
        _exit(125);
      }
    }
    int e = 0;
    if (::chdir(m.cwd.c_str()) != 0 ||
        ::setgroups(0, nullptr) != 0 || ::setresgid(creds.gid, creds.gid, creds.gid) != 0 ||
        ::setresuid(creds.uid, creds.uid, creds.uid) != 0) {
      e = errno;
      (void)!::write(err_pipe[1], &e, sizeof(e));
      _exit(125);
    }
    e = ENOENT;
    for (auto& c : candidates) {
      ::execve(c.c_str(), argv.data(), envp.data());
      if (errno != ENOENT || e == ENOENT) e = errno;
    }
    (void)!::write(err_pipe[1], &e, sizeof(e));
    _exit(127);
  }
  ::close(err_pipe[1]);
  for (auto& f : fds) f.reset();  // the command holds its own copies
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  int status = 0;
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int code = child_errno == ENOENT ? 127 : (child_errno == EACCES ? 126 : 125);
    SendError(conn, code, "cannot run " + m.argv[0] + ": " + std::strerror(child_errno));
    _exit(0);
  }
  Reply started;
  started.kind = Reply::Kind::kStarted;
  started.pid = pid;
  SendReply(conn, started);
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) _exit(1);
  }
  Reply done;
  done.kind = Reply::Kind::kExit;
  done.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  SendReply(conn, done);
  _exit(0);
}

void ReapAll() {
  int status;
  while (::waitpid(-1, &status, WNOHANG) > 0) {
  }
}

// SIGTERM: ask every process of the cell to stop, give them a moment, then
// kill what is left. kill(-1) from a pid namespace's init reaches every other
// process of the namespace and nothing outside it.
[[noreturn]] void Shutdown() {
  ::kill(-1, SIGTERM);
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status;
    pid_t p = ::waitpid(-1, &status, WNOHANG);
    if (p < 0 && errno == ECHILD) break;
    if (p > 0) continue;
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec >= 3) break;
    // Sleep until the next child exits (SIGCHLD is blocked, so it waits here).
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    timespec tick{0, 10 * 1000 * 1000};
    sigtimedwait(&chld, nullptr, &tick);
  }
  ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
  _exit(0);
}

int Run(int control_fd) {
  // Orphans of the cell come to us when we are PID 1; outside a pid namespace
  // (tests) the subreaper flag gives the same duty.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGPIPE);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd) {
    std::fprintf(stderr, "tessera-agent: signalfd: %s\n", std::strerror(errno));
    return 1;
  }
  for (;;) {
    pollfd pfds[2] = {{control_fd, POLLIN, 0}, {sfd.get(), POLLIN, 0}};
    if (::poll(pfds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if ((pfds[1].revents & POLLIN) != 0) {
      signalfd_siginfo info;
      while (::read(sfd.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) Shutdown();
      }
      ReapAll();
    }
    if ((pfds[0].revents & POLLIN) != 0) {
      int conn = ::accept4(control_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      pid_t pid = ::fork();
      if (pid == 0) {
        // Only the agent itself is shielded from the OOM killer (the host set
        // it to -999); its handlers and their commands are ordinary.
        if (int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); adj >= 0) {
          (void)!::write(adj, "0", 1);
          ::close(adj);
        }
        ::close(control_fd);
        sfd.reset();
        sigset_t keep;
        sigemptyset(&keep);
        sigaddset(&keep, SIGPIPE);
        sigprocmask(SIG_SETMASK, &keep, nullptr);
        ::signal(SIGPIPE, SIG_IGN);
        HandleConnection(conn);
      }
      ::close(conn);
    }
  }
}

}  // namespace
}  // namespace tessera::agent

int main(int argc, char** argv) {
  int control_fd = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--control-fd=", 0) == 0) control_fd = std::atoi(a.c_str() + 13);
  }
  if (control_fd < 3 || ::fcntl(control_fd, F_GETFD) < 0) {
    std::fprintf(stderr, "tessera-agent: usage: tessera-agent --control-fd=N (N >= 3, open)\n");
    return 2;
  }
  ::fcntl(control_fd, F_SETFD, FD_CLOEXEC);
  return tessera::agent::Run(control_fd);
}
