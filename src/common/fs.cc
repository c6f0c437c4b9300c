#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"

namespace tessera {

namespace {

Result<std::string> ReadAllFrom(const UniqueFd& fd, const std::string& path, size_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = TRY(SyscallSize("read " + path, [&] { return ::read(fd.get(), buf, sizeof buf); }));
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return Err(Error(path + ": file larger than " + std::to_string(max_bytes) + " bytes", EFBIG));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string_view FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

}  // namespace

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(
      TRY(Syscall("open " + path, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); })));
  return ReadAllFrom(fd, path, max_bytes);
}

Result<std::string> ReadRegularFile(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  UniqueFd fd(TRY(Syscall("open " + path, [&] {
    return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  })));
  struct stat st {};
  TRY(Syscall("fstat " + path, [&] { return ::fstat(fd.get(), &st); }));
  if (!S_ISREG(st.st_mode)) {
    std::string_view kind = FileKind(st.st_mode);
    return Err(Error(path + " is " + std::string(kind) +
                     (kind.starts_with("not") ? "" : ", not a regular file")));
  }
  // A regular file never blocks, but reads should not see EAGAIN semantics.
  int flags = TRY(Syscall("fcntl " + path, [&] { return ::fcntl(fd.get(), F_GETFL); }));
  TRY(Syscall("fcntl " + path, [&] { return ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK); }));
  return ReadAllFrom(fd, path, max_bytes);
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status WriteAll(int fd, std::string_view data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = TRY(SyscallSize("write " + what, [&] {
      return ::write(fd, data.data() + done, data.size() - done);
    }));
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode,
                       Durability durability) {
  std::string tmp = path + ".tmp-XXXXXX";
  UniqueFd fd(TRY(Syscall("create a temporary file for " + path,
                          [&] { return ::mkostemp(tmp.data(), O_CLOEXEC); })));
  bool renamed = false;
  auto remove_tmp = ScopeGuard([&] {
    if (!renamed) ::unlink(tmp.c_str());
  });
  TRY(WriteAll(fd.get(), content, tmp));
  TRY(Syscall("chmod " + tmp, [&] { return ::fchmod(fd.get(), mode); }));
  if (durability == Durability::kSynced) {
    TRY(Syscall("fsync " + tmp, [&] { return ::fsync(fd.get()); }));
  }
  // Closed before the rename: a reader never sees the file while it is open
  // for writing (matters to tools that watch for close-after-write).
  fd.reset();
  TRY(Syscall("rename " + tmp + " to " + path,
              [&] { return ::rename(tmp.c_str(), path.c_str()); }));
  renamed = true;
  if (durability == Durability::kSynced) {
    std::string dir = DirName(path);
    UniqueFd dir_fd(TRY(Syscall("open directory " + dir, [&] {
      return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    })));
    // EINVAL: the file system cannot sync directories (nothing more to do).
    if (::fsync(dir_fd.get()) != 0 && errno != EINVAL) {
      return Err(Error::FromErrno("fsync directory " + dir));
    }
  }
  return Ok();
}

Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return Ok();
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty()) continue;
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return Err(Error::FromErrno("mkdir " + prefix));
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Err(Error::FromErrno("stat " + path));
  if (!S_ISDIR(st.st_mode)) return Err(Error(path + ": exists and is not a directory", ENOTDIR));
  return Ok();
}

}  // namespace tessera
