// seccomp filters built with libseccomp from a plain description.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::seccomp {

struct ArgCondition {
  unsigned index = 0;
  uint64_t value = 0, value_two = 0;
  std::string op;  // SCMP_CMP_EQ ...
};

struct Rule {
  std::vector<std::string> names;
  std::string action;  // SCMP_ACT_ERRNO ...
  std::optional<unsigned> errno_ret;
  std::vector<ArgCondition> args;
};

struct Profile {
  std::string default_action;
  std::optional<unsigned> default_errno;
  std::vector<std::string> architectures;  // SCMP_ARCH_X86_64 ...
  std::vector<std::string> flags;          // SECCOMP_FILTER_FLAG_LOG ...
  std::vector<Rule> rules;
  std::string listener_path;
};

// Checks names of actions, operators, architectures and flags.
Status validate(const Profile& profile);
// Builds and loads the filter into the calling thread. Unknown syscall names
// are skipped (as other runtimes do), unknown actions are errors.
Status load(const Profile& profile);
// The action, architecture and flag names this build knows (for `features`).
std::vector<std::string> known_actions();
std::vector<std::string> known_operators();
std::vector<std::string> known_architectures();
std::vector<std::string> known_flags();

}  // namespace cryo::seccomp
