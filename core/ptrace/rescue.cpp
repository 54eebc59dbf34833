#include "core/ptrace/rescue.h"

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>

#include "core/ptrace/ptrace.h"
#include "core/sys/io.h"

namespace cryo::ptrace {
namespace {

// The kernel's x86-64 signal frame (arch/x86: struct rt_sigframe), as
// rt_sigreturn reads it at rsp - 8.
constexpr size_t kUcFlags = 8, kUcStack = 24, kMcontext = 48, kSigmask = 304, kFrameSize = 440;
constexpr uint64_t kUcFpXstate = 1, kUcSigcontextSs = 2, kUcStrictRestoreSs = 4;
constexpr uint32_t kFpXstateMagic1 = 0x46505853, kFpXstateMagic2 = 0x46505845;
constexpr size_t kSwReserved = 464;  // struct _fpx_sw_bytes inside the legacy FXSAVE area
constexpr uint64_t kRedZone = 128;

void put64(std::string& buf, size_t at, uint64_t v) { std::memcpy(buf.data() + at, &v, 8); }

// "mov $15, %eax; syscall" and "mov $15, %rax; syscall": glibc's and musl's
// __restore_rt, Go's runtime.sigreturn.
constexpr std::string_view kSigreturn32("\xb8\x0f\x00\x00\x00\x0f\x05", 7);
constexpr std::string_view kSigreturn64("\x48\xc7\xc0\x0f\x00\x00\x00\x0f\x05", 9);

// Where the gadget was found, by file: processes of a tree share their libc.
std::mutex g_gadget_mutex;
std::map<std::string, uint64_t> g_gadget_offset;  // path -> offset in the file

bool mapping_holds(const proc::MapEntry& m, uint64_t file_offset, size_t size) {
  return file_offset >= m.offset && file_offset + size <= m.offset + (m.end - m.start);
}

// The gadget in cryo's own libc, found once in memory cryo already maps: the
// task's libc is most often the same file, where it is then found without
// copying a byte of its code. Returns (path, offset in the file).
const std::pair<std::string, uint64_t>& own_gadget() {
  static const std::pair<std::string, uint64_t> found = [] {
    std::pair<std::string, uint64_t> none;
    auto text = read_file("/proc/self/maps");
    if (!text.ok()) return none;
    auto maps = proc::parse_maps(*text);
    if (!maps.ok()) return none;
    for (const auto& m : *maps) {
      if (!m.exec || !m.read || m.path.find("/libc") == std::string::npos) continue;
      std::string_view code(reinterpret_cast<const char*>(m.start), m.end - m.start);
      size_t hit = code.find(kSigreturn64);
      if (hit == std::string_view::npos) hit = code.find(kSigreturn32);
      if (hit != std::string_view::npos) return std::make_pair(m.path, m.offset + hit);
    }
    return none;
  }();
  return found;
}

bool is_sigreturn_at(pid_t pid, uint64_t at) {
  char bytes[9];
  return read_memory(pid, at, bytes, sizeof bytes).ok() &&
         (std::string_view(bytes, 7) == kSigreturn32 || std::string_view(bytes, 9) == kSigreturn64);
}

Result<uint64_t> find_sigreturn(pid_t pid, const std::vector<proc::MapEntry>& maps) {
  const auto& [own_path, own_offset] = own_gadget();
  for (const auto& m : maps)
    if (m.exec && m.path == own_path && mapping_holds(m, own_offset, kSigreturn64.size()) &&
        is_sigreturn_at(pid, m.start + (own_offset - m.offset)))
      return m.start + (own_offset - m.offset);
  std::vector<const proc::MapEntry*> code;
  for (const auto& m : maps)
    if (m.exec && m.read && !m.path.empty() && m.path[0] == '/') code.push_back(&m);
  // libc first: it has the gadget, and every process of a tree maps the same one.
  std::stable_partition(code.begin(), code.end(),
                        [](const proc::MapEntry* m) { return m->path.find("/libc") != std::string::npos; });
  {
    std::lock_guard lock(g_gadget_mutex);
    for (const auto* m : code) {
      auto it = g_gadget_offset.find(m->path);
      if (it == g_gadget_offset.end() || !mapping_holds(*m, it->second, kSigreturn64.size())) continue;
      uint64_t at = m->start + (it->second - m->offset);
      if (is_sigreturn_at(pid, at)) return at;
    }
  }
  std::string buf;
  for (const auto* m : code) {
    buf.resize(m->end - m->start);
    if (!read_memory(pid, m->start, buf.data(), buf.size()).ok()) continue;
    size_t hit = buf.find(kSigreturn64);
    if (hit == std::string::npos) hit = buf.find(kSigreturn32);
    if (hit == std::string::npos) continue;
    std::lock_guard lock(g_gadget_mutex);
    g_gadget_offset[m->path] = m->offset + hit;
    return m->start + hit;
  }
  return Error(ENOENT, "pid " + std::to_string(pid) + ": no rt_sigreturn in its code");
}

// The stack the thread's stack pointer is in, if cryo can vouch for the room
// below it: the main stack, or a thread stack right above its guard page.
const proc::MapEntry* vouched_stack(const std::vector<proc::MapEntry>& maps, uint64_t sp) {
  for (size_t i = 0; i < maps.size(); i++) {
    const auto& m = maps[i];
    if (sp < m.start || sp >= m.end) continue;
    if (m.path == "[stack]") return &m;
    bool thread_stack = m.path.empty() && m.read && m.write && !m.shared && i > 0 && maps[i - 1].end == m.start &&
                        !maps[i - 1].read && !maps[i - 1].write && !maps[i - 1].exec && maps[i - 1].path.empty();
    return thread_stack ? &m : nullptr;
  }
  return nullptr;
}

}  // namespace

bool emulate_return(const uint8_t* code, size_t size, int64_t* ret_slot, int64_t* lowest_read) {
  int64_t rsp = 0, rbp = 0, lowest = 0;
  bool rbp_known = true;
  auto read_at = [&](int64_t at) { lowest = std::min(lowest, at); };
  for (size_t i = 0; i < size && i < 64;) {
    uint8_t op = code[i];
    if (op == 0xc3) {  // ret
      read_at(rsp);
      *ret_slot = rsp;
      *lowest_read = lowest;
      return true;
    }
    if (op == 0xc9) {  // leave: mov %rbp,%rsp; pop %rbp
      if (!rbp_known) return false;
      rsp = rbp;
      read_at(rsp);
      rsp += 8;
      rbp_known = false;
      i += 1;
    } else if (op >= 0x58 && op <= 0x5f && op != 0x5c) {  // pop (not %rsp)
      read_at(rsp);
      rsp += 8;
      if (op == 0x5d) rbp_known = false;
      i += 1;
    } else if (op == 0x41 && i + 1 < size && code[i + 1] >= 0x58 && code[i + 1] <= 0x5f) {  // pop %r8-%r15
      read_at(rsp);
      rsp += 8;
      i += 2;
    } else if (op == 0x31 && i + 1 < size && (code[i + 1] & 0xc0) == 0xc0) {  // xor r32, r32
      uint8_t reg = (code[i + 1] >> 3) & 7, rm = code[i + 1] & 7;
      if (reg == 4 || reg == 5 || rm == 4 || rm == 5) return false;  // would touch %esp or %ebp
      i += 2;
    } else if ((op == 0x45 || op == 0x44 || op == 0x41) && i + 2 < size && code[i + 1] == 0x31 &&
               (code[i + 2] & 0xc0) == 0xc0) {  // xor of r8d-r15d
      uint8_t reg = (code[i + 2] >> 3) & 7, rm = code[i + 2] & 7;
      if ((!(op & 4) && (reg == 4 || reg == 5)) || (!(op & 1) && (rm == 4 || rm == 5))) return false;
      i += 3;
    } else if (op == 0x48 && i + 3 < size && code[i + 1] == 0x83 && code[i + 2] == 0xc4) {  // add $imm8, %rsp
      rsp += static_cast<int8_t>(code[i + 3]);
      i += 4;
    } else if (op == 0x48 && i + 3 < size && code[i + 1] == 0x8d && code[i + 2] == 0x65) {  // lea d8(%rbp), %rsp
      if (!rbp_known) return false;
      rsp = rbp + static_cast<int8_t>(code[i + 3]);
      i += 4;
    } else {
      return false;
    }
  }
  return false;
}

Result<RescuePlan> plan_rescue(pid_t pid, const std::vector<proc::MapEntry>& maps) {
  RescuePlan plan;
  for (const auto& m : maps) {
    if (m.path != "[vdso]") continue;
    std::string code(m.end - m.start, '\0');
    CRYO_TRY(read_memory(pid, m.start, code.data(), code.size()));
    const auto* bytes = reinterpret_cast<const uint8_t*>(code.data());
    for (size_t i = 0; i + 2 < code.size() && !plan.syscall_ip; i++) {
      if (bytes[i] != 0x0f || bytes[i + 1] != 0x05) continue;
      if (emulate_return(bytes + i + 2, code.size() - i - 2, &plan.ret_slot, &plan.lowest_read))
        plan.syscall_ip = m.start + i;
    }
  }
  if (!plan.syscall_ip) return Error(ENOENT, "pid " + std::to_string(pid) + ": no vDSO syscall that returns plainly");
  CRYO_ASSIGN(plan.sigreturn_ip, find_sigreturn(pid, maps));
  return plan;
}

std::string sigreturn_frame(const user_regs_struct& regs, uint64_t mask, uint64_t pretcode, uint64_t fpstate_at) {
  std::string f(kFrameSize, '\0');
  put64(f, 0, pretcode);
  put64(f, kUcFlags, kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs);
  // An invalid uc_stack makes rt_sigreturn leave the alternate stack alone
  // (its EINVAL is ignored): cryo never learnt it before this frame.
  uint32_t bad_flags = SS_ONSTACK | SS_DISABLE;
  std::memcpy(f.data() + kUcStack + 8, &bad_flags, 4);
  const uint64_t gprs[] = {regs.r8,  regs.r9,  regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15, regs.rdi,
                           regs.rsi, regs.rbp, regs.rbx, regs.rdx, regs.rax, regs.rcx, regs.rsp, regs.rip, regs.eflags};
  for (size_t i = 0; i < std::size(gprs); i++) put64(f, kMcontext + 8 * i, gprs[i]);
  uint16_t cs = static_cast<uint16_t>(regs.cs), ss = static_cast<uint16_t>(regs.ss), zero = 0;
  size_t segs = kMcontext + 8 * std::size(gprs);
  std::memcpy(f.data() + segs, &cs, 2);
  std::memcpy(f.data() + segs + 2, &zero, 2);  // gs
  std::memcpy(f.data() + segs + 4, &zero, 2);  // fs
  std::memcpy(f.data() + segs + 6, &ss, 2);
  put64(f, kMcontext + 184, fpstate_at);  // sigcontext.fpstate
  put64(f, kSigmask, mask);
  return f;
}

uint64_t lendable_sp(const std::vector<proc::MapEntry>& maps, uint64_t sp) {
  const proc::MapEntry* stack = vouched_stack(maps, sp);
  if (!stack || sp - stack->start < kLentDistance + 3 * 4096 * 4) return 0;
  return sp - kLentDistance;
}

Result<RescueArea> place_rescue(pid_t tid, const RescuePlan& plan, const std::vector<proc::MapEntry>& maps,
                                const user_regs_struct& regs, uint64_t mask, const std::string& xstate,
                                uint64_t lent_sp) {
  uint64_t sp = regs.rsp;
  const proc::MapEntry* stack = vouched_stack(maps, sp);
  if (!stack && lent_sp) stack = vouched_stack(maps, sp = lent_sp);
  if (!stack) return Error(ENOENT, "task " + std::to_string(tid) + ": its stack pointer is not in a known stack");
  // The xstate as ptrace gives it (NT_X86_XSTATE) is in the signal frame's
  // format but for the software bytes of the FXSAVE area, where ptrace puts
  // XCR0 and a signal frame describes the extended state and brackets it
  // with magic words, which rt_sigreturn checks.
  std::string fp = xstate;
  if (fp.size() < 576 || fp.size() > (1u << 20))
    return Error(EINVAL, "task " + std::to_string(tid) + ": unexpected xstate size " + std::to_string(fp.size()));
  uint64_t xfeatures;
  std::memcpy(&xfeatures, fp.data() + kSwReserved, 8);
  uint32_t xstate_size = static_cast<uint32_t>(fp.size()), extended_size = xstate_size + 4;
  std::memset(fp.data() + kSwReserved, 0, 48);
  std::memcpy(fp.data() + kSwReserved, &kFpXstateMagic1, 4);
  std::memcpy(fp.data() + kSwReserved + 4, &extended_size, 4);
  std::memcpy(fp.data() + kSwReserved + 8, &xfeatures, 8);
  std::memcpy(fp.data() + kSwReserved + 16, &xstate_size, 4);
  fp.append(reinterpret_cast<const char*>(&kFpXstateMagic2), 4);

  // From the top down: scratch, fpstate (64-byte aligned), the frame, and
  // below it whatever the vDSO's epilogue pops on its way to `ret`.
  uint64_t top = (sp - kRedZone) & ~uint64_t{63};
  uint64_t scratch = top - kScratchSize;
  uint64_t fpstate_at = (scratch - fp.size()) & ~uint64_t{63};
  uint64_t frame_at = (fpstate_at - kFrameSize) & ~uint64_t{15};
  uint64_t base = frame_at - static_cast<uint64_t>(plan.ret_slot);
  uint64_t lowest = base + static_cast<uint64_t>(plan.lowest_read);
  if (lowest < stack->start + 4096 || lowest > sp)
    return Error(ENOSPC, "task " + std::to_string(tid) + ": no room below its stack pointer for a rescue frame");

  std::string area(top - lowest, '\0');
  user_regs_struct own = normalize_restart(regs);
  std::string frame = sigreturn_frame(own, mask, plan.sigreturn_ip, fpstate_at);
  std::memcpy(area.data() + (frame_at - lowest), frame.data(), frame.size());
  std::memcpy(area.data() + (fpstate_at - lowest), fp.data(), fp.size());
  CRYO_TRY(write_memory(tid, lowest, area.data(), area.size()));

  RescueArea out;
  out.resting = regs;
  out.resting.rip = plan.syscall_ip + 2;  // "just returned from a syscall": on to the epilogue and rt_sigreturn
  out.resting.rsp = base;
  out.resting.rbp = base;
  out.resting.orig_rax = static_cast<unsigned long long>(-1);
  out.scratch = scratch;
  out.lowest = lowest;
  return out;
}

}  // namespace cryo::ptrace
