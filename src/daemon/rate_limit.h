#pragma once
// A token bucket: `rate` events per second on average, bursts of `burst`.
// The daemon bounds with it what untrusted peers can make it do: frames from
// one qube's agent, audit records of refused admin requests, seccomp reports.
//
//   TokenBucket frames(20000, 5000);
//   if (!frames.Take()) { pause reading; retry after frames.WaitFor() }

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace tessera::daemon {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate_per_second, double burst)
      : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(Clock::now()) {}

  // Takes `n` tokens if there are that many.
  bool Take(double n = 1, Clock::time_point now = Clock::now()) {
    Refill(now);
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }
  // How long until `n` tokens are there.
  std::chrono::milliseconds WaitFor(double n = 1, Clock::time_point now = Clock::now()) {
    Refill(now);
    if (tokens_ >= n) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(static_cast<int64_t>((n - tokens_) * 1000.0 / rate_) + 1);
  }

 private:
  void Refill(Clock::time_point now) {
    double seconds = std::chrono::duration<double>(now - last_).count();
    if (seconds > 0) {
      tokens_ = std::min(burst_, tokens_ + seconds * rate_);
      last_ = now;
    }
  }

  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace tessera::daemon
