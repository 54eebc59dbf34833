#include "oci/caps.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <algorithm>
#include <cstdlib>

#include "core/sys/io.h"
#include "oci/runtime_log.h"

namespace cryo::oci {
namespace {

const char* const kNames[] = {
    "CAP_CHOWN",           "CAP_DAC_OVERRIDE",    "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",          "CAP_KILL",            "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",         "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",       "CAP_NET_RAW",         "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",      "CAP_SYS_RAWIO",       "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",       "CAP_SYS_ADMIN",       "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",    "CAP_SYS_TIME",        "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",           "CAP_AUDIT_WRITE",     "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",    "CAP_MAC_ADMIN",       "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",   "CAP_AUDIT_READ",      "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"};
constexpr int kCount = sizeof(kNames) / sizeof(kNames[0]);

int last_cap() {
  static int last = [] {
    auto text = read_file("/proc/sys/kernel/cap_last_cap");
    return text.ok() ? static_cast<int>(std::strtol(text->c_str(), nullptr, 10)) : kCount - 1;
  }();
  return last;
}

uint64_t mask_of(const std::vector<std::string>& names) {
  uint64_t mask = 0;
  for (auto& n : names) {
    int c = capability_number(n);
    if (c >= 0 && c <= last_cap()) mask |= uint64_t{1} << c;
  }
  return mask;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

Status capset_masks(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; i++) {
    data[i].effective = static_cast<uint32_t>(effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(inheritable >> (32 * i));
  }
  if (::syscall(SYS_capset, &header, data) < 0) return errno_error("capset");
  return {};
}

}  // namespace

int capability_number(const std::string& name) {
  for (int i = 0; i < kCount; i++)
    if (name == kNames[i]) return i;
  return -1;
}

std::vector<std::string> all_capability_names() { return std::vector<std::string>(kNames, kNames + kCount); }

std::vector<std::string> unknown_capabilities(const Capabilities& caps) {
  std::vector<std::string> out;
  for (auto* set : {&caps.bounding, &caps.effective, &caps.inheritable, &caps.permitted, &caps.ambient})
    for (auto& n : *set) {
      int c = capability_number(n);
      if ((c < 0 || c > last_cap()) && std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    }
  return out;
}

std::vector<std::string> unraisable_ambient_capabilities(const Capabilities& caps) {
  uint64_t raisable = mask_of(caps.permitted) & mask_of(caps.inheritable);
  std::vector<std::string> out;
  for (auto& n : caps.ambient) {
    int c = capability_number(n);
    if (c >= 0 && c <= last_cap() && !(raisable & (uint64_t{1} << c))) out.push_back(n);
  }
  return out;
}

void log_ignored_capabilities(const Capabilities& caps) {
  if (auto unknown = unknown_capabilities(caps); !unknown.empty())
    log_warning("ignoring unknown or unavailable capabilities: " + joined(unknown));
  if (auto ambient = unraisable_ambient_capabilities(caps); !ambient.empty())
    log_debug("not raising ambient capabilities that are not both permitted and inheritable: " + joined(ambient));
}

Status apply_user_and_capabilities(const User& user, const std::optional<Capabilities>& caps, bool in_user_ns) {
  uint64_t all = last_cap() >= 63 ? ~uint64_t{0} : (uint64_t{1} << (last_cap() + 1)) - 1;
  if (caps) {
    uint64_t bounding = mask_of(caps->bounding);
    for (int c = 0; c <= last_cap(); c++)
      if (!(bounding & (uint64_t{1} << c)) && ::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
        return errno_error(std::string("drop bounding capability ") + (c < kCount ? kNames[c] : "?"));
  }
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return errno_error("PR_SET_KEEPCAPS");
  // setgroups is denied in a user namespace whose gid_map was written without it.
  if (::setgroups(user.additional_gids.size(), user.additional_gids.data()) < 0 &&
      !(in_user_ns && errno == EPERM && user.additional_gids.empty()))
    return errno_error("setgroups");
  if (::setresgid(user.gid, user.gid, user.gid) < 0) return errno_error("setresgid " + std::to_string(user.gid));
  if (::setresuid(user.uid, user.uid, user.uid) < 0) return errno_error("setresuid " + std::to_string(user.uid));
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return errno_error("PR_SET_KEEPCAPS");
  if (!caps) {
    // No capabilities object: root keeps everything, others get none.
    if (user.uid == 0) return capset_masks(all, all, 0);
    return capset_masks(0, 0, 0);
  }
  CRYO_TRY(capset_masks(mask_of(caps->effective), mask_of(caps->permitted), mask_of(caps->inheritable)));
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return errno_error("clear ambient capabilities");
  for (auto& n : caps->ambient) {
    int c = capability_number(n);
    if (c < 0 || c > last_cap()) continue;
    // EPERM: not permitted and inheritable; skipped as runc does (the runtime logged it).
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0 && errno != EPERM)
      return errno_error("raise ambient capability " + n);
  }
  return {};
}

}  // namespace cryo::oci
