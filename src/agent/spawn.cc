// The command's side of a session, between fork and exec. The agent is single
// threaded, so the forked child may allocate; it must not return into the
// agent's loop: every path ends in exec or _exit.

#include "agent/spawn.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "agent/fd_io.h"
#include "cell/fd_passing.h"

namespace tessera::agent {
namespace {

// The qube tools (tessera-call, qrexec-client-vm) come last: the qube's own
// programs win.
constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/tessera/tools/bin";

struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name = "root";
  std::string home = "/root";
  std::string shell = "/bin/sh";
};

bool ParseId(const std::string& s, unsigned long* out) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::strtoul(s.c_str(), nullptr, 10);
  return *out <= 65535;
}

// "root", "UID[:GID]", or a name from the qube's own /etc/passwd (read in the
// command's mount namespace, as the qube sees it).
bool ResolveUser(const std::string& user, Credentials* creds, std::string* error) {
  if (user == "root") return true;
  unsigned long uid = 0;
  unsigned long gid = 0;
  size_t colon = user.find(':');
  if (ParseId(user.substr(0, colon), &uid) &&
      (colon == std::string::npos || ParseId(user.substr(colon + 1), &gid))) {
    creds->uid = static_cast<uid_t>(uid);
    creds->gid = static_cast<gid_t>(colon == std::string::npos ? uid : gid);
    creds->home = std::string(1, '/');  // not = "/": GCC 12 -Wrestrict false positive
    creds->name = user;
    return true;
  }
  // The qube's root owns this file: a FIFO or device in its place must not
  // block or feed us (non-blocking, regular files only).
  int fd = ::open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "no /etc/passwd (a regular file) in the qube to look up user " + user;
    return false;
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0 && text.size() < (1u << 20)) {
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
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
    creds->name = user;
    if (fields.size() > 6 && !fields[6].empty()) creds->shell = fields[6];
    return true;
  }
  *error = "unknown user " + user;
  return false;
}

[[noreturn]] void Fail(int report_fd, int code, int error, const std::string& message) {
  SpawnReport r;
  r.code = code;
  r.error = error;
  std::strncpy(r.message, message.c_str(), sizeof(r.message) - 1);
  (void)!::write(report_fd, &r, sizeof(r));
  _exit(code);
}

// The cell's capability drop, again (setns into a user namespace restores a
// full bounding set, as the cell's setup had before it dropped them).
void DropCapabilities(uint64_t drop, int report_fd) {
  for (int cap = 0; cap < 64; ++cap) {
    if ((drop & (uint64_t{1} << cap)) == 0) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      Fail(report_fd, 125, errno, "drop capabilities");
    }
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) Fail(report_fd, 125, errno, "capget");
  for (int i = 0; i < 2; ++i) {
    auto keep = static_cast<uint32_t>(~(drop >> (32 * i)));
    data[i].effective &= keep;
    data[i].permitted &= keep;
    data[i].inheritable = 0;
  }
  if (syscall(SYS_capset, &header, data) != 0) Fail(report_fd, 125, errno, "capset");
}

// The default environment, with the message's entries set on top.
std::vector<std::string> Environment(const wire::OpenMessage& m, const Credentials& creds) {
  std::vector<std::string> env = {
      std::string("PATH=") + kDefaultPath,
      "HOME=" + creds.home,
      "USER=" + creds.name,
      "LOGNAME=" + creds.name,
      "SHELL=" + creds.shell,
      std::string("TERM=") + (m.tty ? "xterm-256color" : "dumb"),
  };
  for (const auto& e : m.env) {
    std::string key = e.substr(0, e.find('=') + 1);
    auto same = [&](const std::string& d) { return d.compare(0, key.size(), key) == 0; };
    env.erase(std::remove_if(env.begin(), env.end(), same), env.end());
    env.push_back(e);
  }
  return env;
}

