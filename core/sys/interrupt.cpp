#include "core/sys/interrupt.h"

#include <signal.h>
#include <string.h>

#include <string>

namespace cryo {
namespace {

volatile sig_atomic_t g_signal = 0;

void note(int sig) { g_signal = sig; }

}  // namespace

void catch_interrupts() {
  struct sigaction sa{};
  sa.sa_handler = note;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

int interrupted() { return g_signal; }

Status check_interrupt(const char* where) {
  int sig = g_signal;
  if (sig == 0) return {};
  return Error(EINTR, std::string("interrupted by ") + ::sigabbrev_np(sig) + " " + where);
}

}  // namespace cryo
