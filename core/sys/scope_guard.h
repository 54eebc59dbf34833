// Runs a function at scope exit unless cancel() marked the commit point.
#pragma once

#include <utility>

namespace cryo {

template <typename F>
class [[nodiscard]] ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ScopeGuard(ScopeGuard&& other) noexcept : f_(std::move(other.f_)), active_(std::exchange(other.active_, false)) {}
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ~ScopeGuard() {
    if (active_) f_();
  }
  void cancel() { active_ = false; }
  // Runs the function now (once), as leaving the scope would.
  void run_now() {
    if (std::exchange(active_, false)) f_();
  }

 private:
  F f_;
  bool active_ = true;
};

}  // namespace cryo
