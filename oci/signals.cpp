// Signal names as runc accepts them: "KILL", "SIGKILL", "kill", "9".
#include <signal.h>

#include <cctype>
#include <map>

#include "oci/container.h"

namespace cryo::oci {

Result<int> parse_signal(const std::string& text) {
  static const std::map<std::string, int> kSignals = {
      {"ABRT", SIGABRT}, {"ALRM", SIGALRM},     {"BUS", SIGBUS},     {"CHLD", SIGCHLD}, {"CONT", SIGCONT},
      {"FPE", SIGFPE},   {"HUP", SIGHUP},       {"ILL", SIGILL},     {"INT", SIGINT},   {"IO", SIGIO},
      {"IOT", SIGIOT},   {"KILL", SIGKILL},     {"PIPE", SIGPIPE},   {"POLL", SIGPOLL}, {"PROF", SIGPROF},
      {"PWR", SIGPWR},   {"QUIT", SIGQUIT},     {"SEGV", SIGSEGV},   {"STKFLT", SIGSTKFLT},
      {"STOP", SIGSTOP}, {"SYS", SIGSYS},       {"TERM", SIGTERM},   {"TRAP", SIGTRAP}, {"TSTP", SIGTSTP},
      {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},     {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
      {"VTALRM", SIGVTALRM}, {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}};
  if (text.empty()) return Error(EINVAL, "empty signal");
  if (std::isdigit(static_cast<unsigned char>(text[0]))) {
    for (char c : text)
      if (!std::isdigit(static_cast<unsigned char>(c))) return Error(EINVAL, "invalid signal '" + text + "'");
    if (text.size() > 3) return Error(EINVAL, "invalid signal number " + text);
    int n = std::stoi(text);
    if (n <= 0 || n > SIGRTMAX) return Error(EINVAL, "invalid signal number " + text);
    return n;
  }
  std::string name;
  for (char c : text) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.starts_with("SIG")) name = name.substr(3);
  if (auto it = kSignals.find(name); it != kSignals.end()) return it->second;
  if (name.starts_with("RTMIN") || name.starts_with("RTMAX")) {
    bool min = name.starts_with("RTMIN");
    std::string rest = name.substr(5);
    int offset = 0;
    if (!rest.empty()) {
      if ((rest[0] != '+' && rest[0] != '-') || rest.size() < 2) return Error(EINVAL, "invalid signal '" + text + "'");
      if (rest.size() > 3 || !std::isdigit(static_cast<unsigned char>(rest[1]))) return Error(EINVAL, "invalid signal '" + text + "'");
      offset = std::stoi(rest);
    }
    int n = (min ? SIGRTMIN : SIGRTMAX) + offset;
    if (n < SIGRTMIN || n > SIGRTMAX) return Error(EINVAL, "invalid signal '" + text + "'");
    return n;
  }
  return Error(EINVAL, "unknown signal '" + text + "'");
}

}  // namespace cryo::oci
