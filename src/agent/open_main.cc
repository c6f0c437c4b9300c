// tessera-open: qubes.OpenInVM, both ends (docs/RPC.md "qubes.OpenInVM").
//
//   tessera-open [--dispvm | --to QUBE] [--view-only] FILE
//   qvm-open-in-dvm [--view-only] FILE
//   qvm-open-in-vm [--view-only] QUBE FILE
//
// The sender runs `tessera-call TARGET qubes.OpenInVM[+view-only]` with
// itself (--send) as the local program. TARGET is @dispvm (a new disposable)
// unless --to names a qube. The stream to the service is the file's name, a
// NUL, its size (8 bytes, little-endian) and its contents; the service's
// answer is empty when the file was not changed, else the edited file's size
// and contents. The sender writes an answer under a temporary name beside
// FILE and renames it over FILE only when all of it arrived: an interrupted
// edit never leaves half a file. With --view-only the service opens a
// read-only copy and never answers with one.
//
// The service is the same binary run as /run/tessera/tools/rpc/qubes.OpenInVM,
// as the target's user: it checks the name (one component, no control
// characters), writes the file into a fresh private directory, runs the
// handler on it and waits for it to exit. The handler is the first of
// ~/.config/tessera/open-handler, /etc/tessera/open-handler (executables
// given the file's path) and xdg-open on PATH.

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "agent/fd_io.h"
#include "agent/qube_tool.h"
#include "wire/filecopy.h"

namespace {

using tessera::agent::ReadFull;
using tessera::agent::WriteFull;

std::string EncodeSize(uint64_t size) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(size >> (8 * i));
  return out;
}

uint64_t DecodeSize(const char* b) {
  uint64_t size = 0;
  for (int i = 7; i >= 0; --i) size = (size << 8) | static_cast<unsigned char>(b[i]);
  return size;
}

// Exactly `size` bytes from `in` to `out`; false if `in` ends first or a
// write fails.
bool CopyExactly(int in, int out, uint64_t size) {
  return tessera::agent::CopyExactly(in, out, size) == tessera::agent::Copied::kAll;
}