// A pseudo-terminal of the qube's own devpts for the command: the slave
// becomes its controlling terminal (we are a session leader without one),
// owned by the user it runs as; the master goes to the agent over the report
// socket. Returns the slave.
int OpenTerminal(const wire::WindowSize& size, const Credentials& creds, int report_fd) {
  int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) Fail(report_fd, 125, errno, "open /dev/ptmx in the qube");
  int unlock = 0;
  if (::ioctl(master, TIOCSPTLCK, &unlock) != 0) Fail(report_fd, 125, errno, "unlock the pty");
  int slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) Fail(report_fd, 125, errno, "open the pty's terminal");
  if (::fchown(slave, creds.uid, creds.gid) != 0 || ::fchmod(slave, 0600) != 0) {
    Fail(report_fd, 125, errno, "give the pty to " + creds.name);
  }
  winsize ws{};
  ws.ws_row = size.rows;
  ws.ws_col = size.cols;
  if (::ioctl(slave, TIOCSWINSZ, &ws) != 0 || ::ioctl(slave, TIOCSCTTY, 0) != 0) {
    Fail(report_fd, 125, errno, "make the pty the controlling terminal");
  }
  SpawnReport r;
  r.code = 0;  // not a failure: the terminal's master is attached
  if (cell::SendWithFd(report_fd, &r, sizeof(r), master) != static_cast<ssize_t>(sizeof(r))) {
    Fail(report_fd, 125, errno, "hand the pty to the agent");
  }
  ::close(master);
  return slave;
}

// A socket service: the descriptor line, then the command's stdin to the
// socket and the socket to its stdout, until the service closes. Stdin's end
// half-closes the socket. Runs as the service's user, in its namespaces.
[[noreturn]] void ServeSocket(const std::string& path, const wire::ServiceCall& call,
                              int report_fd) {
  int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (sock < 0 || path.size() >= sizeof(addr.sun_path)) Fail(report_fd, 125, errno, "socket");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Fail(report_fd, 125, errno, "connect to service socket " + path);
  }
  // Nothing of the agent stays open here: we do not exec, so its
  // descriptors (the write end of our own stdin pipe among them) would.
  // The socket becomes 3; closing the rest closes the report socket too,
  // which tells the agent we started.
  if (sock != 3) {
    if (::dup2(sock, 3) < 0) Fail(report_fd, 125, errno, "dup2");
    sock = 3;
  }
  if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0) {
    for (int fd = 4; fd < 65536; ++fd) ::close(fd);
  }
  std::string descriptor = call.FullName() + " " + call.source;
  descriptor.push_back('\0');
  if (!WriteFull(sock, descriptor.data(), descriptor.size())) _exit(125);
  bool stdin_open = true;
  char buf[65536];
  for (;;) {
    pollfd p[2] = {{sock, POLLIN, 0}, {0, POLLIN, 0}};
    if (::poll(p, stdin_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(125);
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::read(sock, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EINTR)) _exit(0);  // the service closed: done
      if (n > 0 && !WriteFull(1, buf, static_cast<size_t>(n))) _exit(0);
    }
    if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::read(0, buf, sizeof(buf));
      if (n > 0) {
        if (!WriteFull(sock, buf, static_cast<size_t>(n))) stdin_open = false;
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
        ::shutdown(sock, SHUT_WR);
      }
    }
  }
}

// A service call: the first existing candidate (lstat, as Qubes) decides.
// None: 127. A socket: ServeSocket. Anything else is executed with the
// argument as argv[1]; failing that the service is broken (125: 126 means
// "refused by policy" to the caller).
[[noreturn]] void RunService(const wire::ServiceCall& call, std::vector<std::string>& env,
                             int report_fd) {
  env.push_back("QREXEC_REMOTE_DOMAIN=" + call.source);
  env.push_back("QREXEC_SERVICE_FULL_NAME=" + call.FullName());
  if (!call.argument.empty()) env.push_back("QREXEC_SERVICE_ARGUMENT=" + call.argument);
  env.push_back("QREXEC_REQUESTED_TARGET=" + call.requested_target);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const std::string& path : wire::ServiceCandidates(call)) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      Fail(report_fd, 125, errno, "look up " + path);
    }
    if (S_ISSOCK(st.st_mode)) ServeSocket(path, call, report_fd);
    std::vector<char*> argv = {const_cast<char*>(path.c_str())};
    if (!call.argument.empty()) argv.push_back(const_cast<char*>(call.argument.c_str()));
    argv.push_back(nullptr);
    ::execve(path.c_str(), argv.data(), envp.data());
    Fail(report_fd, 125, errno, "service " + path + " cannot be executed");
  }
  Fail(report_fd, 127, ENOENT, "no such service in this qube");
}

