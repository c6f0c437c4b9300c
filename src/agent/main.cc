// tessera-agent: PID 1 of every cell. It accepts connections on the control
// socket it inherited from the host (fd given by --control-fd), runs one exec
// request per connection (the command is cloned straight from PID 1, and its
// exit is reported on that connection), reaps every orphan, and on SIGTERM
// terminates everything in the cell and exits. Built static: templates carry no
// libc. Protocol: agent/protocol.h, docs/CELL.md.

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
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
    // Built whole, not assigned field by field: GCC 12 -O3 takes `home = "/"`
    // for an overlapping memcpy (-Wrestrict, a false positive).
    *creds = Credentials{.uid = static_cast<uid_t>(uid),
                         .gid = static_cast<gid_t>(colon == std::string::npos ? uid : gid),
                         .home = "/"};
    return true;
  }
  // The qube's root owns this file and PID 1 reads it: a FIFO or device in
  // its place must not block or feed the agent (non-blocking, regular only).
  UniqueFd fd(::open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "no /etc/passwd (a regular file) in the cell to look up user " + user;
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

void SendReply(int conn, const Reply& reply) { (void)SendFrame(conn, SerializeReply(reply)); }

void SendError(int conn, int code, const std::string& message) {
  Reply r;
  r.kind = Reply::Kind::kError;
  r.code = code;
  r.message = message;
  SendReply(conn, r);
}

// Everything the command's child needs, prepared before it is cloned: the
// child shares the agent's memory until it execs (CLONE_VM | CLONE_VFORK, as
// posix_spawn does), so it only makes system calls and writes `error`.
struct SpawnPlan {
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<const char*> candidates;  // program paths to try, in order
  int stdio[3] = {-1, -1, -1};          // -1 = /dev/null
  const char* cwd = "/";
  Credentials creds;
  bool reset_oom_score = false;
  int error = 0;  // set by the child when it cannot exec
};

[[noreturn]] void ChildFail(SpawnPlan* plan, int error, int code) {
  plan->error = error != 0 ? error : EIO;
  _exit(code);
}

// The command's side of the clone: async-signal-safe system calls only.
int SpawnChild(void* arg) {
  auto* plan = static_cast<SpawnPlan*>(arg);
  // The agent keeps every signal blocked (it reads them from a signalfd); its
  // dispositions were reset to default at start, so the mask is all to undo.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  if (plan->reset_oom_score) {
    // Only the agent is shielded from the OOM killer; its commands are not.
    int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
      (void)!::write(adj, "0", 1);
      ::close(adj);
    }
  }
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  // Move the sources above 2 first, so dup2 never clobbers one still needed.
  int src[3];
  for (int i = 0; i < 3; ++i) {
    int s = plan->stdio[i] >= 0 ? plan->stdio[i] : null_fd;
    src[i] = s < 0 ? -1 : ::fcntl(s, F_DUPFD_CLOEXEC, 10);
  }
  for (int i = 0; i < 3; ++i) {
    if (src[i] < 0 || ::dup2(src[i], i) < 0) ChildFail(plan, errno ? errno : EBADF, 125);
  }
  // Raw system calls: the child shares the agent's libc state.
  if (::chdir(plan->cwd) != 0 || syscall(SYS_setgroups, 0, nullptr) != 0 ||
      syscall(SYS_setresgid, plan->creds.gid, plan->creds.gid, plan->creds.gid) != 0 ||
      syscall(SYS_setresuid, plan->creds.uid, plan->creds.uid, plan->creds.uid) != 0) {
    ChildFail(plan, errno, 125);
  }
  int e = ENOENT;
  for (const char* c : plan->candidates) {
    ::execve(c, plan->argv.data(), plan->envp.data());
    if (errno != ENOENT || e == ENOENT) e = errno;
  }
  ChildFail(plan, e, 127);
}

// Clones the command. Returns its pid, or -1 with plan->error set (the failed
// child is already reaped). CLONE_VFORK: this returns once the child has
// exec'd or exited, so `plan` is stable while the child reads it.
pid_t Spawn(SpawnPlan* plan) {
  alignas(64) static char stack[64 * 1024];
  plan->error = 0;
  pid_t pid = ::clone(SpawnChild, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, plan);
  if (pid < 0) {
    plan->error = errno;
    return -1;
  }
  if (plan->error != 0) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return -1;
  }
  return pid;
}

