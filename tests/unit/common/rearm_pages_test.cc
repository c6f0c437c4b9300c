// After a fork and the child's exec, the parent's heap pages would trap
// once each on their next write; re-armed, they do not.

#include "common/rearm_pages.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

namespace tessera {
namespace {

#if defined(__SANITIZE_ADDRESS__)
#define TESSERA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TESSERA_ASAN 1
#endif
#endif

void ForkAndExecTrue() {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl("/bin/true", "true", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
}

TEST(RearmPages, WritesAfterACloneNoLongerTrapOncePerPage) {
#ifdef TESSERA_ASAN
  GTEST_SKIP() << "ASan's allocator keeps malloc'd blocks outside [heap]";
#endif
  // Small blocks come from the main arena, in [heap]; each spans a page.
  constexpr size_t kBlocks = 256;
  constexpr size_t kSize = 4096;
  std::vector<std::unique_ptr<char[]>> blocks;
  for (size_t i = 0; i < kBlocks; ++i) {
    blocks.emplace_back(new char[kSize]);
    std::memset(blocks.back().get(), 1, kSize);
  }
  auto faults_writing = [&] {
    rusage before{}, after{};
    ::getrusage(RUSAGE_THREAD, &before);
    for (auto& b : blocks) {
      b[0] = 2;
      b[kSize - 1] = 2;
    }
    ::getrusage(RUSAGE_THREAD, &after);
    return after.ru_minflt - before.ru_minflt;
  };
  ForkAndExecTrue();
  const long plain = faults_writing();
  ForkAndExecTrue();
  ASSERT_TRUE(RearmHeapAfterClone());
  const long rearmed = faults_writing();
  EXPECT_GE(plain, static_cast<long>(kBlocks));  // what this fixes: a trap per page
  EXPECT_LT(rearmed, static_cast<long>(kBlocks / 16));
}

}  // namespace
}  // namespace tessera