[[noreturn]] void RunChild(const SpawnRequest& req, int report_fd) {
  const wire::OpenMessage& m = *req.message;
  // The agent reads its signals from a signalfd with everything blocked; its
  // dispositions were reset at start, so the mask is all there is to undo.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // Its own session and process group: signals and hang-ups of the session
  // reach the command and everything it starts.
  ::setsid();
  if (req.namespaces.user >= 0) {
    // User namespace first: it gives us the capabilities the mount namespace
    // (owned by it) asks for. After this the command can never reach the
    // agent: the agent's memory belongs to the outer namespace.
    if (::setns(req.namespaces.user, CLONE_NEWUSER) != 0) {
      Fail(report_fd, 125, errno, "join the qube's user namespace");
    }
    if (::setns(req.namespaces.mount, CLONE_NEWNS) != 0) {
      Fail(report_fd, 125, errno, "join the qube's mount namespace");
    }
    DropCapabilities(req.namespaces.drop_caps, report_fd);
  }
  if (req.reset_oom_score) {
    int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
      (void)!::write(adj, "0", 1);
      ::close(adj);
    }
  }
  Credentials creds;
  std::string error;
  if (!ResolveUser(m.user, &creds, &error)) Fail(report_fd, 125, 0, error);
  // Move the sources above 2 first, so dup2 never clobbers one still needed.
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int terminal = m.tty ? OpenTerminal(*m.tty, creds, report_fd) : -1;
  int src[3];
  for (int i = 0; i < 3; ++i) {
    int s = terminal >= 0 ? terminal : req.stdio[i] >= 0 ? req.stdio[i] : null_fd;
    src[i] = s < 0 ? -1 : ::fcntl(s, F_DUPFD_CLOEXEC, 10);
  }
  for (int i = 0; i < 3; ++i) {
    if (src[i] < 0 || ::dup2(src[i], i) < 0) Fail(report_fd, 125, errno ? errno : EBADF, "stdio");
  }
  std::vector<std::string> env = Environment(m, creds);
  std::string path = kDefaultPath;
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  // No directory asked for: the user's home, or / when it has none (as login does).
  if (!m.cwd.empty()) {
    if (::chdir(m.cwd.c_str()) != 0) Fail(report_fd, 125, errno, "chdir " + m.cwd);
  } else if (::chdir(creds.home.c_str()) != 0 && ::chdir("/") != 0) {
    Fail(report_fd, 125, errno, "chdir /");
  }
  if (syscall(SYS_setgroups, 0, nullptr) != 0 ||
      syscall(SYS_setresgid, creds.gid, creds.gid, creds.gid) != 0 ||
      syscall(SYS_setresuid, creds.uid, creds.uid, creds.uid) != 0) {
    Fail(report_fd, 125, errno, "become user " + m.user);
  }
  if (m.service) RunService(*m.service, env, report_fd);
  std::vector<char*> argv;
  for (const auto& a : m.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> candidates;
  if (m.argv[0].find('/') != std::string::npos) {
    candidates.push_back(m.argv[0]);
  } else {
    size_t start = 0;
    for (;;) {
      size_t c = path.find(':', start);
      std::string dir = path.substr(start, c == std::string::npos ? std::string::npos : c - start);
      // Appended piecewise: GCC 12 warns falsely (-Wrestrict) about a + b + c here.
      std::string candidate = dir.empty() ? std::string(".") : dir;
      candidate += '/';
      candidate += m.argv[0];
      candidates.push_back(std::move(candidate));
      if (c == std::string::npos) break;
      start = c + 1;
    }
  }
  // As execvp: the first candidate that exists decides; "not found" only
  // when none does.
  int e = ENOENT;
  for (const auto& c : candidates) {
    ::execve(c.c_str(), argv.data(), envp.data());
    if (errno != ENOENT || e == ENOENT) e = errno;
  }
  Fail(report_fd, e == ENOENT ? 127 : e == EACCES ? 126 : 125, e, "");
}

}  // namespace

Result<Spawned> SpawnCommand(const SpawnRequest& request) {
  // A socket, not a pipe: a tty session's child sends the pty master on it.
  int pipe_fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipe_fds) != 0) {
    return Err(Error::FromErrno("socketpair"));
  }
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Err(Error::FromErrno("fork"));
  if (pid == 0) {
    read_end.reset();
    RunChild(request, write_end.get());
  }
  write_end.reset();
  return Spawned{pid, std::move(read_end)};
}

std::string DescribeReport(const SpawnReport& report, const std::string& program) {
  std::string text = "cannot run " + program;
  std::string detail(report.message, strnlen(report.message, sizeof(report.message)));
  // 127 and 126 say their reason themselves (not found / not executable);
  // a service's 127 says where it was looked for.
  if (report.code == 127 && !detail.empty()) text += ": " + detail;
  if (report.code == 125) {
    if (!detail.empty()) text += ": " + detail;
    if (report.error != 0) text += std::string(": ") + std::strerror(report.error);
  }
  return text;
}

}  // namespace tessera::agent
