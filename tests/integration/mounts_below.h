#pragma once
// Test helper: what a test left mounted below its temporary directory, so
// its teardown can unmount it before removing the tree.

#include <sys/mount.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tessera::testing {

// Mount points below `base` (not `base` itself), deepest first, from
// /proc/self/mountinfo.
inline std::vector<std::string> MountsBelow(const std::string& base) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    if (point.rfind(base + "/", 0) == 0) out.insert(out.begin(), point);
  }
  return out;
}

// Detaches everything MountsBelow(base) lists.
inline void UnmountBelow(const std::string& base) {
  for (const std::string& m : MountsBelow(base)) ::umount2(m.c_str(), MNT_DETACH);
}

}  // namespace tessera::testing