// One exec request: read, validate, start the command and say so. On success
// the connection is kept (in `running`, by the command's pid) for the exit
// report; on any failure the caller gets an error reply and the connection is
// closed.
void HandleConnection(UniqueFd conn, bool reset_oom_score, std::map<pid_t, UniqueFd>* running) {
  // The host writes a request right after connecting; never let a stalled
  // peer hold PID 1.
  timeval timeout{5, 0};
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::vector<UniqueFd> fds;
  auto payload = ReadFrame(conn.get(), &fds);
  if (!payload) return SendError(conn.get(), 125, payload.error().ToString());
  auto parsed = ParseExec(*payload);
  if (!parsed) return SendError(conn.get(), 125, parsed.error().ToString());
  ExecMessage& m = *parsed;
  if (fds.size() != m.nfds) {
    return SendError(conn.get(), 125, "exec: attached fd count does not match \"nfds\"");
  }
  SpawnPlan plan;
  std::string error;
  if (!ResolveUser(m.user, &plan.creds, &error)) return SendError(conn.get(), 125, error);
  std::vector<std::string> env = m.env;
  if (env.empty()) {
    env = {std::string("PATH=") + kDefaultPath, "HOME=" + plan.creds.home, "TERM=xterm"};
  }
  std::string path = kDefaultPath;
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  for (auto& a : m.argv) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  for (auto& e : env) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  // PATH search done here, not with execvpe in the child.
  std::vector<std::string> candidates;
  if (m.argv[0].find('/') != std::string::npos) {
    candidates.push_back(m.argv[0]);
  } else {
    size_t start = 0;
    for (;;) {
      size_t c = path.find(':', start);
      std::string dir = path.substr(start, c == std::string::npos ? std::string::npos : c - start);
      // An empty entry is the current directory (not `dir = "."`: GCC 12 -O3
      // takes that assignment for an overlapping memcpy, -Wrestrict).
      candidates.push_back((dir.empty() ? std::string(".") : std::move(dir)) + "/" + m.argv[0]);
      if (c == std::string::npos) break;
      start = c + 1;
    }
  }
  for (const auto& c : candidates) plan.candidates.push_back(c.c_str());
  for (int i = 0; i < 3; ++i) plan.stdio[i] = m.stdio[i] >= 0 ? fds[m.stdio[i]].get() : -1;
  plan.cwd = m.cwd.c_str();
  plan.reset_oom_score = reset_oom_score;

  pid_t pid = Spawn(&plan);
  fds.clear();  // the command holds its own copies
  if (pid < 0) {
    // 127 and 126 say the reason themselves (not found, not executable); any
    // other failure is 125 with the reason in the text.
    if (plan.error == ENOENT) return SendError(conn.get(), 127, "cannot run " + m.argv[0]);
    if (plan.error == EACCES) return SendError(conn.get(), 126, "cannot run " + m.argv[0]);
    return SendError(conn.get(), 125, "cannot run " + m.argv[0] + ": " + std::strerror(plan.error));
  }
  Reply started;
  started.kind = Reply::Kind::kStarted;
  started.pid = pid;
  SendReply(conn.get(), started);
  running->emplace(pid, std::move(conn));
}

// Reaps every exited child: a command's exit goes to its caller; orphans that
// were reparented to PID 1 are just collected.
void ReapAll(std::map<pid_t, UniqueFd>* running) {
  int status;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    auto it = running->find(pid);
    if (it == running->end()) continue;
    Reply done;
    done.kind = Reply::Kind::kExit;
    done.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    SendReply(it->second.get(), done);
    running->erase(it);
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
  // Dispositions survive exec only when ignored (a host shell may have set
  // SIGINT or SIGQUIT to SIG_IGN): reset them once here, so commands start
  // with every signal at its default.
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
  }
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
  // The host may shield the agent from the OOM killer (-999); its commands
  // must not inherit that.
  bool reset_oom_score = false;
  if (UniqueFd adj(::open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC)); adj) {
    char buf[16] = {};
    reset_oom_score = ::read(adj.get(), buf, sizeof(buf) - 1) > 0 && std::atoi(buf) != 0;
  }
  std::map<pid_t, UniqueFd> running;  // command pid -> its caller's connection
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
      ReapAll(&running);
    }
    if ((pfds[0].revents & POLLIN) != 0) {
      int conn = ::accept4(control_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn >= 0) HandleConnection(UniqueFd(conn), reset_oom_score, &running);
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
