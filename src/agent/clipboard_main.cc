// tessera-clipboard: a qube's own clipboard, and the two services through
// which the host's clipboard reaches it (docs/RPC.md "The clipboard").
//
//   tessera-clipboard get          the qube's clipboard on stdout
//   tessera-clipboard set < TEXT   stdin becomes the qube's clipboard
//   rpc/qubes.ClipboardCopy        = get (the host's `tessera clipboard copy`)
//   rpc/qubes.ClipboardPaste       = set (the host's `tessera clipboard paste`)
//
// The clipboard is the graphical session's when the qube has one
// (wl-copy/wl-paste under Wayland, xclip under X11), else a file private to
// the user: $XDG_RUNTIME_DIR/tessera-clipboard, or ~/.cache/tessera/clipboard
// without a runtime directory. At most kMaxClipboard bytes, as in Qubes.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/fd_io.h"
#include "agent/qube_tool.h"
#include "wire/agent_protocol.h"

namespace {

using tessera::agent::FindOnPath;
using tessera::agent::WriteFull;
using tessera::wire::kMaxClipboard;

int Fail(const std::string& why) {
  std::fprintf(stderr, "tessera-clipboard: %s\n", why.c_str());
  return 1;
}

// The graphical session's clipboard program for `set` (or `get`), argv
// ready, or empty when the qube has no session with one.
std::vector<std::string> SessionClipboard(bool set) {
  const char* wayland = std::getenv("WAYLAND_DISPLAY");
  if (wayland != nullptr && wayland[0] != '\0') {
    std::string p = FindOnPath(set ? "wl-copy" : "wl-paste");
    if (!p.empty()) return set ? std::vector<std::string>{p} : std::vector<std::string>{p, "-n"};
  }
  const char* x11 = std::getenv("DISPLAY");
  if (x11 != nullptr && x11[0] != '\0') {
    std::string p = FindOnPath("xclip");
    if (!p.empty()) {
      std::vector<std::string> argv = {p, "-selection", "clipboard"};
      argv.push_back(set ? "-i" : "-o");
      return argv;
    }
  }
  return {};
}

// The file that holds the clipboard without a session, its directory made.
std::string ClipboardFile() {
  const char* run = std::getenv("XDG_RUNTIME_DIR");
  if (run != nullptr && run[0] == '/') return std::string(run) + "/tessera-clipboard";
  const char* home = std::getenv("HOME");
  if (home == nullptr || home[0] != '/') return "";
  std::string dir = std::string(home) + "/.cache";
  ::mkdir(dir.c_str(), 0700);
  dir += "/tessera";
  ::mkdir(dir.c_str(), 0700);
  return dir + "/clipboard";
}

int RunWithInput(const std::vector<std::string>& cmd, const std::string& input) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Fail(std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) return Fail(std::strerror(errno));
  if (pid == 0) {
    ::dup2(p[0], 0);
    std::vector<char*> argv;
    for (const auto& c : cmd) argv.push_back(const_cast<char*>(c.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(p[0]);
  bool sent = WriteFull(p[1], input.data(), input.size());
  ::close(p[1]);
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (!sent || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return Fail(cmd[0] + " failed");
  return 0;
}

int Set() {
  std::string data;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(std::strerror(errno));
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxClipboard) {
      return Fail("more than " + std::to_string(kMaxClipboard) +
                  " bytes; the clipboard is unchanged");
    }
  }
  if (auto cmd = SessionClipboard(true); !cmd.empty()) return RunWithInput(cmd, data);
  std::string path = ClipboardFile();
  if (path.empty()) return Fail("no $XDG_RUNTIME_DIR or $HOME to keep the clipboard in");
  std::string temp = path + ".XXXXXX";
  int fd = ::mkstemp(temp.data());
  if (fd < 0) return Fail(temp + ": " + std::strerror(errno));
  bool ok = WriteFull(fd, data.data(), data.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Fail(path + ": " + std::strerror(err));
  }
  return 0;
}

int Get() {
  if (auto cmd = SessionClipboard(false); !cmd.empty()) {
    std::vector<char*> argv;
    for (auto& c : cmd) argv.push_back(c.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    return Fail(cmd[0] + ": " + std::strerror(errno));
  }
  std::string path = ClipboardFile();
  if (path.empty()) return Fail("no $XDG_RUNTIME_DIR or $HOME to keep the clipboard in");
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return 0;  // empty
  if (fd < 0) return Fail(path + ": " + std::strerror(errno));
  char buf[8192];
  size_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    if (total > kMaxClipboard) return Fail(path + ": more than the clipboard's limit");
    if (!WriteFull(1, buf, static_cast<size_t>(n))) return 1;
  }
  ::close(fd);
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: tessera-clipboard get | set\n"
               "get prints this qube's clipboard; set makes stdin (at most %zu bytes) its\n"
               "clipboard. The host moves it between qubes: tessera clipboard copy/paste.\n",
               kMaxClipboard);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string self = tessera::agent::BaseName(argc > 0 ? argv[0] : "tessera-clipboard");
  if (self == "qubes.ClipboardCopy") return Get();
  if (self == "qubes.ClipboardPaste") return Set();
  if (argc == 2 && std::strcmp(argv[1], "get") == 0) return Get();
  if (argc == 2 && std::strcmp(argv[1], "set") == 0) return Set();
  if (argc == 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    Usage();
    return 0;
  }
  return Usage();
}
