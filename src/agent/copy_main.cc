// tessera-copy: qubes.Filecopy, both ends (docs/RPC.md "qubes.Filecopy").
//
//   tessera-copy [--move] [--to QUBE] FILE...     (also qvm-copy, qvm-move,
//   qvm-copy-to-vm QUBE FILE...)                  send FILEs to another qube
//
// The sender runs `tessera-call TARGET qubes.Filecopy` with itself (--send) as
// the local program, so its stream goes to the service's stdin; TARGET is
// @default unless --to names one (the policy's ask chooses then). Trees land
// in the target's ~/QubesIncoming/SOURCE/. The receiver is the same binary
// run as the service /run/tessera/tools/rpc/qubes.Filecopy, as the target's
// user: it trusts nothing in the stream (wire/filecopy.h), never follows a
// symlink while writing, writes each file under a temporary name and renames
// it when complete, keeps permission bits without setuid/setgid/sticky and
// mtimes, refuses to replace what exists, and stops at the quota
// (~/.config/tessera/filecopy-quota, bytes; default 16 GiB).

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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
using tessera::wire::FilecopyHeader;
using tessera::wire::FilecopyType;
namespace wire = tessera::wire;

constexpr uint64_t kDefaultQuota = uint64_t{16} << 30;

// ---------------------------------------------------------------------------
// Receiver

class Receiver {
 public:
  int Run() {
    const char* source = std::getenv("QREXEC_REMOTE_DOMAIN");
    const char* home = std::getenv("HOME");
    if (source == nullptr || !ValidQubeName(source)) return Fail("no valid calling qube");
    if (home == nullptr || home[0] != '/') return Fail("no home directory");
    quota_ = ReadQuota(home);
    int dir = OpenOrMake(home, "QubesIncoming");
    if (dir < 0) return Fail(std::string("~/QubesIncoming: ") + std::strerror(errno));
    root_ = OpenOrMakeAt(dir, source);
    ::close(dir);
    if (root_ < 0)
      return Fail(std::string("~/QubesIncoming/") + source + ": " + std::strerror(errno));
    for (;;) {
      char hb[wire::kFilecopyHeaderSize];
      if (!ReadFull(0, hb, sizeof(hb))) return Fail("the stream ended before its end record");
      auto header = wire::ParseFilecopyHeader(std::string_view(hb, sizeof(hb)));
      if (!header) return Fail(header.error().message());
      if (header->type == FilecopyType::kEnd) break;
      std::string name(header->name_len, '\0');
      if (!ReadFull(0, name.data(), name.size())) return Fail("the stream ended in a name");
      if (auto ok = wire::CheckFilecopyName(name); !ok) return Fail(ok.error().message());
      if (!Entry(*header, name)) return 1;
    }
    // Directories get their modes and times last (their files are written).
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      timespec times[2] = {{0, UTIME_OMIT}, it->mtime};
      (void)!::fchmodat(root_, it->name.c_str(), it->mode, 0);
      ::utimensat(root_, it->name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }
    return 0;
  }

 private:
  struct Dir {
    std::string name;
    mode_t mode;
    timespec mtime;
  };

