#include "cell/cell_record.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cell/cgroup_units.h"
#include "common/fs.h"

namespace tessera::cell {

using nlohmann::json;

Result<uint64_t> StartTime(pid_t pid) {
  std::string stat = TRY(ReadFile("/proc/" + std::to_string(pid) + "/stat", 4096));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return Err(Error("malformed /proc stat", EPROTO));
  size_t pos = paren + 2;
  for (int field = 3; field < 22; ++field) {
    pos = stat.find(' ', pos);
    if (pos == std::string::npos) return Err(Error("malformed /proc stat", EPROTO));
    ++pos;
  }
  return std::strtoull(stat.c_str() + pos, nullptr, 10);
}

Result<QubeLock> QubeLock::Acquire(const storage::Layout& layout, const std::string& name,
                                   bool wait) {
  TRY(MakeDirs(layout.runtime_dir + "/cells", 0700));
  QubeLock lock;
  lock.path_ = layout.runtime_dir + "/cells/." + name + ".lock";
  for (int attempt = 0; attempt < 100; ++attempt) {
    UniqueFd fd(::open(lock.path_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Err(Error::FromErrno("open " + lock.path_));
    int rc;
    do {
      rc = ::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      if (errno == EWOULDBLOCK) {
        return Err(
            Error("qube " + name + " is being started or stopped by another process", EBUSY));
      }
      return Err(Error::FromErrno("flock " + lock.path_));
    }
    struct stat held, now;
    if (::fstat(fd.get(), &held) == 0 && ::stat(lock.path_.c_str(), &now) == 0 &&
        held.st_ino == now.st_ino && held.st_dev == now.st_dev) {
      lock.fd_ = std::move(fd);
      return lock;
    }
  }
  return Err(Error("could not lock " + lock.path_, EAGAIN));
}

QubeLock::~QubeLock() {
  if (fd_) (void)::unlink(path_.c_str());
}

Status WriteCellRecord(const std::string& path, const CellRecord& r) {
  json j = {{"name", r.name},
            {"init_pid", r.pid},
            {"start_time", r.start_time},
            {"cgroups", r.cgroups},
            {"format", 1}};
  if (!r.cgroup_unit.empty()) j["cgroup_unit"] = r.cgroup_unit;
  // The record lives in the runtime dir, which does not survive a reboot by
  // design (tmpfs): only a crash of this process matters.
  return WriteFileAtomic(path, j.dump(2) + "\n", 0600, Durability::kCrashSafe);
}

Result<CellRecord> ReadCellRecord(const std::string& path) {
  std::string text = TRY(ReadFile(path, 1 << 20));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string() ||
      !j.contains("init_pid") || !j["init_pid"].is_number_integer() || !j.contains("start_time") ||
      !j["start_time"].is_number_unsigned()) {
    return Err(Error(path + ": malformed cell record", EPROTO));
  }
  CellRecord r;
  r.name = j["name"].get<std::string>();
  r.pid = j["init_pid"].get<pid_t>();
  r.start_time = j["start_time"].get<uint64_t>();
  if (j.contains("cgroups")) {
    if (!j["cgroups"].is_array()) return Err(Error(path + ": malformed cell record", EPROTO));
    for (const auto& dir : j["cgroups"]) {
      if (!dir.is_string()) return Err(Error(path + ": malformed cell record", EPROTO));
      r.cgroups.push_back(dir.get<std::string>());
    }
  }
  if (j.contains("cgroup_unit")) {
    if (!j["cgroup_unit"].is_string()) return Err(Error(path + ": malformed cell record", EPROTO));
    r.cgroup_unit = j["cgroup_unit"].get<std::string>();
    const std::string& unit = r.cgroup_unit;
    if (r.cgroups.size() != 1 || !IsQubeScopeDir(r.cgroups[0], r.name) ||
        r.cgroups[0].substr(r.cgroups[0].rfind('/') + 1) != unit) {
      return Err(
          Error(path + ": cgroup unit " + unit + " without its one qube scope directory", EPROTO));
    }
  }
  return r;
}

bool PidfdExited(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

void KillChild(int pidfd, pid_t pid) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  while (::waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
  }
}

}  // namespace tessera::cell
