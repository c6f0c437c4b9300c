#pragma once
// ScopeGuard runs a callable when it leaves scope unless dismissed.
//
//   auto cleanup = ScopeGuard([&] { rmdir(dir.c_str()); });
//   TRY(Populate(dir));
//   cleanup.Dismiss();  // success: keep the directory

#include <utility>

namespace tessera {

template <class F>
class ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ~ScopeGuard() {
    if (active_) f_();
  }
  void Dismiss() { active_ = false; }

 private:
  F f_;
  bool active_ = true;
};

}  // namespace tessera
