#include "cell/cgroup_units.h"

#include <string_view>

#include "common/paths.h"

namespace tessera::cell {

std::string ScopeUnitName(const std::string& runtime_dir, const std::string& qube) {
  if (runtime_dir == kDefaultRuntimeDir) return "tessera-" + qube + ".scope";
  return "tessera-" + InstanceTag(runtime_dir) + "-" + qube + ".scope";
}

bool IsScopeUnitOf(std::string_view unit, std::string_view qube) {
  constexpr std::string_view kPrefix = "tessera-", kSuffix = ".scope";
  if (qube.empty() || unit.size() < kPrefix.size() + qube.size() + kSuffix.size() ||
      unit.substr(0, kPrefix.size()) != kPrefix ||
      unit.substr(unit.size() - kSuffix.size()) != kSuffix ||
      unit.substr(unit.size() - kSuffix.size() - qube.size(), qube.size()) != qube) {
    return false;
  }
  std::string_view middle =
      unit.substr(kPrefix.size(), unit.size() - kPrefix.size() - qube.size() - kSuffix.size());
  if (middle.empty()) return true;
  // "<tag>-": InstanceTag's 12 lowercase hex digits.
  return middle.size() == 13 && middle.back() == '-' &&
         middle.substr(0, 12).find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

bool IsQubeScopeDir(const std::string& dir, std::string_view qube) {
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
  return IsScopeUnitOf(last, qube);
}

}  // namespace tessera::cell
