#include "core/predump.h"

#include <time.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <optional>
#include <set>

#include "core/checkpoint.h"
#include "core/files/files_dump.h"
#include "core/image/image.h"
#include "core/mm/keeper.h"
#include "core/mm/mm_dump.h"
#include "core/ns/namespaces.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/failpoint.h"
#include "core/sys/interrupt.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"
#include "core/sys/util.h"

namespace cryo {
namespace {

// A userfaultfd of the tree's own would have its registrations taken over
// or disturbed by cryo's; the dump refuses it anyway.
Status refuse_own_userfaultfd(pid_t pid) {
  CRYO_ASSIGN(auto fds, proc::list_fds(pid));
  for (int fd : fds) {
    auto target = read_link("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd));
    if (target.ok() && *target == "anon_inode:[userfaultfd]")
      return Error(pid_str(pid) + " fd " + std::to_string(fd) + ": a userfaultfd of its own is not supported (write "
                   "tracking would take over its memory)");
  }
  return {};
}

// The tree's own registrations (a userfaultfd it passed away or that is in
// flight) show as um/uw in its VmFlags before cryo registers anything.
Status refuse_registered(pid_t pid) {
  CRYO_ASSIGN(std::string smaps, read_file("/proc/" + std::to_string(pid) + "/smaps"));
  CRYO_ASSIGN(auto entries, proc::parse_smaps(smaps));
  for (const auto& [start, e] : entries)
    for (const auto& flag : e.flags)
      if (flag == "um" || flag == "uw")
        return Error(pid_str(pid) + " mapping at " + std::to_string(start) +
                     ": userfaultfd-registered memory is not supported");
  return {};
}

// Whether the process a pidfd names has exited (its pid may be another's now).
bool exited(int pidfd) { return ::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) < 0 && errno == ESRCH; }

// A process whose copy made while the tree runs cannot be finished (it
// exited, most likely): its tracking ends and the frozen dump saves it
// whole; what was copied of it stays in pages.img, superseded.
void drop_from_precopy(Precopy& pre, pid_t pid, const std::string& why) {
  auto pidfd = pre.pidfds.find(pid);
  if (pidfd != pre.pidfds.end() && exited(pidfd->second.get()))
    log::debug(pid_str(pid) + " exited while its memory was copied (" + why + ")");
  else
    log::info(pid_str(pid) + ": its memory is copied frozen instead (" + why + ")");
  if (auto mm = pre.mms.find(pid); mm != pre.mms.end()) {
    pre.dropped.insert(pre.dropped.end(), mm->second.pages().begin(), mm->second.pages().end());
    pre.mms.erase(mm);
  }
  pre.zero.erase(pid);
  pre.registered.erase(pid);
}

}  // namespace

Result<TreeWrites> writes_since(const mm::ParentImage& parent, const tree::FrozenTree& tree,
                                const std::map<pid_t, std::vector<proc::MapEntry>>& maps, bool reprotect,
                                std::map<pid_t, UniqueFd>* taken) {
  TreeWrites out;
  std::map<pid_t, UniqueFd> uffds;
  if (taken) {
    uffds = std::move(*taken);
  } else {
    CRYO_ASSIGN(uffds, mm::take_from_keeper(parent.reader->inventory().tracking()));
  }
  if (uffds.empty()) log::warn("the write tracking of " + parent.path + " is gone: memory is saved whole");
  for (const auto& p : tree.processes()) {
    if (p.zombie || !maps.count(p.pid)) continue;
    auto pm = parent.mm_of(p.pid);
    if (!pm) continue;  // new since the parent: saved whole
    auto uffd = uffds.find(p.pid);
    mm::Ranges unchanged;
    if (uffd != uffds.end()) {
      mm::Ranges tracked;
      for (const auto& r : pm->tracked()) tracked.emplace_back(r.start(), r.end());
      std::sort(tracked.begin(), tracked.end());
      mm::Ranges candidates = mm::intersect(mm::ranges_of(maps.at(p.pid)), tracked);
      auto scanned = mm::scan_written(p.pid, candidates, reprotect);
      if (!scanned.ok() && taken) {  // the tree runs: gone meanwhile, most likely
        log::info(pid_str(p.pid) + ": its tracking since " + parent.path + " could not be read (" +
                  scanned.error().message() + "): its memory is saved whole");
        out.mms.emplace(p.pid, mm::IncrementalMm(*pm, {}));
        continue;
      }
      CRYO_ASSIGN(mm::Written written, std::move(scanned));
      std::sort(written.written.begin(), written.written.end());
      unchanged = mm::subtract(written.trusted, written.written);
      out.trusted[p.pid] = written.trusted;
      out.uffds[p.pid] = std::move(uffd->second);
    }
    out.mms.emplace(p.pid, mm::IncrementalMm(*pm, std::move(unchanged)));
  }
  return out;
}

Result<Tracking> track_writes(const mm::ParentImage* parent, const tree::FrozenTree& tree,
                              const std::map<pid_t, std::vector<proc::MapEntry>>& maps) {
  Tracking t;
  if (parent) {
    CRYO_ASSIGN(t.writes, writes_since(*parent, tree, maps, true));
  }
  // Every process gets a userfaultfd (its own, or the one the parent's
  // keeper held) registered on its private mappings; what was not tracked
  // yet is protected now, while the tree is stopped and before its pages
  // are copied, so a write from here on shows in the next scan.
  for (const auto& [pid, m] : maps) {
    if (!t.writes.uffds.count(pid)) {
      CRYO_TRY(refuse_registered(pid));
      CRYO_ASSIGN(uint64_t syscall_ip, ptrace::find_syscall_insn(pid, m));
      auto made = mm::make_tracker(pid, syscall_ip, m);
      if (!made.ok()) {
        log::warn(pid_str(pid) + ": no write tracking (" + made.error().message() + "): the next dump saves its memory whole");
        continue;
      }
      t.writes.uffds[pid] = std::move(*made);
    }
    int uffd = t.writes.uffds[pid].get();
    t.registered[pid] = mm::register_tracking(uffd, m);
    CRYO_TRY(mm::protect(uffd, mm::subtract(t.registered[pid], t.writes.trusted[pid])).wrap(pid_str(pid)));
  }
  return t;
}

Result<Precopy> precopy(const DumpOptions& options, const mm::ParentImage* parent, image::PageWriter& pages) {
  Precopy pre;
  std::string why;
  CRYO_ASSIGN(bool works, mm::probe_write_tracking(&why));
  if (!works) {
    log::info("memory is copied with the tree frozen: no write tracking here (" + why + ")");
    return pre;
  }
  uint64_t freeze_start = now_us();
  std::optional<cgroup::Freezer> freezer;
  if (!options.freeze_cgroup.empty()) {
    CRYO_ASSIGN(auto opened, cgroup::Freezer::open(options.freeze_cgroup));
    freezer.emplace(std::move(opened));
  }
  // The parent's tracking, taken before the stop: its processes need no
  // new userfaultfd.
  std::map<pid_t, UniqueFd> taken;
  if (parent) {
    CRYO_ASSIGN(taken, mm::take_from_keeper(parent->reader->inventory().tracking()));
  }
  std::map<pid_t, std::vector<proc::MapEntry>> maps;
  std::map<pid_t, pid_t> parent_of;  // in the tree (not the root's)
  std::map<pid_t, mm::IncrementalMm> since_parent;
  // Stopped only to make a userfaultfd inside each process (a syscall run
  // there); registering, write-protecting and reading the parent's tracking
  // need no stop: a page is protected before it is read, and what is
  // written meanwhile shows in the next scan.
  std::map<pid_t, UniqueFd> made;
  freeze_start = now_us();
  CRYO_ASSIGN(auto tree, tree::FrozenTree::freeze(options.pid, options.freeze_timeout_s, freezer ? &*freezer : nullptr));
  CRYO_TRY(check_interrupt("while the tree was being frozen"));
  std::vector<pid_t> pids;  // a tracker a killed cryo left is closed first, as the dump would
  for (const auto& p : tree.processes())
    if (!p.zombie) pids.push_back(p.pid);
  std::set<uint64_t> stale = mm::stale_trackers(pids);
  if (!parent) mm::end_keepers_of(pids);
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(p.pid) + "/maps"));
    CRYO_ASSIGN(maps[p.pid], proc::parse_maps(text));
    CRYO_TRY(mm::close_stale_trackers(p.pid, maps[p.pid], stale));
    if (auto st = refuse_own_userfaultfd(p.pid); !st.ok()) {
      if (parent) return std::move(st).error();
      log::info("memory is copied with the tree frozen: " + st.error().message());
      return Precopy{};
    }
    if (&p != &tree.processes().front()) parent_of[p.pid] = p.stat.ppid;
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
    if (!pidfd.valid()) return errno_error("pidfd_open of " + pid_str(p.pid));
    pre.pidfds[p.pid] = std::move(pidfd);
  }
  mm::clear_tracker_marks(pids);
  for (const auto& [pid, m] : maps) {
    if (taken.count(pid)) continue;
    CRYO_ASSIGN(uint64_t syscall_ip, ptrace::find_syscall_insn(pid, m));
    auto tracker = mm::make_tracker(pid, syscall_ip, m);
    if (!tracker.ok()) {
      log::warn(pid_str(pid) + ": no write tracking (" + tracker.error().message() + "): its memory is copied frozen");
      continue;
    }
    made[pid] = std::move(*tracker);
  }
  failpoint("precopy.tracked");
  tree.thaw();
  pre.started = true;
  uint64_t thawed = now_us();
  pre.freeze_us = thawed - freeze_start;
  // The tree's own registrations (of a userfaultfd it passed away) show as
  // um/uw in its VmFlags until cryo registers anything; read once it runs
  // again: smaps walks every page of the process.
  for (const auto& [pid, fd] : made)
    if (auto st = refuse_registered(pid); !st.ok() && !exited(pre.pidfds.at(pid).get())) {  // one gone is dropped below
      // Memory of its own registered: the dump decides.
      if (parent) return std::move(st).error();
      log::info("memory is copied with the tree frozen: " + st.error().message());
      return Precopy{};
    }
  TreeWrites writes;
  if (parent) {
    CRYO_ASSIGN(writes, writes_since(*parent, tree, maps, true, &taken));
  }
  for (auto& [pid, fd] : made) writes.uffds[pid] = std::move(fd);
  pre.uffds = std::move(writes.uffds);
  since_parent = std::move(writes.mms);
  for (const auto& [pid, fd] : pre.uffds) {
    pre.registered[pid] = mm::register_tracking(fd.get(), maps.at(pid));
    // Mapping by mapping: one unmapped meanwhile leaves only itself out.
    mm::Ranges unprotected = mm::subtract(pre.registered[pid], writes.trusted[pid]);
    if (auto st = mm::protect(fd.get(), mm::intersect(mm::ranges_of(maps.at(pid)), unprotected)); !st.ok())
      drop_from_precopy(pre, pid, st.error().message());
  }
  for (auto it = pre.uffds.begin(); it != pre.uffds.end();)
    it = pre.registered.count(it->first) ? std::next(it) : pre.uffds.erase(it);

  files::FilesDump files({});  // nothing of it is kept: only private pages are copied now
  // Pages shared copy-on-write with the parent process are left out as the
  // frozen dump leaves them (one that is not shared by then is read frozen).
  // Read without pinning when the tree shares pages among its processes
  // (pinning would unshare them).
  auto parent_mm_of = [&](pid_t pid) {
    mm::ParentMm parent_mm;
    if (auto pp = parent_of.find(pid); pp != parent_of.end() && maps.count(pp->second))
      parent_mm = {pp->second, &maps.at(pp->second)};
    parent_mm.tree_shares = maps.size() > 1;
    return parent_mm;
  };
  // Each pass describes every process, then copies the pages of all of
  // them together on every CPU (mm::PageCopies).
  mm::PageCopies copies;
  std::map<pid_t, mm::IncrementalMm> untracked_since;  // not in the parent image: copied whole
  std::vector<pid_t> described;
  for (const auto& [pid, m] : maps) {
    if (!pre.registered.count(pid)) continue;
    CRYO_TRY(check_interrupt("while memory was being copied"));
    auto inc = since_parent.find(pid);
    mm::IncrementalMm* incremental = inc != since_parent.end() ? &inc->second : &untracked_since[pid];
    incremental->registered_by_cryo = true;
    incremental->private_only = true;
    incremental->running = true;
    pre.stats.zero_pages = &pre.zero[pid];
    if (auto st = mm::dump_mm(pid, m, files, pages, &pre.mms[pid], &pre.stats, parent_mm_of(pid), incremental, false,
                              &copies);
        !st.ok()) {
      drop_from_precopy(pre, pid, st.error().message());
      continue;
    }
    described.push_back(pid);
  }
  pre.stats.zero_pages = nullptr;
  CRYO_ASSIGN(unsigned threads, copies.run(pages));
  pre.page_writers = std::max(pre.page_writers, threads);
  for (pid_t pid : described) {
    if (auto st = copies.failure(pid); !st.ok()) {
      drop_from_precopy(pre, pid, st.error().message());
      continue;
    }
    pre.mms[pid].clear_vmas();  // the frozen dump saves them
    failpoint("precopy.copying");
  }
  // A second pass while the tree still runs: what it wrote during the first
  // is copied again (the scan protects those pages anew as it lists them),
  // so that the frozen dump reads only what is written during this shorter
  // pass. The rest is named from the first (level 0).
  struct Again {
    mm::Ranges unchanged;  // since the first pass
    mm::IncrementalMm first;
    mm::Ranges zero_again;
    image::Mm mm;
  };
  std::map<pid_t, Again> again_of;
  std::vector<pid_t> copied;
  for (const auto& [pid, mm] : pre.mms) copied.push_back(pid);
  for (pid_t pid : copied) {
    CRYO_TRY(check_interrupt("while memory was being copied"));
    mm::Ranges candidates = mm::intersect(mm::ranges_of(maps.at(pid)), pre.registered.at(pid));
    auto scanned = mm::scan_written(pid, candidates, true);
    if (!scanned.ok()) {
      drop_from_precopy(pre, pid, scanned.error().message());
      continue;
    }
    std::sort(scanned->written.begin(), scanned->written.end());
    Again& again = again_of[pid];
    again.unchanged = mm::subtract(scanned->trusted, scanned->written);
    again.first = mm::IncrementalMm(pre.mms.at(pid), again.unchanged, 0, mm::intersect(pre.zero[pid], again.unchanged));
    again.first.registered_by_cryo = again.first.private_only = again.first.running = true;
    pre.stats.zero_pages = &again.zero_again;
    if (auto st = mm::dump_mm(pid, maps.at(pid), files, pages, &again.mm, &pre.stats, parent_mm_of(pid), &again.first,
                              false, &copies);
        !st.ok()) {
      pre.dropped.insert(pre.dropped.end(), again.mm.pages().begin(), again.mm.pages().end());
      drop_from_precopy(pre, pid, st.error().message());
      again_of.erase(pid);
    }
  }
  pre.stats.zero_pages = nullptr;
  CRYO_ASSIGN(threads, copies.run(pages));
  pre.page_writers = std::max(pre.page_writers, threads);
  for (auto& [pid, again] : again_of) {
    if (auto st = copies.failure(pid); !st.ok()) {
      pre.dropped.insert(pre.dropped.end(), again.mm.pages().begin(), again.mm.pages().end());
      drop_from_precopy(pre, pid, st.error().message());
      continue;
    }
    again.mm.clear_vmas();
    std::set<image::RunPlace> named;
    for (const auto& earlier : again.mm.parent_pages())
      if (earlier.level() == 0) named.insert(image::place_of(earlier.run()));
    for (const auto& run : pre.mms.at(pid).pages())
      if (!named.count(image::place_of(run))) pre.dropped.push_back(run);
    pre.mms[pid] = std::move(again.mm);
    mm::Ranges zero = mm::intersect(pre.zero[pid], again.unchanged);
    zero.insert(zero.end(), again.zero_again.begin(), again.zero_again.end());
    std::sort(zero.begin(), zero.end());
    mm::Ranges merged;
    for (const auto& r : zero) {
      if (!merged.empty() && merged.back().second >= r.first)
        merged.back().second = std::max(merged.back().second, r.second);
      else
        merged.push_back(r);
    }
    pre.zero[pid] = std::move(merged);
  }
  for (auto it = pre.uffds.begin(); it != pre.uffds.end();)
    it = pre.registered.count(it->first) ? std::next(it) : pre.uffds.erase(it);
  CRYO_TRY(pages.drain());  // written before the freeze, not waited for in it
  failpoint("precopy.copied");
  pre.copy_us = now_us() - thawed;
  log::info("copied " + std::to_string(pre.stats.pages_written) + " pages while the tree ran, in " +
            std::to_string(pre.copy_us) + " us (stopped for " + std::to_string(pre.freeze_us) + " us to track writes)");
  return pre;
}

