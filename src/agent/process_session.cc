#include "agent/process_session.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace tessera::agent {

pid_t SessionOfStat(std::string_view stat) {
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return -1;
  // ") S ppid pgrp session ...": the fourth field after the name.
  std::string_view rest = stat.substr(close + 1);
  int field = 0;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t start = i;
    while (i < rest.size() && rest[i] != ' ') ++i;
    if (start == i) break;
    if (++field == 4) {
      std::string value(rest.substr(start, i - start));
      char* end = nullptr;
      long v = std::strtol(value.c_str(), &end, 10);
      return (end != nullptr && *end == '\0' && v > 0) ? static_cast<pid_t>(v) : -1;
    }
  }
  return -1;
}

int SignalSession(pid_t session_id, int signo, const char* proc) {
  DIR* dir = ::opendir(proc);
  if (dir == nullptr) return 0;
  int count = 0;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 1 || end == e->d_name || *end != '\0') continue;
    int fd =
        ::openat(::dirfd(dir), (std::string(e->d_name) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // gone meanwhile
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    ::close(fd);
    if (n <= 0) continue;
    if (SessionOfStat(std::string_view(buf, static_cast<size_t>(n))) != session_id) continue;
    if (::kill(static_cast<pid_t>(pid), signo) == 0) ++count;
  }
  ::closedir(dir);
  return count;
}

}  // namespace tessera::agent
