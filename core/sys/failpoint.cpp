#include "core/sys/failpoint.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <map>
#include <string>

namespace cryo {
namespace {

struct Spec {
  std::string name;  // empty: count every step
  long target = 0;
};

// Parsed once; an unset, empty or malformed variable selects nothing.
const Spec& spec() {
  static const Spec parsed = [] {
    Spec s;
    const char* env = ::getenv("CRYO_FAILPOINT");
    if (!env || !*env) return s;
    std::string text = env;
    if (text[0] == '@') {
      s.target = ::strtol(text.c_str() + 1, nullptr, 10);
      return s;
    }
    size_t colon = text.rfind(':');
    s.name = text.substr(0, colon);
    s.target = colon == std::string::npos ? 1 : ::strtol(text.c_str() + colon + 1, nullptr, 10);
    return s;
  }();
  return parsed;
}

}  // namespace

void failpoint(const char* name) {
  const Spec& s = spec();
  if (s.target <= 0) return;
  static long steps = 0;
  static std::map<std::string, long> seen;
  long step = ++steps;
  long nth = ++seen[name];
  bool hit = s.name.empty() ? step == s.target : (s.name == name && nth == s.target);
  if (!hit) return;
  char line[256];
  int n = snprintf(line, sizeof line, "failpoint %s #%ld (step %ld)\n", name, nth, step);
  if (n > 0) (void)!::write(STDERR_FILENO, line, static_cast<size_t>(n) < sizeof line ? n : sizeof line - 1);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace cryo
