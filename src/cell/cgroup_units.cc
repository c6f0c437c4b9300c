#include "cell/cgroup_units.h"

#include <string_view>

#include "common/paths.h"

namespace tessera::cell {

std::string ScopeUnitName(const std::string& runtime_dir, const std::string& qube) {
  if (runtime_dir == kDefaultRuntimeDir) return "tessera-" + qube + ".scope";
  return "tessera-" + InstanceTag(runtime_dir) + "-" + qube + ".scope";
}

bool IsQubeScopeDir(const std::string& dir) {
  std::string_view root = kDefaultCgroupRoot;
  if (dir.size() <= root.size() + 1 || dir.compare(0, root.size(), root) != 0 ||
      dir[root.size()] != '/') {
    return false;
  }
  std::string_view last;
  size_t pos = root.size() + 1;
  while (pos <= dir.size()) {
    size_t end = dir.find('/', pos);
    if (end == std::string::npos) end = dir.size();
    std::string_view part(dir.data() + pos, end - pos);
    if (part.empty() || part == "." || part == "..") return false;
    last = part;
    pos = end + 1;
  }
  constexpr std::string_view kPrefix = "tessera-", kSuffix = ".scope";
  return last.size() > kPrefix.size() + kSuffix.size() &&
         last.substr(0, kPrefix.size()) == kPrefix &&
         last.substr(last.size() - kSuffix.size()) == kSuffix;
}

}  // namespace tessera::cell
