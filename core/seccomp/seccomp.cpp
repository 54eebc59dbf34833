#include "core/seccomp/seccomp.h"

#include <seccomp.h>

#include <map>

namespace cryo::seccomp {
namespace {

const std::map<std::string, scmp_compare>& operators() {
  static const std::map<std::string, scmp_compare> kOps = {
      {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  return kOps;
}

const std::map<std::string, uint32_t>& architectures() {
  static const std::map<std::string, uint32_t> kArches = {
      {"SCMP_ARCH_X86", SCMP_ARCH_X86},         {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64},
      {"SCMP_ARCH_X32", SCMP_ARCH_X32},         {"SCMP_ARCH_ARM", SCMP_ARCH_ARM},
      {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64}, {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS},
      {"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64},   {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32},
      {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL},   {"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64},
      {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32}, {"SCMP_ARCH_PPC", SCMP_ARCH_PPC},
      {"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64},     {"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE},
      {"SCMP_ARCH_S390", SCMP_ARCH_S390},       {"SCMP_ARCH_S390X", SCMP_ARCH_S390X},
      {"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64}};
  return kArches;
}

const std::vector<std::string> kActions = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                           "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE",
                                           "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"};
const std::vector<std::string> kFlags = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                         "SECCOMP_FILTER_FLAG_SPEC_ALLOW"};

Result<uint32_t> action_of(const std::string& name, std::optional<unsigned> errno_ret) {
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_NOTIFY") return Error(EOPNOTSUPP, "seccomp action SCMP_ACT_NOTIFY is not supported by cryo");
  return Error(EINVAL, "unknown seccomp action '" + name + "'");
}

struct FilterCtx {
  scmp_filter_ctx ctx;
  ~FilterCtx() { seccomp_release(ctx); }
};

}  // namespace

Status validate(const Profile& p) {
  CRYO_TRY(action_of(p.default_action, p.default_errno));
  for (auto& a : p.architectures)
    if (!architectures().count(a)) return Error(EINVAL, "unknown seccomp architecture '" + a + "'");
  for (auto& f : p.flags) {
    bool known = false;
    for (auto& k : kFlags) known = known || k == f;
    if (!known) return Error(EINVAL, "seccomp flag '" + f + "' is not supported by cryo");
  }
  for (auto& r : p.rules) {
    CRYO_TRY(action_of(r.action, r.errno_ret));
    for (auto& a : r.args) {
      if (!operators().count(a.op)) return Error(EINVAL, "unknown seccomp operator '" + a.op + "'");
      if (a.index > 5) return Error(EINVAL, "seccomp argument index " + std::to_string(a.index) + " is above 5");
    }
  }
  return {};
}

Status load(const Profile& p) {
  CRYO_TRY(validate(p));
  CRYO_ASSIGN(uint32_t default_action, action_of(p.default_action, p.default_errno));
  FilterCtx filter{seccomp_init(default_action)};
  if (!filter.ctx) return Error(EINVAL, "seccomp_init failed");
  // no_new_privs is the spec's own setting, not a side effect of loading a filter.
  if (int rc = seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_NNP, 0); rc < 0) return Error(-rc, "seccomp: clear NNP");
  for (auto& a : p.architectures) {
    int rc = seccomp_arch_add(filter.ctx, architectures().at(a));
    if (rc < 0 && rc != -EEXIST) return Error(-rc, "seccomp: add architecture " + a);
  }
  for (auto& f : p.flags) {
    int rc = 0;
    if (f == "SECCOMP_FILTER_FLAG_TSYNC") rc = seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (f == "SECCOMP_FILTER_FLAG_LOG") rc = seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_LOG, 1);
    if (f == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") rc = seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_SSB, 1);
    if (rc < 0) return Error(-rc, "seccomp: flag " + f);
  }
  for (auto& rule : p.rules) {
    CRYO_ASSIGN(uint32_t action, action_of(rule.action, rule.errno_ret));
    if (action == default_action) continue;  // libseccomp refuses rules equal to the default
    std::vector<scmp_arg_cmp> conditions;
    bool same_index = rule.args.size() > 1;
    for (auto& a : rule.args) {
      conditions.push_back({a.index, operators().at(a.op), a.value, a.value_two});
      same_index = same_index && a.index == rule.args[0].index;
    }
    for (auto& name : rule.names) {
      int nr = seccomp_syscall_resolve_name(name.c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // not a syscall of these architectures
      int rc = 0;
      if (same_index) {
        // libseccomp cannot compare one argument twice in a rule: one rule per condition (an OR).
        for (auto& c : conditions) {
          rc = seccomp_rule_add_array(filter.ctx, action, nr, 1, &c);
          if (rc < 0) break;
        }
      } else {
        rc = seccomp_rule_add_array(filter.ctx, action, nr, static_cast<unsigned>(conditions.size()),
                                    conditions.empty() ? nullptr : conditions.data());
      }
      if (rc < 0) return Error(-rc, "seccomp: rule for " + name);
    }
  }
  if (int rc = seccomp_load(filter.ctx); rc < 0) return Error(-rc, "seccomp: load filter");
  return {};
}

std::vector<std::string> known_actions() { return kActions; }
std::vector<std::string> known_flags() { return kFlags; }
std::vector<std::string> known_operators() {
  std::vector<std::string> out;
  for (auto& [name, op] : operators()) out.push_back(name);
  return out;
}
std::vector<std::string> known_architectures() {
  std::vector<std::string> out;
  for (auto& [name, arch] : architectures()) out.push_back(name);
  return out;
}

}  // namespace cryo::seccomp
