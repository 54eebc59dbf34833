// The pure parts of rescue frames: which vDSO epilogues are understood, and
// the signal frame's layout as rt_sigreturn reads it.
#include "core/ptrace/rescue.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace cryo;

namespace {

int64_t slot_of(std::initializer_list<uint8_t> code, int64_t* lowest = nullptr) {
  std::vector<uint8_t> bytes(code);
  int64_t slot = -1, low = 1;
  if (!ptrace::emulate_return(bytes.data(), bytes.size(), &slot, &low)) return -1000;
  if (lowest) *lowest = low;
  return slot;
}

uint64_t u64_at(const std::string& s, size_t at) {
  uint64_t v;
  std::memcpy(&v, s.data() + at, 8);
  return v;
}

}  // namespace

TEST_CASE("emulate_return follows the epilogues of this kernel's vDSO") {
  // gettimeofday's fallback: leave; xor x8; ret
  int64_t lowest = 1;
  CHECK(slot_of({0xc9, 0x31, 0xd2, 0x31, 0xc9, 0x31, 0xf6, 0x31, 0xff, 0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9, 0x45, 0x31,
                 0xd2, 0x45, 0x31, 0xdb, 0xc3},
                &lowest) == 8);
  CHECK(lowest == 0);
  // clock_gettime's: lea -0x10(%rbp),%rsp; pop %rbx; pop %r14; pop %rbp; xor...; ret
  CHECK(slot_of({0x48, 0x8d, 0x65, 0xf0, 0x5b, 0x41, 0x5e, 0x5d, 0x31, 0xd2, 0xc3}, &lowest) == 8);
  CHECK(lowest == -16);
  // add $0x30,%rsp; pops; ret
  CHECK(slot_of({0x48, 0x83, 0xc4, 0x30, 0x5b, 0x41, 0x5c, 0xc3}) == 0x30 + 16);
}

TEST_CASE("emulate_return refuses what it cannot follow") {
  CHECK(slot_of({0x48, 0x83, 0xf8, 0x20, 0xc3}) == -1000);  // cmp: a branch may follow
  CHECK(slot_of({0x31, 0xe4, 0xc3}) == -1000);              // xor %esp,%esp
  CHECK(slot_of({0x5d, 0xc9, 0xc3}) == -1000);              // leave after rbp was popped
  CHECK(slot_of({0x5c, 0xc3}) == -1000);                    // pop %rsp
  CHECK(slot_of({0x90, 0xc3}) == -1000);                    // anything else
  CHECK(slot_of({0x5b}) == -1000);                          // no ret
}

TEST_CASE("sigreturn_frame lays out an x86-64 rt_sigframe") {
  user_regs_struct regs{};
  regs.r8 = 8;
  regs.r15 = 15;
  regs.rdi = 100;
  regs.rax = 200;
  regs.rsp = 0x7ffd0000;
  regs.rip = 0x401000;
  regs.eflags = 0x246;
  regs.cs = 0x33;
  regs.ss = 0x2b;
  std::string f = ptrace::sigreturn_frame(regs, 0x5a5a, 0xabc, 0x7000);
  REQUIRE(f.size() == 440);
  CHECK(u64_at(f, 0) == 0xabc);       // pretcode: where the `ret` lands
  CHECK(u64_at(f, 8) == 7);           // uc_flags: FP_XSTATE | SIGCONTEXT_SS | STRICT_RESTORE_SS
  uint32_t ss_flags;
  std::memcpy(&ss_flags, f.data() + 24 + 8, 4);
  CHECK(ss_flags == 3);               // an invalid uc_stack: the alternate stack is left alone
  CHECK(u64_at(f, 48) == 8);          // sigcontext.r8
  CHECK(u64_at(f, 48 + 7 * 8) == 15);  // r15
  CHECK(u64_at(f, 48 + 8 * 8) == 100);  // rdi
  CHECK(u64_at(f, 48 + 13 * 8) == 200);  // rax
  CHECK(u64_at(f, 48 + 15 * 8) == 0x7ffd0000);  // rsp
  CHECK(u64_at(f, 48 + 16 * 8) == 0x401000);    // rip
  CHECK(u64_at(f, 48 + 17 * 8) == 0x246);       // eflags
  uint16_t cs, ss;
  std::memcpy(&cs, f.data() + 48 + 144, 2);
  std::memcpy(&ss, f.data() + 48 + 150, 2);
  CHECK(cs == 0x33);
  CHECK(ss == 0x2b);
  CHECK(u64_at(f, 48 + 184) == 0x7000);  // fpstate
  CHECK(u64_at(f, 304) == 0x5a5a);       // uc_sigmask
}
