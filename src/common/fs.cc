#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/syscall.h"
#include "common/unique_fd.h"

namespace tessera {

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(TRY(Syscall("open " + path, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); })));
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

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    UniqueFd fd(TRY(Syscall("open " + tmp, [&] {
      return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    })));
    size_t done = 0;
    while (done < content.size()) {
      auto n = SyscallSize("write " + tmp, [&] {
        return ::write(fd.get(), content.data() + done, content.size() - done);
      });
      if (!n) {
        ::unlink(tmp.c_str());
        return Err(std::move(n).error());
      }
      done += static_cast<size_t>(*n);
    }
    if (::fsync(fd.get()) != 0) {
      Error e = Error::FromErrno("fsync " + tmp);
      ::unlink(tmp.c_str());
      return Err(std::move(e));
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = Error::FromErrno("rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return Err(std::move(e));
  }
  std::string dir = DirName(path);
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.valid()) ::fsync(dir_fd.get());
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
