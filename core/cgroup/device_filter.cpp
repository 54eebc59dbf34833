#include "core/cgroup/device_filter.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "core/sys/io.h"

namespace cryo::cgroup {
namespace {

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

bpf_insn load_u32(uint8_t dst, int16_t off) { return insn(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_1, off, 0); }
bpf_insn jump_if_not(uint8_t reg, int32_t value) { return insn(BPF_JMP | BPF_JNE | BPF_K, reg, 0, 0, value); }
bpf_insn return_value(int32_t value) { return insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, value); }
bpf_insn exit_insn() { return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

int32_t access_mask(const std::string& access) {
  int32_t mask = 0;
  for (char c : access) {
    if (c == 'r') mask |= BPF_DEVCG_ACC_READ;
    if (c == 'w') mask |= BPF_DEVCG_ACC_WRITE;
    if (c == 'm') mask |= BPF_DEVCG_ACC_MKNOD;
  }
  return mask;
}

}  // namespace

std::vector<bpf_insn> device_filter_program(const std::vector<DeviceRule>& rules) {
  // r2 = device type, r3 = requested access, r4 = major, r5 = minor.
  std::vector<bpf_insn> prog = {
      load_u32(BPF_REG_2, 0), insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff),
      load_u32(BPF_REG_3, 0), insn(BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16),
      load_u32(BPF_REG_4, 4), load_u32(BPF_REG_5, 8)};
  const int32_t all = BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD;
  // The last matching rule decides, so test the rules from the last one back.
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    std::vector<bpf_insn> block;
    if (it->type != 'a') block.push_back(jump_if_not(BPF_REG_2, it->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR));
    int32_t mask = access_mask(it->access);
    if (mask != all) {
      // The rule covers the request only when every requested bit is in the rule.
      block.push_back(insn(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0));
      block.push_back(insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, ~mask & all));
      block.push_back(jump_if_not(BPF_REG_1, 0));
    }
    if (it->type != 'a' && it->major >= 0) block.push_back(jump_if_not(BPF_REG_4, static_cast<int32_t>(it->major)));
    if (it->type != 'a' && it->minor >= 0) block.push_back(jump_if_not(BPF_REG_5, static_cast<int32_t>(it->minor)));
    block.push_back(return_value(it->allow ? 1 : 0));
    block.push_back(exit_insn());
    // Every conditional jump skips to the end of its block.
    for (size_t i = 0; i < block.size(); i++)
      if (block[i].code == (BPF_JMP | BPF_JNE | BPF_K)) block[i].off = static_cast<int16_t>(block.size() - i - 1);
    prog.insert(prog.end(), block.begin(), block.end());
    // A rule matching everything ends the program: the verifier refuses unreachable code.
    if (block.size() == 2) return prog;
  }
  prog.push_back(return_value(0));
  prog.push_back(exit_insn());
  return prog;
}

Status attach_device_filter(const std::string& dir, const std::vector<DeviceRule>& rules) {
  std::vector<bpf_insn> prog = device_filter_program(rules);
  static const char kLicense[] = "Apache";
  char log_buf[4096] = {};
  union bpf_attr load;
  std::memset(&load, 0, sizeof load);
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uint64_t>(prog.data());
  load.insn_cnt = static_cast<uint32_t>(prog.size());
  load.license = reinterpret_cast<uint64_t>(kLicense);
  UniqueFd prog_fd(static_cast<int>(::syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load)));
  if (!prog_fd) {
    // Load again with the verifier's log only to explain the failure (a log that overflows is ENOSPC).
    int err = errno;
    load.log_buf = reinterpret_cast<uint64_t>(log_buf);
    load.log_size = sizeof log_buf;
    load.log_level = 1;
    UniqueFd again(static_cast<int>(::syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load)));
    log_buf[sizeof log_buf - 1] = 0;
    return Error(err, std::string("loading the cgroup v2 device filter: ") + log_buf);
  }
  CRYO_ASSIGN(UniqueFd dir_fd, open_file(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  union bpf_attr attach;
  std::memset(&attach, 0, sizeof attach);
  attach.target_fd = static_cast<uint32_t>(dir_fd.get());
  attach.attach_bpf_fd = static_cast<uint32_t>(prog_fd.get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  if (::syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof attach) < 0)
    return errno_error("attaching the device filter to " + dir);
  return {};
}

}  // namespace cryo::cgroup