Result<std::map<pid_t, mm::IncrementalMm>> since_precopy(const Precopy& pre,
                                                         const std::map<pid_t, std::vector<proc::MapEntry>>& maps) {
  std::map<pid_t, mm::IncrementalMm> out;
  for (const auto& [pid, uffd] : pre.uffds) {
    auto m = maps.find(pid);
    auto copied = pre.mms.find(pid);
    if (m == maps.end() || copied == pre.mms.end()) continue;  // exited, or not copied
    if (exited(pre.pidfds.at(pid).get())) continue;  // and its pid taken by another process since
    mm::Ranges candidates = mm::intersect(mm::ranges_of(m->second), pre.registered.at(pid));
    CRYO_ASSIGN(mm::Written written, mm::scan_written(pid, candidates, false));
    std::sort(written.written.begin(), written.written.end());
    mm::Ranges unchanged = mm::subtract(written.trusted, written.written);
    auto zero = pre.zero.find(pid);
    mm::Ranges zero_unchanged = zero == pre.zero.end() ? mm::Ranges{} : mm::intersect(zero->second, unchanged);
    auto [it, _] = out.emplace(pid, mm::IncrementalMm(copied->second, std::move(unchanged), 0, std::move(zero_unchanged)));
    it->second.registered_by_cryo = true;
  }
  return out;
}

