#include "core/task/parked_leader.h"

#include <sys/syscall.h>

#include <map>
#include <optional>
#include <set>

#include "core/sys/failpoint.h"
#include "core/tree/freeze.h"

namespace cryo::task {

Result<bool> run_parked(const std::vector<pid_t>& tids, TaskProbe& leader, const ptrace::RescuePlan* rescue,
                        const std::vector<proc::MapEntry>& maps, const std::vector<uint64_t>& room_sizes,
                        const std::string& step, const std::function<Status(ParkedRoom&)>& body) {
  pid_t tid = leader.remote().tid();
  // The room and the second frame, as low as they go.
  std::optional<ptrace::RescueArea> park;
  uint64_t scratch = 0, size = 0;
  for (uint64_t want : room_sizes) {
    if (!rescue || !leader.rescue_lowest()) break;
    uint64_t at = ((leader.rescue_lowest() - 64) & ~uint64_t{63}) - want;
    user_regs_struct paused = leader.regs();
    paused.rip = rescue->syscall_ip;
    paused.rax = SYS_pause;
    paused.orig_rax = static_cast<unsigned long long>(-1);
    paused.rsp = at;  // the frame goes below the room
    auto area = ptrace::place_rescue(tid, *rescue, maps, paused, TaskProbe::kBlockAll, leader.xstate());
    if (!area.ok()) continue;
    park = *area;
    scratch = at;
    size = want;
    break;
  }
  if (!park) return false;
  CRYO_ASSIGN(Guard guard, Guard::start("", "", {}));
  failpoint((step + ".guarded").c_str());
  uint64_t ip = rescue->syscall_ip;
  std::map<pid_t, tree::ParkedThread> parked;
  CRYO_ASSIGN(user_regs_struct before, ptrace::get_regs(tid));
  bool leader_parked = false;
  Status done = [&]() -> Status {
    for (pid_t t : tids)
      if (t != tid) CRYO_TRY(tree::park_thread(guard, t, ip, &parked));
    failpoint((step + ".parking").c_str());
    CRYO_TRY(guard.parking_on_frame(tid, ip, leader.regs(), leader.mask()));
    CRYO_TRY(ptrace::set_regs(tid, park->resting));  // a death from here on ends in pause()
    leader_parked = true;
    failpoint((step + ".parked").c_str());
    ptrace::Remote r(tid, ip, park->resting);
    ParkedRoom room{r, guard, scratch, size};
    return body(room);
  }();
  // Back as before, the guard told last: should cryo die in between, it
  // still gives back what it knows.
  Status back;
  if (leader_parked) {
    back = ptrace::set_regs(tid, before);
    if (back.ok()) back = guard.unparked(tid);
  }
  for (const auto& [t, was] : parked) {
    Status st = tree::unpark_thread(guard, t, was);
    if (!st.ok() && back.ok()) back = std::move(st);
  }
  guard.release();
  CRYO_TRY(std::move(done));
  CRYO_TRY(std::move(back));
  return true;
}

Result<std::vector<int>> lowest_free_fds(pid_t pid, size_t count) {
  CRYO_ASSIGN(auto fds, proc::list_fds(pid));
  std::set<int> used(fds.begin(), fds.end());
  std::vector<int> out;
  for (int fd = 0; out.size() < count; fd++)
    if (!used.count(fd)) out.push_back(fd);
  return out;
}

Result<int> lowest_free_fd(pid_t pid) {
  CRYO_ASSIGN(auto fds, lowest_free_fds(pid, 1));
  return fds.front();
}

}  // namespace cryo::task
