// A thread made to run syscalls for cryo (ptrace::Remote) and given back
// exactly as it was.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/ptrace/ptrace.h"
#include "core/ptrace/rescue.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"

namespace cryo::task {

// Syscalls that only the task itself can answer, run inside it with all
// signals blocked. With a rescue plan the thread first gets a rescue frame
// (core/ptrace/rescue.h), so that a cryo killed at any instant leaves it
// whole; without one (a stack cryo cannot vouch for, such as a goroutine's)
// a cryo killed between attach() and the destructor leaves it changed.
class TaskProbe {
 public:
  static constexpr uint64_t kBlockAll = ~0ULL;

  // lent_sp: room another thread lends for the frame (ptrace::lendable_sp).
  static Result<TaskProbe> attach(pid_t tid, uint64_t syscall_ip, const ptrace::RescuePlan* plan,
                                  const std::vector<proc::MapEntry>& maps, uint64_t lent_sp = 0) {
    TaskProbe p;
    p.tid_ = tid;
    CRYO_ASSIGN(p.regs_, ptrace::get_regs(tid));
    CRYO_ASSIGN(p.mask_, ptrace::get_sigmask(tid));
    CRYO_ASSIGN(p.xstate_, ptrace::get_xstate(tid));
    user_regs_struct base = p.regs_;
    if (plan) {
      auto area = ptrace::place_rescue(tid, *plan, maps, p.regs_, p.mask_, p.xstate_, lent_sp);
      if (area.ok()) {
        // Registers before the mask: from here on, whatever cryo does to
        // the thread, rt_sigreturn would undo.
        CRYO_TRY(ptrace::set_regs(tid, area->resting));
        base = area->resting;
        syscall_ip = plan->syscall_ip;
        p.scratch_ = area->scratch;
        p.rescue_lowest_ = area->lowest;
      } else {
        log::debug(area.error().message() + ": its syscalls for cryo run without a rescue frame");
      }
    }
    p.armed_ = true;
    CRYO_TRY(ptrace::set_sigmask(tid, kBlockAll));
    p.remote_.emplace(tid, syscall_ip, base);
    return p;
  }
  TaskProbe(TaskProbe&& o) noexcept
      : tid_(o.tid_),
        regs_(o.regs_),
        mask_(o.mask_),
        xstate_(std::move(o.xstate_)),
        scratch_(o.scratch_),
        rescue_lowest_(o.rescue_lowest_),
        remote_(o.remote_),
        armed_(std::exchange(o.armed_, false)) {}
  ~TaskProbe() {
    if (!armed_) return;
    // Put back exactly what the task had, including an interrupted syscall;
    // the mask first, as the reverse of attach().
    auto b = ptrace::set_sigmask(tid_, mask_);
    auto a = ptrace::set_regs(tid_, regs_);
    if (!a.ok()) log::error(a.error().message());
    if (!b.ok()) log::error(b.error().message());
  }
  ptrace::Remote& remote() { return *remote_; }
  const user_regs_struct& regs() const { return regs_; }
  uint64_t mask() const { return mask_; }
  const std::string& xstate() const { return xstate_; }
  // kScratchSize bytes below the thread's stack for its syscalls' answers
  // (0 without a rescue frame).
  uint64_t scratch() const { return scratch_; }
  // The lowest byte of the rescue frame's area (0 without one): the stack
  // below it is free for more of cryo's (see count_aio in task_dump.cpp).
  uint64_t rescue_lowest() const { return rescue_lowest_; }

 private:
  TaskProbe() = default;
  pid_t tid_ = 0;
  user_regs_struct regs_{};
  uint64_t mask_ = 0;
  std::string xstate_;
  uint64_t scratch_ = 0;
  uint64_t rescue_lowest_ = 0;
  std::optional<ptrace::Remote> remote_;
  bool armed_ = false;
};

}  // namespace cryo::task
