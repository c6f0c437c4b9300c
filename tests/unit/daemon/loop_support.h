#pragma once
// Drives a daemon EventLoop in a unit test until a condition holds (or a
// deadline passes: then it returns false rather than hanging).

#include <chrono>
#include <functional>

#include "daemon/event_loop.h"

namespace tessera::daemon::testing {

inline bool RunUntil(EventLoop& loop, const std::function<bool()>& done,
                     std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    loop.RunOnce(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace tessera::daemon::testing
