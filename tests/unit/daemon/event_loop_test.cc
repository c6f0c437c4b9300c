// The daemon's loop: descriptor watches, timers, posts from other threads,
// sources destroyed from their own callbacks, the worker pool.

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "unit/daemon/loop_support.h"

namespace tessera::daemon {
namespace {

using testing::RunUntil;

TEST(EventLoop, TimersFireInOrderAndResetOnesDoNot) {
  auto loop = *EventLoop::Create();
  std::vector<int> fired;
  auto a = loop->After(std::chrono::milliseconds(20), [&] { fired.push_back(2); });
  auto b = loop->After(std::chrono::milliseconds(5), [&] { fired.push_back(1); });
  auto c = loop->After(std::chrono::milliseconds(10), [&] { fired.push_back(99); });
  c.Reset();
  ASSERT_TRUE(RunUntil(*loop, [&] { return fired.size() == 2; }));
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

TEST(EventLoop, WatchesSeeReadableDescriptorsAndMayDestroyThemselves) {
  auto loop = *EventLoop::Create();
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  int calls = 0;
  EventLoop::Watch watch;
  watch = *loop->WatchFd(efd.get(), EPOLLIN, [&](uint32_t) {
    uint64_t n;
    (void)!::read(efd.get(), &n, sizeof(n));
    ++calls;
    watch.Reset();  // from inside its own callback
  });
  uint64_t one = 1;
  ASSERT_EQ(::write(efd.get(), &one, sizeof(one)), 8);
  ASSERT_TRUE(RunUntil(*loop, [&] { return calls == 1; }));
  ASSERT_EQ(::write(efd.get(), &one, sizeof(one)), 8);
  RunUntil(*loop, [] { return false; }, std::chrono::milliseconds(50));
  EXPECT_EQ(calls, 1) << "a reset watch fired again";
}

TEST(EventLoop, PostsFromOtherThreadsRunOnTheLoop) {
  auto loop = *EventLoop::Create();
  std::atomic<int> ran{0};
  std::thread::id loop_thread = std::this_thread::get_id();
  bool on_loop = true;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 100; ++j) {
        loop->Post([&] {
          on_loop = on_loop && std::this_thread::get_id() == loop_thread;
          ++ran;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(RunUntil(*loop, [&] { return ran == 400; }));
  EXPECT_TRUE(on_loop);
}

TEST(WorkerPool, RunsWorkAwayFromTheLoopAndHandsResultsBack) {
  auto loop = *EventLoop::Create();
  WorkerPool pool(*loop, 2);
  std::thread::id loop_thread = std::this_thread::get_id();
  std::vector<int> results;
  bool work_off_loop = true;
  for (int i = 0; i < 10; ++i) {
    pool.Run<std::unique_ptr<int>>(
        [&, i] {
          work_off_loop = work_off_loop && std::this_thread::get_id() != loop_thread;
          return std::make_unique<int>(i);  // move-only results are fine
        },
        [&](std::unique_ptr<int> r) { results.push_back(*r); });
  }
  ASSERT_TRUE(RunUntil(*loop, [&] { return results.size() == 10; }));
  EXPECT_TRUE(work_off_loop);
  std::sort(results.begin(), results.end());
  EXPECT_EQ(results.front(), 0);
  EXPECT_EQ(results.back(), 9);
}

}  // namespace
}  // namespace tessera::daemon