std::vector<image::PageRun> superseded_runs(const Precopy& pre, const std::set<image::RunPlace>& named) {
  std::vector<image::PageRun> out = pre.dropped;
  std::set<image::RunPlace> seen;  // a run of the first pass is named by the second's, maybe more than once
  for (const auto& [pid, mm] : pre.mms) {
    for (const auto& run : mm.pages())
      if (!named.count(image::place_of(run))) out.push_back(run);
    for (const auto& earlier : mm.parent_pages())
      if (earlier.level() == 0 && !named.count(image::place_of(earlier.run())) &&
          seen.insert(image::place_of(earlier.run())).second)
        out.push_back(earlier.run());
  }
  return out;
}

Result<DumpResult> pre_dump(const DumpOptions& options) {
  DumpResult result;
  uint64_t start = now_us();
  if (options.page_server)
    return Error(ENOTSUP, "--page-server: a pre-dump writes its pages into its image directory only (send the final "
                          "dump's pages to the page server)");
  std::optional<mm::ParentImage> parent;
  if (!options.prev_images_dir.empty()) {
    CRYO_ASSIGN(parent, mm::ParentImage::open(options.images_dir, options.prev_images_dir));
  }
  CRYO_ASSIGN(auto dir, image::ImageDirWriter::create(options.images_dir));
  CRYO_TRY(options.actions.run(hooks::Action::kPreDump, options.pid));
  std::optional<cgroup::Freezer> freezer;
  if (!options.freeze_cgroup.empty()) {
    CRYO_ASSIGN(auto opened, cgroup::Freezer::open(options.freeze_cgroup));
    freezer.emplace(std::move(opened));
  }
  uint64_t freeze_start = now_us();
  CRYO_ASSIGN(auto tree, tree::FrozenTree::freeze(options.pid, options.freeze_timeout_s, freezer ? &*freezer : nullptr));
  CRYO_TRY(check_interrupt("while the tree was being frozen"));

  std::map<pid_t, std::vector<proc::MapEntry>> maps;
  std::vector<pid_t> pids;
  for (const auto& p : tree.processes())
    if (!p.zombie) pids.push_back(p.pid);
  std::set<uint64_t> stale = mm::stale_trackers(pids);
  if (!parent) mm::end_keepers_of(pids);
  for (pid_t pid : pids) {
    CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(pid) + "/maps"));
    CRYO_ASSIGN(maps[pid], proc::parse_maps(text));
    CRYO_TRY(mm::close_stale_trackers(pid, maps[pid], stale));
    CRYO_TRY(refuse_own_userfaultfd(pid));
  }
  mm::clear_tracker_marks(pids);
  CRYO_ASSIGN(Tracking tracking, track_writes(parent ? &*parent : nullptr, tree, maps));
  TreeWrites& writes = tracking.writes;
  const auto& registered = tracking.registered;
  failpoint("predump.tracked");
  // Every page is protected before it is read: the tree runs while its
  // memory is copied, and a page written meanwhile is copied again by the
  // next dump.
  tree.thaw();
  uint64_t thawed = now_us();
  // Only private pages are copied (nothing of the files is kept); a mapped
  // file is named by its path in the tree's mount namespace (a
  // container's), reached through its root.
  files::DumpOptions file_options;
  if (ns::own_namespace(options.pid, "mnt")) file_options.tree_root = "/proc/" + std::to_string(options.pid) + "/root";
  files::FilesDump files(file_options);
  CRYO_ASSIGN(image::PageWriter * pages, dir.pages());
  mm::DumpStats stats;
  std::vector<image::PageRun> superseded;  // of processes gone while they were copied
  std::set<pid_t> saved;
  // The tree runs: a process that exited meanwhile (or could not be read)
  // is left out, and the dump after this one saves it whole.
  auto leave_out = [&](pid_t pid, const image::Mm& mm, const Error& why) {
    log::info(pid_str(pid) + " is left out of the pre-dump (" + why.message() + ")");
    superseded.insert(superseded.end(), mm.pages().begin(), mm.pages().end());
    writes.uffds.erase(pid);  // its tracking ends
  };
  // Every process described, then the pages of all of them copied together
  // on every CPU (mm::PageCopies).
  mm::PageCopies copies;
  std::map<pid_t, image::Mm> mms;
  std::map<pid_t, mm::IncrementalMm> untracked;  // not in the parent image: copied whole
  std::vector<pid_t> described;
  for (const auto& [pid, m] : maps) {
    CRYO_TRY(check_interrupt("while memory was being copied"));
    auto inc = writes.mms.find(pid);
    mm::IncrementalMm* incremental = inc != writes.mms.end() ? &inc->second : &untracked[pid];
    incremental->registered_by_cryo = registered.count(pid) > 0;
    incremental->private_only = true;
    incremental->running = true;
    // No pages are left to a parent process here: the next image needs
    // each process's own. Read without pinning, which would unshare them.
    if (auto st = mm::dump_mm(pid, m, files, *pages, &mms[pid], &stats, {0, nullptr, maps.size() > 1}, incremental,
                              false, &copies);
        !st.ok()) {
      leave_out(pid, mms[pid], st.error());
      continue;
    }
    described.push_back(pid);
  }
  CRYO_ASSIGN(result.page_writers, copies.run(*pages));
  for (pid_t pid : described) {
    image::Mm& mm = mms[pid];
    if (auto st = copies.failure(pid); !st.ok()) {
      leave_out(pid, mm, st.error());
      continue;
    }
    saved.insert(pid);
    if (auto reg = registered.find(pid); reg != registered.end())
      for (const auto& [s, e] : reg->second) {
        auto* r = mm.add_tracked();
        r->set_start(s);
        r->set_end(e);
      }
    mm.clear_vmas();  // the dump after this one saves them; only pages and their tracking matter here
    CRYO_TRY(dir.write(image::mm_name(pid), image::Kind::kMm, mm));
  }
  CRYO_TRY(pages->finish());
  result.pages_bytes = pages->data_bytes();

  CRYO_ASSIGN(mm::Keeper keeper, mm::Keeper::start(writes.uffds));
  writes.uffds.clear();  // the keeper holds them now
  failpoint("predump.keeper");
  image::Inventory inventory;
  inventory.set_tool_version(CRYO_VERSION_STRING);
  inventory.set_root_pid(options.pid);
  inventory.set_page_size(4096);
  inventory.set_pages_only(true);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  inventory.set_created_unix_ns(static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec));
  struct utsname uts;
  if (uname(&uts) == 0) inventory.set_kernel_release(uts.release);
  keeper.describe(inventory.mutable_tracking());
  for (const auto& run : superseded) *inventory.add_superseded_pages() = run;
  for (pid_t pid : saved)
    if (!registered.count(pid)) {
      auto* t = inventory.mutable_tracking()->add_processes();
      t->set_pid(pid);
      t->set_keeper_fd(-1);
    }
  if (parent) {
    parent->name_in(&inventory);
    CRYO_TRY(parent->link_from(options.images_dir));
  }
  CRYO_TRY(check_interrupt("before the image was committed"));
  CRYO_TRY(dir.commit(inventory));
  keeper.commit();
  result.tasks = saved.size();
  result.freeze_us = thawed - freeze_start;
  result.total_us = now_us() - start;
  log::info("pre-dump wrote " + std::to_string(stats.pages_written) + " pages (" + std::to_string(stats.pages_in_parent) +
            " kept in the parent image) in " + std::to_string(result.total_us) + " us");
  return result;
}

}  // namespace cryo
