// Work shared out over threads, the first failure stopping it.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/sys/result.h"

namespace cryo {

// Runs work(k) for every k in [0, count) on `threads` threads (this one
// among them), each taking the next k in turn. After a failure no k is
// started any more; the first failure is returned.
template <typename Work>
Status run_parallel(size_t count, unsigned threads, const Work& work) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status failed;
  auto loop = [&] {
    for (size_t k; (k = next.fetch_add(1)) < count;) {
      Status st = work(k);
      if (st.ok()) continue;
      next = count;  // the others stop too
      std::lock_guard lock(mu);
      if (failed.ok()) failed = std::move(st);
    }
  };
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; i++) helpers.emplace_back(loop);
  loop();
  for (auto& t : helpers) t.join();
  return failed;
}

}  // namespace cryo