  static bool ValidQubeName(const std::string& s) {
    if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_' || c == '.';
    });
  }

  static uint64_t ReadQuota(const char* home) {
    std::string path = std::string(home) + "/.config/tessera/filecopy-quota";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return kDefaultQuota;
    char buf[32] = {};
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0) return kDefaultQuota;
    char* end = nullptr;
    unsigned long long q = std::strtoull(buf, &end, 10);
    return end == buf ? kDefaultQuota : q;
  }

  static int OpenOrMake(const char* parent, const char* name) {
    int p = ::open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (p < 0) return -1;
    int fd = OpenOrMakeAt(p, name);
    ::close(p);
    return fd;
  }
  static int OpenOrMakeAt(int parent, const char* name) {
    if (::mkdirat(parent, name, 0755) != 0 && errno != EEXIST) return -1;
    return ::openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }

  int Fail(const std::string& why) {
    std::fprintf(stderr, "qubes.Filecopy: %s\n", why.c_str());
    return 1;
  }
  bool Refuse(const std::string& why) {
    Fail(why);
    return false;
  }

  // The directory holding `name`'s last component, every component opened
  // without following symlinks (a link sent earlier cannot redirect us).
  int OpenParent(const std::string& name, std::string* last) {
    size_t slash = name.rfind('/');
    *last = slash == std::string::npos ? name : name.substr(slash + 1);
    int cur = ::fcntl(root_, F_DUPFD_CLOEXEC, 3);
    size_t start = 0;
    while (slash != std::string::npos && start <= slash) {
      size_t next = name.find('/', start);
      std::string part = name.substr(start, next - start);
      int fd = ::openat(cur, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      ::close(cur);
      if (fd < 0) return -1;
      cur = fd;
      start = next + 1;
      if (next == slash) break;
    }
    return cur;
  }

  bool Entry(const FilecopyHeader& h, const std::string& name) {
    std::string last;
    int parent = OpenParent(name, &last);
    if (parent < 0) return Refuse(name + ": its directory: " + std::strerror(errno));
    bool ok = false;
    mode_t mode = h.mode & 0777;  // never setuid, setgid or sticky
    timespec mtime{static_cast<time_t>(h.mtime_sec), static_cast<long>(h.mtime_nsec)};
    switch (h.type) {
      case FilecopyType::kDir:
        if (::mkdirat(parent, last.c_str(), 0700) != 0) {
          struct stat st;
          if (errno != EEXIST || ::fstatat(parent, last.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
              !S_ISDIR(st.st_mode)) {
            ok = Refuse(name + ": " + std::strerror(EEXIST));
            break;
          }
        }
        dirs_.push_back({name, mode, mtime});
        ok = true;
        break;
      case FilecopyType::kFile:
        ok = File(parent, last, name, h, mode, mtime);
        break;
      case FilecopyType::kSymlink: {
        std::string target(h.size, '\0');
        if (!ReadFull(0, target.data(), target.size())) {
          ok = Refuse("the stream ended in a symlink");
          break;
        }
        if (auto checked = wire::CheckFilecopySymlink(name, target); !checked) {
          ok = Refuse(checked.error().message());
          break;
        }
        if (::symlinkat(target.c_str(), parent, last.c_str()) != 0) {
          ok = Refuse(name + ": " + std::strerror(errno));
          break;
        }
        timespec times[2] = {{0, UTIME_OMIT}, mtime};
        ::utimensat(parent, last.c_str(), times, AT_SYMLINK_NOFOLLOW);
        ok = true;
        break;
      }
      case FilecopyType::kEnd:
        ok = true;
        break;
    }
    ::close(parent);
    return ok;
  }

  bool File(int parent, const std::string& last, const std::string& name, const FilecopyHeader& h,
            mode_t mode, timespec mtime) {
    if (h.size > quota_ || used_ > quota_ - h.size) {
      return Refuse(name + ": over the quota of " + std::to_string(quota_) + " bytes");
    }
    used_ += h.size;
    // Under a temporary name until complete: an interrupted copy never
    // shows a partial file under its real name.
    std::string tmp =
        ".tessera-copy." + std::to_string(::getpid()) + "." + std::to_string(++temps_);
    int fd =
        ::openat(parent, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Refuse(name + ": " + std::strerror(errno));
    bool ok = true;
    std::string why;
    switch (tessera::agent::CopyExactly(0, fd, h.size)) {
      case tessera::agent::Copied::kAll:
        break;
      case tessera::agent::Copied::kShort:
        ok = false;
        why = "the stream ended in the file";
        break;
      case tessera::agent::Copied::kWriteError:
        ok = false;
        why = std::strerror(errno);
        break;
    }
    timespec times[2] = {{0, UTIME_OMIT}, mtime};
    if (ok && (::fchmod(fd, mode) != 0 || ::futimens(fd, times) != 0)) {
      ok = false;
      why = std::strerror(errno);
    }
    ::close(fd);
    if (ok && ::renameat2(parent, tmp.c_str(), parent, last.c_str(), RENAME_NOREPLACE) != 0) {
      ok = false;
      why = errno == EEXIST ? "exists already (nothing is replaced)" : std::strerror(errno);
    }
    if (!ok) {
      ::unlinkat(parent, tmp.c_str(), 0);
      return Refuse(name + ": " + why);
    }
    return true;
  }

  int root_ = -1;
  uint64_t quota_ = kDefaultQuota;
  uint64_t used_ = 0;
  uint64_t temps_ = 0;
  std::vector<Dir> dirs_;
};

// ---------------------------------------------------------------------------
// Sender

struct Item {
  std::string path;  // on this side
  std::string name;  // in the stream
  struct stat st;
};

bool Collect(const std::string& path, const std::string& name, std::vector<Item>& out,
             uint64_t& total) {
  Item item{path, name, {}};
  if (::lstat(path.c_str(), &item.st) != 0) {
    std::fprintf(stderr, "tessera-copy: %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  if (!S_ISDIR(item.st.st_mode) && !S_ISREG(item.st.st_mode) && !S_ISLNK(item.st.st_mode)) {
    std::fprintf(stderr, "tessera-copy: %s: not a regular file, directory or symlink\n",
                 path.c_str());
    return false;
  }
  if (auto ok = wire::CheckFilecopyName(name); !ok) {
    std::fprintf(stderr, "tessera-copy: %s: %s\n", path.c_str(), ok.error().message().c_str());
    return false;
  }
  out.push_back(item);
  if (S_ISREG(item.st.st_mode)) total += static_cast<uint64_t>(item.st.st_size);
  if (!S_ISDIR(item.st.st_mode)) return true;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    std::fprintf(stderr, "tessera-copy: %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  std::vector<std::string> entries;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      entries.push_back(e->d_name);
    }
  }
  ::closedir(d);
  std::sort(entries.begin(), entries.end());
  for (const auto& e : entries) {
    if (!Collect(path + "/" + e, name + "/" + e, out, total)) return false;
  }
  return true;
}

int Send(const std::vector<std::string>& files) {
  std::vector<Item> items;
  uint64_t total = 0;
  for (const auto& f : files) {
    if (!Collect(f, tessera::agent::BaseName(f), items, total)) return 1;
  }
  bool progress = ::isatty(2) == 1;
  uint64_t sent = 0;
  for (const Item& item : items) {
    FilecopyHeader h;
    h.name_len = static_cast<uint32_t>(item.name.size());
    h.mode = item.st.st_mode & 07777;
    h.mtime_sec = static_cast<uint64_t>(item.st.st_mtim.tv_sec);
    h.mtime_nsec = static_cast<uint32_t>(item.st.st_mtim.tv_nsec);
    std::string body;
    int fd = -1;
    if (S_ISDIR(item.st.st_mode)) {
      h.type = FilecopyType::kDir;
    } else if (S_ISLNK(item.st.st_mode)) {
      h.type = FilecopyType::kSymlink;
      body.resize(wire::kMaxFilecopyPath + 1);
      ssize_t n = ::readlink(item.path.c_str(), body.data(), body.size());
      if (n <= 0 || static_cast<size_t>(n) > wire::kMaxFilecopyPath) {
        std::fprintf(stderr, "tessera-copy: %s: cannot read the link\n", item.path.c_str());
        return 1;
      }
      body.resize(static_cast<size_t>(n));
      h.size = body.size();
    } else {
      h.type = FilecopyType::kFile;
      fd = ::open(item.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) {
        std::fprintf(stderr, "tessera-copy: %s: %s\n", item.path.c_str(), std::strerror(errno));
        return 1;
      }
      h.size = static_cast<uint64_t>(item.st.st_size);
    }
    std::string head = wire::EncodeFilecopyHeader(h) + item.name + body;
    if (!WriteFull(1, head.data(), head.size())) return 1;
    // In steps of 64 MiB for the progress line; each spliced into the
    // call's pipe where it can be.
    constexpr uint64_t kStep = uint64_t{64} << 20;
    for (uint64_t left = h.size; fd >= 0 && left > 0;) {
      uint64_t want = std::min<uint64_t>(left, kStep);
      auto copied = tessera::agent::CopyExactly(fd, 1, want);
      if (copied == tessera::agent::Copied::kShort) {
        std::fprintf(stderr, "tessera-copy: %s changed while it was sent\n", item.path.c_str());
        return 1;  // the receiver sees the stream end: nothing under the real name
      }
      if (copied != tessera::agent::Copied::kAll) return 1;
      left -= want;
      sent += want;
      if (progress) {
        std::fprintf(stderr, "\rtessera-copy: %llu of %llu MiB",
                     static_cast<unsigned long long>(sent >> 20),
                     static_cast<unsigned long long>(total >> 20));
      }
    }
    if (fd >= 0) ::close(fd);
  }
  FilecopyHeader end;
  std::string tail = wire::EncodeFilecopyHeader(end);
  if (!WriteFull(1, tail.data(), tail.size())) return 1;
  if (progress) std::fprintf(stderr, "\n");
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: tessera-copy [--move] [--to QUBE] FILE...\n"
               "       qvm-copy FILE...  qvm-move FILE...  qvm-copy-to-vm QUBE FILE...\n"
               "Copies FILEs (directories whole) to another qube's ~/QubesIncoming/<this qube>/,\n"
               "as the policy allows (qubes.Filecopy). Without --to the policy's ask chooses.\n");
  return 2;
}

int RemoveEntry(const char* path, const struct stat*, int type, FTW*) {
  return type == FTW_DP ? ::rmdir(path) : ::unlink(path);
}

}  // namespace

int main(int argc, char** argv) {
  std::string self = tessera::agent::BaseName(argv[0]);
  if (self == "qubes.Filecopy" || (argc == 2 && std::string(argv[1]) == "--receive")) {
    return Receiver().Run();
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--send") {
    return Send(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  bool move = self == "qvm-move";
  std::string target = "@default";
  if (self == "qvm-copy-to-vm") {
    if (args.empty()) return Usage();
    target = args[0];
    args.erase(args.begin());
  }
  std::vector<std::string> files;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--move") {
      move = true;
    } else if (args[i] == "--to" && i + 1 < args.size()) {
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
  if (files.empty()) return Usage();
  // tessera-call beside us runs the call; we are its local program (--send).
  std::vector<std::string> send = {"--send"};
  send.insert(send.end(), files.begin(), files.end());
  int status = tessera::agent::CallWithSelf(target, "qubes.Filecopy", send);
  if (status == 0 && move) {
    for (const auto& f : files) {
      if (::nftw(f.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        std::fprintf(stderr, "tessera-copy: copied, but could not remove %s: %s\n", f.c_str(),
                     std::strerror(errno));
        status = 1;
      }
    }
  }
  return status;
}
