#include "core/checkpoint.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string_view>

#include "core/files/files_dump.h"
#include "core/files/locks.h"
#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/mm/keeper.h"
#include "core/mm/mm_dump.h"
#include "core/predump.h"
#include "core/ns/ipc_ns.h"
#include "core/ns/cgroup_ns.h"
#include "core/ns/mount_ns.h"
#include "core/ns/namespaces.h"
#include "core/ns/net_ns.h"
#include "core/ns/pid_ns.h"
#include "core/ns/time_ns.h"
#include "core/pageserver/lazy_stream.h"
#include "core/pageserver/page_server.h"
#include "core/ns/user_ns.h"
#include "core/sys/io.h"
#include "core/cgroup/freezer.h"
#include "core/cgroup/membership.h"
#include "core/cgroup/tree_cgroups.h"
#include "core/guard/guard.h"
#include "core/hooks/actions.h"
#include "core/net/netlock.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/failpoint.h"
#include "core/sys/interrupt.h"
#include "core/sys/scope_guard.h"
#include "core/sys/log.h"
#include "core/sys/progress.h"
#include "core/sys/util.h"
#include "core/task/task_dump.h"
#include "core/tree/freeze.h"
#include "core/tree/shared_tables.h"

namespace cryo {
namespace {

// Namespaces the tree may own (the root's, shared by every task) and those it
// must share with cryo; a task in one of its own inside the tree is refused.
Status check_namespaces(pid_t pid, pid_t root) {
  // A time namespace made for children yet to come would be lost.
  auto now = read_link("/proc/" + std::to_string(pid) + "/ns/time"),
       later = read_link("/proc/" + std::to_string(pid) + "/ns/time_for_children");
  if (now.ok() && later.ok() && *now != *later)
    return Error(pid_str(pid) + " has made a time namespace for its children (not supported yet)");
  // Pid namespaces, the tree's and those nested in it, are ns::PidMap's.
  for (const char* ns : {"mnt", "net", "ipc", "uts", "user", "cgroup", "time"}) {
    // The root's namespaces are saved whole (dump_mount_ns, dump_ipc_ns,
    // dump_time_ns, dump_cgroup_ns, dump_net_ns, dump_uts, dump_user_ns).
    std::string self = std::string("/proc/self/ns/") + ns;
    std::string theirs = "/proc/" + std::to_string(pid) + "/ns/" + ns;
    std::string roots = "/proc/" + std::to_string(root) + "/ns/" + ns;
    auto a = read_link(self), b = read_link(theirs);
    if (!a.ok() || !b.ok()) continue;  // a namespace kind this kernel lacks
    if (*a == *b) {
      if (pid != root && read_link(roots).ok() && *read_link(roots) != *b)
        return Error(pid_str(pid) + " is back in cryo's " + ns + " namespace below a root in its own (not supported)");
      continue;
    }
    if (pid != root && read_link(roots).ok() && *read_link(roots) != *b)
      return Error(pid_str(pid) + (std::string_view(ns) == "ipc" ? " is in an " : " is in a ") + ns +
                   " namespace of its own inside the tree (not supported yet)");
  }
  return {};
}

// The hostname and domain name of the root's UTS namespace when it is not
// cryo's: read from inside it (setns of this thread, and back).
Status dump_uts(pid_t root, image::Tree* tree) {
  if (!ns::own_namespace(root, "uts")) return {};
  CRYO_ASSIGN(ns::Scope in_tree, ns::Scope::enter_of(root, CLONE_NEWUTS));
  struct utsname names;
  int got = ::uname(&names);
  int saved = errno;
  CRYO_TRY(in_tree.leave());
  if (got < 0) return Error(saved, "uname in the uts namespace of " + pid_str(root));
  tree->mutable_uts()->set_hostname(names.nodename);
  tree->mutable_uts()->set_domainname(names.domainname);
  return {};
}

// A session or group id of 0 names a leader outside our pid namespace (the
// tree was started from an ancestor namespace, as in a CI container): it is
// alive, merely invisible.
bool alive(pid_t pid) { return pid <= 0 || ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0; }

// Sessions and process groups must be re-creatable: a session is entered by
// setsid() or inherited from the parent, a group joined only while it exists.
Status check_sessions(const tree::FrozenTree& tree, bool shell_job) {
  const auto& procs = tree.processes();
  const auto& root = procs.front();
  // A daemon: its session (and group) was made by a parent that has exited.
  // The restore makes a stand-in with that pid to recreate them.
  bool daemon = !shell_job && root.stat.sid != root.pid && !alive(root.stat.sid) && !tree.contains(root.stat.sid);
  for (const auto& p : procs) {
    const auto& st = p.stat;
    if (&p == &root) {
      if (st.sid != p.pid && !shell_job && !daemon)
        return Error(pid_str(p.pid) + ": its session leader " + std::to_string(st.sid) +
                     " is outside the tree (dump with --shell-job)");  // 0: outside our pid namespace
      if (daemon && st.pgid != st.sid)
        return Error(pid_str(p.pid) + ": its session leader " + std::to_string(st.sid) +
                     " has exited and its group " + std::to_string(st.pgid) + " is another (not supported)");
      if (st.sid != p.pid && tree.contains(st.sid))
        return Error(pid_str(p.pid) + ": its session leader is its own descendant");
    } else {
      const auto* parent = tree.find(st.ppid);
      if (st.sid != p.pid && (!parent || parent->stat.sid != st.sid))
        return Error(pid_str(p.pid) + ": session " + std::to_string(st.sid) +
                                  " is neither its own nor its parent's (not supported)");
    }
    if (const auto* leader = tree.find(st.pgid)) {
      if (leader->stat.pgid != leader->pid || leader->stat.sid != st.sid)
        return Error(pid_str(p.pid) + ": process group " + std::to_string(st.pgid) +
                                  " has lost its leader (not supported)");
    } else if (daemon && st.pgid == root.stat.sid) {
      // the daemon's own group, made again with its session
    } else if (&p != &root && !alive(st.pgid) && tree.find(st.ppid) && tree.find(st.ppid)->stat.sid == st.sid) {
      // a group whose leader exited: a stand-in child of the parent makes it again
    } else if (!shell_job || (&p != &root && st.pgid != root.stat.pgid)) {
      // A shell job's own group becomes the group of cryo restore; no other
      // group from outside can be re-created.
      return Error(pid_str(p.pid) + ": its process group " + std::to_string(st.pgid) +
                   (alive(st.pgid) ? " is led from outside the tree (dump with --shell-job)"
                                   : " has lost its leader, which exited (not supported yet)"));
    }
  }
  return {};
}

image::Tree tree_image(const tree::FrozenTree& tree, const tree::SharedTables& shared) {
  image::Tree out;
  bool first = true;
  for (const auto& p : tree.processes()) {
    auto* t = out.add_tasks();
    t->set_pid(p.pid);
    t->set_ppid(first ? 0 : p.stat.ppid);
    t->set_pgid(p.stat.pgid);
    t->set_sid(p.stat.sid);
    for (pid_t tid : p.tids) t->add_tids(tid);
    t->set_state(p.zombie ? image::TaskEntry::ZOMBIE
                          : (p.stopped ? image::TaskEntry::STOPPED : image::TaskEntry::ALIVE));
    t->set_exit_status(p.stat.exit_code);
    t->set_comm(p.stat.comm);
    t->set_files_of_parent(shared.files_of_parent.count(p.pid) > 0);
    t->set_fs_of_parent(shared.fs_of_parent.count(p.pid) > 0);
    first = false;
  }
  return out;
}

Status add_exe(pid_t pid, files::FilesDump& files, image::Process& core) {
  CRYO_ASSIGN(uint32_t id, files.add_mapped_file("/proc/" + std::to_string(pid) + "/exe", false,
                                                  pid_str(pid) + " executable"));
  core.mutable_mm()->set_exe_file_id(id);
  return {};
}

}  // namespace

Result<DumpResult> checkpoint(const DumpOptions& options) {
  DumpResult result;
  uint64_t start = now_us();
  std::optional<mm::ParentImage> parent;  // --prev-images-dir: checked before the tree is touched
  if (!options.prev_images_dir.empty()) {
    CRYO_ASSIGN(parent, mm::ParentImage::open(options.images_dir, options.prev_images_dir));
  }
  progress::Reporter report("dump");
  progress::phase("freezing");
  CRYO_ASSIGN(auto dir, image::ImageDirWriter::create(options.images_dir));
  if (options.page_server) {  // before the freeze: a server missing leaves the tree alone
    CRYO_ASSIGN(auto sink, pageserver::connect_page_sink(*options.page_server));
    dir.set_page_sink(std::move(sink));
  }
  std::optional<pageserver::LazySource> lazy_source;  // listening before the freeze, too
  int lazy_port = 0;
  if (options.lazy_pages) {
    if (options.page_server) return Error(EINVAL, "--lazy-pages serves the pages itself: it takes no --page-server");
    CRYO_ASSIGN(auto source, pageserver::LazySource::listen(*options.lazy_pages, &lazy_port));
    lazy_source.emplace(std::move(source));
  }

  CRYO_TRY(options.actions.run(hooks::Action::kPreDump, options.pid));
  // A tree that runs on after the dump, or whose writes a pre-dump tracks:
  // its memory is copied while it runs, and only what it writes meanwhile
  // is read again once it is frozen (Precopy in core/predump.h).
  Precopy pre;
  if ((options.leave_running || parent) && !options.lazy_pages) {  // a lazy source serves from the frozen tree
    progress::phase("copying memory while the tree runs");
    CRYO_ASSIGN(image::PageWriter * early, dir.pages());
    CRYO_ASSIGN(pre, precopy(options, parent ? &*parent : nullptr, *early));
    result.page_writers = pre.page_writers;
    progress::phase("freezing");
  }
  log::info("freezing the tree of pid " + std::to_string(options.pid));
  uint64_t freeze_start = now_us(), freeze_start_cpu = cpu_us();
  std::optional<cgroup::Freezer> freezer;  // outlives the tree, which leaves it as it was found
  if (!options.freeze_cgroup.empty()) {
    CRYO_ASSIGN(auto opened, cgroup::Freezer::open(options.freeze_cgroup));
    freezer.emplace(std::move(opened));
  }
  CRYO_ASSIGN(auto tree, tree::FrozenTree::freeze(options.pid, options.freeze_timeout_s, freezer ? &*freezer : nullptr));
  uint64_t frozen_at = now_us();
  log::info("froze " + std::to_string(tree.processes().size()) + " processes in " +
            std::to_string(frozen_at - start) + " us");
  progress::phase("reading the tree");

  failpoint("dump.frozen");
  CRYO_TRY(check_interrupt("while the tree was being frozen"));
  CRYO_ASSIGN(ns::PidMap pids, ns::PidMap::of_tree(tree));
  CRYO_TRY(check_sessions(tree, options.shell_job));
  CRYO_TRY(ns::check_namespace_owners(options.pid));
  std::optional<image::UserNs> user_ns;  // every id of the image is then the tree's
  if (ns::own_namespace(options.pid, "user")) CRYO_TRY(ns::dump_user_ns(options.pid, &user_ns.emplace()));
  bool own_mounts = ns::own_namespace(options.pid, "mnt");
  image::MountNs mount_ns;
  if (own_mounts)
    CRYO_TRY(ns::dump_mount_ns(options.pid, &mount_ns, options.external_mounts, !options.external_mounts_optional));
  if (!own_mounts && !options.external_mounts.empty() && !options.external_mounts_optional)
    return Error("--external mnt[" + options.external_mounts.begin()->first +
                 "]: the tree shares cryo's mount namespace, which has no mount of its own");
  bool own_net = ns::own_namespace(options.pid, "net");
  // The network-lock scripts run for a tree with a network namespace of its
  // own (as in CRIU) or connections to lock; their network-unlock ones when
  // the tree runs on (a failure, or --leave-running).
  bool net_locked = false;
  ScopeGuard net_unlock_actions([&] {
    if (!net_locked) return;
    if (auto st = options.actions.run(hooks::Action::kNetworkUnlock, options.pid); !st.ok())
      log::error(st.error().message());
  });
  if (own_net) {
    net_locked = true;
    CRYO_TRY(options.actions.run(hooks::Action::kNetworkLock, options.pid));
  }
  image::NetNs net_ns;
  UniqueFd tree_net;
  if (own_net) {
    CRYO_TRY(ns::dump_net_ns(options.pid, &net_ns, options.net_ns));
    CRYO_ASSIGN(tree_net, open_file("/proc/" + std::to_string(options.pid) + "/ns/net", O_RDONLY | O_CLOEXEC));
  }
  CRYO_ASSIGN(tree::SharedTables shared, tree::find_shared_tables(tree));
  files::FilesDump files({.shell_job = options.shell_job,
                          .external_ttys = options.external_ttys,
                          .ghost_limit = options.ghost_limit,
                          .sockets = {.tcp_established = options.tcp_established,
                                      .ext_unix_sk = options.ext_unix_sk,
                                      .leave_running = options.leave_running,
                                      .tcp_close = options.tcp_close,
                                      .skip_in_flight = options.skip_in_flight,
                                      .network_lock = options.network_lock,
                                      .net_ns = own_net ? tree_net.get() : -1,
                                      .tree_root = own_mounts ? "/proc/" + std::to_string(options.pid) + "/root" : ""},
                          .tree_root = own_mounts ? "/proc/" + std::to_string(options.pid) + "/root" : ""});
  std::map<pid_t, image::Process> cores;
  std::map<pid_t, std::vector<proc::MapEntry>> maps;
  std::map<pid_t, uint64_t> syscall_ips;  // a `syscall` instruction in each process's vDSO
  std::vector<pid_t> live_pids;
  for (const auto& p : tree.processes())
    if (!p.zombie) live_pids.push_back(p.pid);
  std::set<uint64_t> stale_trackers = mm::stale_trackers(live_pids);  // of a pre-dump killed midway
  if (!parent && !pre.started) mm::end_keepers_of(live_pids);  // a pre-dump's tracking: this dump starts over
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    CRYO_TRY(check_namespaces(p.pid, options.pid));
    CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(p.pid) + "/maps"));
    CRYO_ASSIGN(maps[p.pid], proc::parse_maps(text));
    CRYO_ASSIGN(syscall_ips[p.pid], ptrace::find_syscall_insn(p.pid, maps[p.pid]));
    CRYO_TRY(mm::close_stale_trackers(p.pid, maps[p.pid], stale_trackers));  // before its fds are read
    auto& core = cores[p.pid];
    CRYO_TRY(task::dump_process(p, maps[p.pid], syscall_ips[p.pid], &core));
    failpoint("dump.process");
    CRYO_TRY(add_exe(p.pid, files, core));
    CRYO_ASSIGN(auto memberships, cgroup::read_membership(p.pid, p.tids));
    for (const auto& m : memberships) {
      auto* c = core.add_cgroups();
      c->set_controllers(m.controllers);
      c->set_path(m.path);
    }
  }
  mm::clear_tracker_marks(live_pids);
  CRYO_TRY(check_interrupt("before the files were dumped"));
  {
    std::optional<ns::Scope> in_tree_net;  // sock_diag answers for the namespace it is asked in
    if (own_net) {
      CRYO_ASSIGN(auto scope, ns::Scope::enter(tree_net.get(), CLONE_NEWNET));
      in_tree_net.emplace(std::move(scope));
    }
    CRYO_TRY(files.dump_fds(tree, cores));
  }
  failpoint("dump.files");
  // /proc/locks costs a first read of ~10 ms here: only when an fd shows a lock.
  if (files.saw_locks()) CRYO_TRY(files::dump_locks(tree, cores));
  if (own_mounts) {
    CRYO_TRY(ns::check_files_in_mount_ns(cores, files.files()));
  } else {
    CRYO_TRY(pids.check_files(cores, files.files()));  // in a mount namespace of its own, /proc is the tree's
  }
  CRYO_TRY(pids.check_nested(cores, files.files()));

  // TCP connections: the guard first, told every change before it is made;
  // then every thread parked, so that none can touch a socket in repair
  // mode should cryo die; then the lock; then repair mode.
  Guard guard;
  ScopeGuard rollback([&] {
    files.sockets().resume();  // out of repair mode, lock gone ...
    auto st = tree.unpark(guard);  // ... before any thread can run again
    if (!st.ok()) log::error(st.error().message());
    guard.release();
  });
  if (std::vector<int> tcp = files.sockets().tcp_sockets(); !tcp.empty()) {
    std::string table = options.network_lock == "skip" ? "" : net::new_lock_table();
    // Once the inventory is renamed into place the image is complete: a cryo
    // killed from there on is finished for, not undone (unless -R, or a lazy
    // migration, whose image needs the tree's memory until the end).
    std::string marker =
        options.leave_running || lazy_source ? "" : options.images_dir + "/" + image::kInventoryName;
    {
      // The guard lives in the tree's network namespace: a lock it has to
      // remove is there.
      std::optional<ns::Scope> in_tree_net;
      if (own_net) {
        CRYO_ASSIGN(auto scope, ns::Scope::enter(tree_net.get(), CLONE_NEWNET));
        in_tree_net.emplace(std::move(scope));
      }
      CRYO_ASSIGN(guard, Guard::start(options.network_lock, table, tcp, marker));
    }
    for (const auto& p : tree.processes())
      if (!p.zombie) CRYO_TRY(guard.add_process(p.pid));
    failpoint("dump.guarded");
    CRYO_TRY(tree.park(guard, syscall_ips));
    failpoint("dump.parked");
    if (!net_locked) {
      net_locked = true;
      CRYO_TRY(options.actions.run(hooks::Action::kNetworkLock, options.pid));
    }
    CRYO_TRY(files.sockets().lock_and_read(&files.files(), table));
    failpoint("dump.locked");
  }

  progress::phase("writing memory");
  CRYO_ASSIGN(image::PageWriter * pages, dir.pages());
  mm::DumpStats stats;
  pageserver::LazyPages lazy_pages;  // --lazy-pages: what the source serves
  std::map<int32_t, pid_t> lazy_real_pid;  // image pid -> pid here
  TreeWrites writes;  // against the copy made while the tree ran, or a pre-dump: what each process wrote since
  std::set<image::RunPlace> named_early;  // where the runs are copied while the tree ran that the image names
  if (pre.started) {
    CRYO_ASSIGN(writes.mms, since_precopy(pre, maps));
  } else if (parent) {
    CRYO_ASSIGN(writes, writes_since(*parent, tree, maps, false));
    writes.uffds.clear();  // the tracking ends here, its registrations with it
  }
  CRYO_ASSIGN(auto ipc, ns::dump_ipc_ns(tree, pids, *pages, &stats));  // its segments are the ones the tree attaches
  if (ipc) files.use_ipc_namespace(ipc->mutable_shms());
  if (user_ns) CRYO_TRY(ns::to_tree_view(*user_ns, &cores, nullptr, nullptr));
  // Every process's mappings first, then the pages of all of them copied
  // together on every CPU (mm::PageCopies).
  std::map<pid_t, image::Mm> mms;
  mm::PageCopies copies;
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    CRYO_TRY(check_interrupt("while memory was being dumped"));
    // Pages shared copy-on-write with a parent in the tree are stored once
    // (in a lazy migration, served once: the restore fetches them before the
    // fork that shares them).
    mm::ParentMm parent_mm;
    if (&p != &tree.processes().front() && maps.count(p.stat.ppid))
      parent_mm = {p.stat.ppid, &maps[p.stat.ppid]};
    parent_mm.tree_shares = maps.size() > 1;
    std::vector<uint64_t> aio_contexts(cores[p.pid].aio_contexts().begin(), cores[p.pid].aio_contexts().end());
    parent_mm.aio_contexts = &aio_contexts;
    auto incremental = writes.mms.find(p.pid);
    CRYO_TRY(mm::dump_mm(p.pid, maps[p.pid], files, *pages, &mms[p.pid], &stats, parent_mm,
                         incremental == writes.mms.end() ? nullptr : &incremental->second, lazy_source.has_value(),
                         &copies));
    // With CRYO_TASK_WRITES=1, the process writes its own pages where it
    // can (a lazy migration leaves them in it; threads parked for TCP
    // repair stay so).
    if (options.task_writes && !lazy_source && !guard.active())
      copies.let_task_write(p.pid, {p.tids, syscall_ips[p.pid], &maps[p.pid]});
  }
  CRYO_ASSIGN(unsigned copied_by, copies.run(*pages));
  result.page_writers = std::max(result.page_writers, copied_by);
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    CRYO_TRY(copies.failure(p.pid));
    image::Mm& mm = mms[p.pid];
    for (const auto& earlier : mm.parent_pages())
      if (earlier.level() == 0) named_early.insert(image::place_of(earlier.run()));
    if (lazy_source) {
      auto& ranges = lazy_pages.ranges[pids.inner(p.pid)];
      for (const auto& run : mm.pages())
        if (run.remote()) ranges.emplace_back(run.addr(), run.addr() + run.npages() * 4096);
      lazy_real_pid[pids.inner(p.pid)] = p.pid;
    }
    pids.translate(&cores[p.pid]);
    CRYO_TRY(dir.write(image::mm_name(pids.inner(p.pid)), image::Kind::kMm, mm));
    CRYO_TRY(dir.write(image::core_name(pids.inner(p.pid)), image::Kind::kCore, cores[p.pid]));
    failpoint("dump.memory");
  }
  CRYO_TRY(files.dump_contents(*pages, &stats));
  image::Tree tree_entry = tree_image(tree, shared);
  CRYO_TRY(dump_uts(options.pid, &tree_entry));
  image::TimeNs time_ns;
  CRYO_ASSIGN(bool own_time, ns::dump_time_ns(options.pid, &time_ns));
  if (own_time) *tree_entry.mutable_time_ns() = time_ns;
  CRYO_TRY(ns::dump_cgroup_ns(options.pid, &tree_entry));
  if (own_mounts) *tree_entry.mutable_mount_ns() = std::move(mount_ns);
  if (own_net) *tree_entry.mutable_net_ns() = net_ns;
  CRYO_TRY(cgroup::dump_tree_cgroups(cores, options.cgroup_roots, &tree_entry));
  if (ipc) tree_entry.mutable_ipc()->Swap(&*ipc);
  if (user_ns) {
    CRYO_TRY(ns::to_tree_view(*user_ns, nullptr, &files.files(), &tree_entry));
    *tree_entry.mutable_user_ns() = *user_ns;
  }
  pids.translate(&tree_entry);
  pids.translate(&files.files());
  CRYO_TRY(dir.write(image::kTreeName, image::Kind::kTree, tree_entry));
  CRYO_TRY(dir.write(image::kFilesName, image::Kind::kFiles, files.files()));
  result.pages_bytes = pages->data_bytes();
  result.pages_copied_in = stats.bytes_copied_in;
  result.pages_zero_tested = stats.bytes_zero_tested;
  result.pages_checksummed = stats.bytes_checksummed;
  result.pages_written_by_tasks = stats.bytes_written_by_tasks;

  image::Inventory inventory;
  inventory.set_tool_version(CRYO_VERSION_STRING);
  inventory.set_root_pid(pids.inner(options.pid));
  inventory.set_shell_job(options.shell_job);
  inventory.set_tcp_established(options.tcp_established);
  inventory.set_page_size(4096);
  inventory.set_lazy_source(lazy_source.has_value());
  for (const auto& run : superseded_runs(pre, named_early)) *inventory.add_superseded_pages() = run;
  for (const auto& run : pages->zero_runs()) *inventory.add_superseded_pages() = run;  // processes' own writes
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  inventory.set_created_unix_ns(static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec));
  struct utsname uts;
  if (uname(&uts) == 0) inventory.set_kernel_release(uts.release);
  if (parent) {
    parent->name_in(&inventory);
    CRYO_TRY(parent->link_from(options.images_dir));
  }
  CRYO_TRY(check_interrupt("before the image was committed"));
  CRYO_TRY(options.actions.run(hooks::Action::kPostDump, options.pid));
  failpoint("dump.commit");
  result.tasks = tree.processes().size();
  uint64_t thawed = 0, thawed_cpu = 0;
  auto let_run = [&] {
    rollback.run_now();  // what a failure undoes, -R undoes too
    tree.thaw();
    thawed = now_us();
    thawed_cpu = cpu_us();
    pre.uffds.clear();  // the tracking ends: its registrations and write protection go with the files
  };
  // With -R the image needs nothing more of the tree (unless it serves its
  // memory lazily): it runs on while the last pages are written and the
  // image is committed (a failure from here on fails the dump, the tree
  // running as before either way).
  if (options.leave_running && !lazy_source) let_run();
  progress::phase("committing");
  CRYO_TRY(dir.commit(inventory));
  failpoint("dump.committed");

  if (lazy_source) {
    // The frozen tree's memory, read as the daemon asks, through
    // /proc/PID/mem: it does not pin pages, so a page shared copy-on-write
    // (in the tree or with a process outside it) stays shared under -R.
    std::map<int32_t, UniqueFd> mem_of;
    for (const auto& [inner, real] : lazy_real_pid) {
      CRYO_ASSIGN(UniqueFd mem, open_file("/proc/" + std::to_string(real) + "/mem", O_RDONLY | O_CLOEXEC));
      mem_of[inner] = std::move(mem);
    }
    lazy_pages.total_pages = stats.pages_remote;
    lazy_pages.read = [&](int32_t pid, uint64_t addr, uint8_t* buf, size_t bytes) -> Status {
      return mm::read_memory(lazy_real_pid.at(pid), mem_of.at(pid).get(), /*unpinned=*/true, buf, addr, bytes)
          .wrap(pid_str(lazy_real_pid.at(pid)) + ": reading memory to serve");
    };
    progress::phase("serving memory");
    if (options.on_lazy_ready) options.on_lazy_ready(lazy_port);
    CRYO_TRY(lazy_source->serve(lazy_pages).wrap("lazy migration (the tree runs on here)"));
  }

  if (options.leave_running) {
    if (!thawed) let_run();
  } else {
    // From here a death of cryo finishes the job: the guard kills what is
    // left of the tree and keeps the lock for the restore.
    rollback.cancel();
    net_unlock_actions.cancel();  // the restore unlocks
    auto st = guard.finish_on_death();
    if (!st.ok()) log::error(st.error().message());
    failpoint("dump.killing");
    // Its own phase: the tree frees its memory as it dies, which the dump
    // waits out (2 GiB: 230 ms here, against 1.1 s to write its pages).
    progress::phase("killing the tree");
    tree.kill_all();
    files.sockets().committed_and_killed();
    guard.release();
  }
  uint64_t end = now_us();
  result.phases = progress::phases();
  result.freeze_us = std::max((thawed ? thawed : end) - freeze_start, pre.freeze_us);
  result.freeze_cpu_us = (thawed ? thawed_cpu : cpu_us()) - freeze_start_cpu;
  result.precopy_freeze_us = pre.freeze_us;
  result.precopy_us = pre.copy_us;
  result.total_us = end - start;
  log::info("dumped " + std::to_string(stats.pages_written) + " pages frozen, " +
            std::to_string(pre.stats.pages_written) + " while the tree ran (" + std::to_string(stats.pages_inherited) +
            " shared with a parent, " + std::to_string(stats.pages_in_parent) +
            " kept from the copy made while it ran or the parent image, " + std::to_string(stats.zero_pages_skipped) +
            " zero pages skipped, " + std::to_string(stats.pages_remote) + " served lazily) in " +
            std::to_string(result.total_us) + " us");
  return result;
}

}  // namespace cryo
