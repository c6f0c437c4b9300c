#include "common/rearm_pages.h"

#include <sys/mman.h>

#include <cinttypes>
#include <cstdio>
#include <sstream>
#include <string>

#include "common/fs.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace tessera {

Status RearmHeapAfterClone() {
  std::string maps = TRY(ReadFile("/proc/self/maps", 16u << 20));
  std::istringstream lines(maps);
  std::string line;
  Status result = Ok();
  while (std::getline(lines, line)) {
    // "start-end perms offset dev inode  [heap]"
    bool heap = line.size() > 6 && line.compare(line.size() - 6, 6, "[heap]") == 0;
    bool stack = line.size() > 7 && line.compare(line.size() - 7, 7, "[stack]") == 0;
    if (!heap && !stack) continue;
    uintptr_t start = 0;
    uintptr_t end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %4s", &start, &end, perms) != 3 ||
        end <= start || perms[0] != 'r' || perms[1] != 'w') {
      continue;
    }
    if (::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_WRITE) != 0 &&
        result) {
      result = Err(Error::FromErrno(std::string("madvise MADV_POPULATE_WRITE ") +
                                    (heap ? "[heap]" : "[stack]")));
    }
  }
  return result;
}

}  // namespace tessera
