#pragma once
// Finding a program on $PATH, header-only and allocation-light so that the
// static qube tools (which compile no library) and the daemon share it.
//
//   std::string xdg_open = tessera::FindOnPath("xdg-open");   // "" if none

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace tessera {

// An executable regular file?
inline bool IsExecutable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// `name` in the first directory of $PATH that has it as an executable; ""
// if none does. Relative entries of $PATH are ignored.
inline std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (end > start && dirs[start] == '/') {
      std::string candidate = dirs.substr(start, end - start) + "/" + name;
      if (IsExecutable(candidate)) return candidate;
    }
    start = end + 1;
  }
  return "";
}

}  // namespace tessera