// True when `fd` has nothing more to read.
bool AtEnd(int fd) {
  char c;
  ssize_t n;
  do {
    n = ::read(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 0;
}

void Drain(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}

int Fail(const char* who, const std::string& why) {
  std::fprintf(stderr, "%s: %s\n", who, why.c_str());
  return 1;
}

// ---------------------------------------------------------------------------
// Sender (the local program of the call)

int Send(const std::string& path, bool view_only) {
  constexpr const char* kWho = "tessera-open";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return Fail(kWho, path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Fail(kWho, path + ": not a regular file");
  std::string head = tessera::agent::BaseName(path) + '\0' + EncodeSize(st.st_size);
  if (!WriteFull(1, head.data(), head.size()) || !CopyExactly(fd, 1, st.st_size)) {
    return Fail(kWho, path + ": the file could not be sent (it changed, or the call ended)");
  }
  ::close(fd);
  ::close(1);  // the service sees the end of the file
  if (view_only) {
    Drain(0);  // a view-only copy never comes back, whatever the target sends
    return 0;
  }
  char sb[8];
  ssize_t first;
  do {
    first = ::read(0, sb, 1);
  } while (first < 0 && errno == EINTR);
  if (first == 0) return 0;  // not changed
  if (first < 0 || !ReadFull(0, sb + 1, sizeof(sb) - 1)) {
    return Fail(kWho, "the edited file did not come back whole; " + path + " is unchanged");
  }
  uint64_t size = DecodeSize(sb);
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  std::string temp = dir + "/." + tessera::agent::BaseName(path) + ".tessera-open-XXXXXX";
  int out = ::mkstemp(temp.data());
  if (out < 0) return Fail(kWho, temp + ": " + std::strerror(errno));
  bool whole = CopyExactly(0, out, size) && AtEnd(0);
  bool kept = whole && ::fchmod(out, st.st_mode & 07777) == 0 && ::fsync(out) == 0;
  ::close(out);
  if (!kept || ::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Fail(kWho, whole ? path + ": " + std::strerror(err)
                            : "the edited file did not come back whole; " + path + " is unchanged");
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Service (qubes.OpenInVM in the target)

struct Seen {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  bool operator==(const Seen& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

bool Look(const std::string& path, Seen& seen) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  seen = {st.st_dev, st.st_ino, st.st_size, st.st_mtim};
  return true;
}

// The handler that opens a file here, "" if there is none.
std::string FindHandler() {
  using tessera::agent::IsExecutable;
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    std::string mine = std::string(home) + "/.config/tessera/open-handler";
    if (IsExecutable(mine)) return mine;
  }
  if (IsExecutable("/etc/tessera/open-handler")) return "/etc/tessera/open-handler";
  return tessera::agent::FindOnPath("xdg-open");
}

int RemoveEntry(const char* path, const struct stat*, int type, FTW*) {
  return type == FTW_DP ? ::rmdir(path) : ::unlink(path);
}

class Service {
 public:
  int Run() {
    const char* arg = std::getenv("QREXEC_SERVICE_ARGUMENT");
    std::string argument = arg != nullptr ? arg : "";
    if (!argument.empty() && argument != "view-only") {
      return Fail(kWho, "unknown argument \"" + argument + "\" (only view-only)");
    }
    bool view_only = argument == "view-only";
    std::string name;
    for (;;) {
      char c;
      if (!ReadFull(0, &c, 1)) return Fail(kWho, "the stream ended in the file's name");
      if (c == '\0') break;
      if (name.size() >= tessera::wire::kMaxFilecopyComponent) {
        return Fail(kWho, "the file's name is too long");
      }
      name.push_back(c);
    }
    if (name.find('/') != std::string::npos) return Fail(kWho, "the file's name has a '/'");
    if (auto ok = tessera::wire::CheckFilecopyName(name); !ok) {
      return Fail(kWho, ok.error().message());
    }
    char sb[8];
    if (!ReadFull(0, sb, sizeof(sb))) return Fail(kWho, "the stream ended before the file");
    uint64_t size = DecodeSize(sb);

    const char* tmp = std::getenv("TMPDIR");
    std::string dir =
        std::string(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp") + "/tessera-open-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) return Fail(kWho, dir + ": " + std::strerror(errno));
    dir_ = dir;
    std::string path = dir + "/" + name;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Fail(kWho, path + ": " + std::strerror(errno));
    bool whole = CopyExactly(0, fd, size) && AtEnd(0);
    ::close(fd);
    if (!whole) return Fail(kWho, "the file did not arrive whole; not opened");
    if (view_only) ::chmod(path.c_str(), 0400);
    Seen before;
    if (!Look(path, before)) return Fail(kWho, path + ": gone before it was opened");

    std::string handler = FindHandler();
    if (handler.empty()) {
      return Fail(kWho,
                  "no handler to open files with: make ~/.config/tessera/open-handler or "
                  "/etc/tessera/open-handler, or install xdg-open");
    }
    int status = RunHandler(handler, path);
    if (status != 0) {
      std::fprintf(stderr, "%s: %s exited with status %d\n", kWho, handler.c_str(), status);
    }
    Seen after;
    if (!view_only && Look(path, after) && !(after == before)) {
      int in = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      struct stat st {};
      if (in < 0 || ::fstat(in, &st) != 0) return Fail(kWho, path + ": " + std::strerror(errno));
      std::string head = EncodeSize(static_cast<uint64_t>(st.st_size));
      if (!WriteFull(1, head.data(), head.size()) || !CopyExactly(in, 1, st.st_size)) {
        return Fail(kWho, "the edited file could not be sent back");
      }
      ::close(in);
    }
    return status == 0 ? 0 : 1;
  }

  ~Service() {
    if (!dir_.empty()) ::nftw(dir_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
  }

 private:
  static constexpr const char* kWho = "qubes.OpenInVM";

  // Runs `handler FILE` with no stdin and its output on our stderr (our
  // stdout is the answer); its exit status.
  static int RunHandler(const std::string& handler, const std::string& path) {
    pid_t pid = ::fork();
    if (pid < 0) return 125;
    if (pid == 0) {
      int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      ::dup2(2, 1);
      ::execl(handler.c_str(), handler.c_str(), path.c_str(), static_cast<char*>(nullptr));
      std::fprintf(stderr, "%s: cannot run %s: %s\n", kWho, handler.c_str(), std::strerror(errno));
      _exit(127);
    }
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  }

  std::string dir_;
};

int Usage() {
  std::fprintf(stderr,
               "usage: tessera-open [--dispvm | --to QUBE] [--view-only] FILE\n"
               "       qvm-open-in-dvm [--view-only] FILE\n"
               "       qvm-open-in-vm [--view-only] QUBE FILE\n"
               "Opens FILE in a new disposable (or QUBE) as the policy allows (qubes.OpenInVM);\n"
               "unless --view-only, the edited file replaces FILE when its program exits.\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string self = tessera::agent::BaseName(argc > 0 ? argv[0] : "tessera-open");
  if (self == "qubes.OpenInVM") return Service().Run();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "--send") return Send(args[2], args[1] == "view-only");
  std::string target = "@dispvm";
  bool view_only = false;
  std::vector<std::string> files;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--view-only") {
      view_only = true;
    } else if (args[i] == "--dispvm" && self == "tessera-open") {
      target = "@dispvm";
    } else if (args[i] == "--to" && self == "tessera-open" && i + 1 < args.size()) {
      target = args[++i];
    } else if (args[i] == "-h" || args[i] == "--help") {
      Usage();
      return 0;
    } else if (args[i] == "--") {
      files.insert(files.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    } else if (!args[i].empty() && args[i][0] == '-') {
      return Usage();
    } else {
      files.push_back(args[i]);
    }
  }
  if (self == "qvm-open-in-vm") {
    if (files.empty()) return Usage();
    target = files[0];
    files.erase(files.begin());
  }
  if (files.size() != 1) return Usage();
  // Checked before the call too: a missing file starts no disposable.
  struct stat st {};
  if (::stat(files[0].c_str(), &st) != 0) {
    return Fail("tessera-open", files[0] + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Fail("tessera-open", files[0] + ": not a regular file");
  std::string service = view_only ? "qubes.OpenInVM+view-only" : "qubes.OpenInVM";
  return tessera::agent::CallWithSelf(target, service,
                                      {"--send", view_only ? "view-only" : "edit", files[0]});
}
