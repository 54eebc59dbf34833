#include "core/sys/progress.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

namespace cryo::progress {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t us_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(b - a).count());
}

struct State {
  std::mutex mu;
  std::condition_variable cv;
  bool active = false;
  bool stopping = false;
  std::string command;
  Clock::time_point started;
  std::vector<PhaseTime> done;
  std::string current;
  Clock::time_point current_started;
  std::atomic<uint64_t> bytes{0};
  std::thread ticker;
};

State& state() {
  static State s;
  return s;
}

std::string human_bytes(double bytes) {
  char buf[32];
  if (bytes >= 1024.0 * 1024 * 1024)
    snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else
    snprintf(buf, sizeof buf, "%.0f MiB", bytes / (1024.0 * 1024));
  return buf;
}

// One write, so that the line is never torn by another writer of stderr.
void show(const std::string& text) { (void)!::write(STDERR_FILENO, text.data(), text.size()); }

void tick(State& s, uint64_t after_ms) {
  std::unique_lock lock(s.mu);
  bool shown = false;
  // The rate since the first byte moved: steadier than tick to tick, and
  // blind to the phases that move none.
  std::optional<std::pair<Clock::time_point, uint64_t>> first;
  // The line shows as soon as it is due (at once with CRYO_PROGRESS_AFTER_MS=0,
  // however short the command), then at each tick.
  for (bool first_pass = true; !s.stopping; first_pass = false) {
    if (!first_pass) {
      s.cv.wait_for(lock, std::chrono::milliseconds(after_ms < 200 ? 50 : 200));
      if (s.stopping) break;
    }
    Clock::time_point now = Clock::now();
    if (us_between(s.started, now) < after_ms * 1000) continue;
    uint64_t bytes = s.bytes.load(std::memory_order_relaxed);
    if (!first && bytes > 0) first.emplace(now, bytes);
    double seconds = first ? static_cast<double>(us_between(first->first, now)) / 1e6 : 0;
    double rate = seconds > 0 ? static_cast<double>(bytes - first->second) / seconds : 0;
    char elapsed[32];
    snprintf(elapsed, sizeof elapsed, "%.1f s", static_cast<double>(us_between(s.started, now)) / 1e6);
    std::string line = "\r\33[Kcryo " + s.command + ": " + (s.current.empty() ? "working" : s.current) + ", " +
                       human_bytes(static_cast<double>(bytes)) + " of memory, " + human_bytes(rate) + "/s, " + elapsed;
    // Not under the lock: a terminal that blocks (^S) must not stop the dump.
    lock.unlock();
    show(line);
    lock.lock();
    shown = true;
  }
  if (shown) show("\r\33[K");  // the line goes: what follows starts clean
}

}  // namespace

Reporter::Reporter(const std::string& command) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.active = true;
  s.stopping = false;
  s.command = command;
  s.started = Clock::now();
  s.done.clear();
  s.current.clear();
  s.bytes = 0;
  if (!::isatty(STDERR_FILENO)) return;
  uint64_t after_ms = 1000;
  if (const char* env = std::getenv("CRYO_PROGRESS_AFTER_MS")) after_ms = std::strtoull(env, nullptr, 10);
  s.ticker = std::thread([&s, after_ms] { tick(s, after_ms); });
}

Reporter::~Reporter() {
  State& s = state();
  {
    std::lock_guard lock(s.mu);
    s.stopping = true;
    if (!s.current.empty()) s.done.push_back({s.current, us_between(s.current_started, Clock::now())});
    s.current.clear();
    s.active = false;
  }
  s.cv.notify_all();
  if (s.ticker.joinable()) s.ticker.join();
}

void phase(const std::string& name) {
  State& s = state();
  std::lock_guard lock(s.mu);
  if (!s.active) return;
  Clock::time_point now = Clock::now();
  if (!s.current.empty()) s.done.push_back({s.current, us_between(s.current_started, now)});
  s.current = name;
  s.current_started = now;
}

void add_bytes(uint64_t bytes) { state().bytes.fetch_add(bytes, std::memory_order_relaxed); }

std::vector<PhaseTime> phases() {
  State& s = state();
  std::lock_guard lock(s.mu);
  std::vector<PhaseTime> out = s.done;
  if (!s.current.empty()) out.push_back({s.current, us_between(s.current_started, Clock::now())});
  return out;
}

std::string to_json(const std::vector<PhaseTime>& phases) {
  std::string out = "{";
  for (const auto& p : phases) {
    std::string key;
    for (char c : p.name) key += (c == ' ' || c == '-') ? '_' : c;
    if (out.size() > 1) out += ",";
    out += "\"" + key + "_us\":" + std::to_string(p.us);
  }
  return out + "}";
}

uint64_t us_of(const std::vector<PhaseTime>& phases, const std::string& name) {
  uint64_t us = 0;
  for (const auto& p : phases)
    if (p.name == name) us += p.us;
  return us;
}

}  // namespace cryo::progress
