// Dumping the tree's IPC namespace from inside it (see ipc_ns.h).
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <mqueue.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "core/ns/ipc_ns.h"
#include "core/ns/namespaces.h"
#include "core/ns/ipc_ns_sysctls.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"
#include "core/sys/util.h"

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

namespace cryo::ns {
namespace {

constexpr uint64_t kPage = 4096;

std::string ns_path(pid_t pid) { return "/proc/" + std::to_string(pid) + "/ns/ipc"; }

// Every process of the namespace must be in the tree: one outside it would
// lose the objects it shares with the tree, and could change them meanwhile.
// Only the root's ancestors may hold it too: `unshare --fork --ipc` waits
// for its child there; it keeps the old namespace, and uses nothing in it.
Status check_no_outsiders(const tree::FrozenTree& tree, const std::string& ns) {
  std::set<pid_t> ancestors;
  for (pid_t p = tree.processes().front().stat.ppid; p > 1 && ancestors.insert(p).second;) {
    auto st = proc::read_stat(p);
    if (!st.ok()) break;
    p = st->ppid;
  }
  DIR* proc_dir = ::opendir("/proc");
  if (!proc_dir) return errno_error("opendir /proc");
  Status st;
  while (struct dirent* d = ::readdir(proc_dir)) {
    char* end;
    long pid = std::strtol(d->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || tree.contains(static_cast<pid_t>(pid)) || ancestors.count(static_cast<pid_t>(pid)))
      continue;
    auto theirs = read_link(ns_path(static_cast<pid_t>(pid)));
    if (theirs.ok() && *theirs == ns) {
      st = Error(pid_str(static_cast<pid_t>(pid)) + " is outside the tree but in its ipc namespace " + ns +
                 " (dump a tree that holds them all)");
      break;
    }
  }
  ::closedir(proc_dir);
  return st;
}

void dump_sysctls(image::IpcNamespace* out) {
  for (const char* name : kIpcSysctls) {
    auto value = read_file(std::string("/proc/sys/") + name);
    if (!value.ok()) continue;  // one this kernel lacks
    std::string v = *value;
    while (!v.empty() && v.back() == '\n') v.pop_back();
    auto* s = out->add_sysctls();
    s->set_name(name);
    s->set_value(v);
  }
}

std::string shm_name(int id) { return "System V segment " + std::to_string(id) + " of the tree's ipc namespace"; }

// The data of a segment, read through a read-only attach of our own (its
// map_files entry keeps holes holes).
Status dump_segment_data(int id, image::SysvShm* s, image::PageWriter& pages, mm::DumpStats* stats) {
  void* at = ::shmat(id, nullptr, SHM_RDONLY);
  if (at == reinterpret_cast<void*>(-1)) return errno_error("shmat");
  uint64_t start = reinterpret_cast<uint64_t>(at);
  uint64_t span = (s->size() + kPage - 1) / kPage * kPage;
  // One of huge pages (SHM_HUGETLB) is attached in whole huge pages.
  if (auto text = read_file("/proc/self/maps"); text.ok())
    if (auto own = proc::parse_maps(*text); own.ok())
      for (const auto& m : *own)
        if (m.start == start) span = m.end - m.start;
  char path[80];
  std::snprintf(path, sizeof path, "/proc/self/map_files/%" PRIx64 "-%" PRIx64, start, start + span);
  Status st;
  auto fd = open_file(path, O_RDONLY | O_CLOEXEC);
  if (!fd.ok()) {
    st = std::move(fd).error();
  } else {
    struct statfs fs;
    if (::fstatfs(fd->get(), &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC)
      s->set_huge_page_size(static_cast<uint64_t>(fs.f_bsize));
    st = mm::dump_file_data(fd->get(), s->size(), s->mutable_pages(), pages, stats);
  }
  ::shmdt(at);
  return st;
}

// With kernel.shm_rmid_forced set, a segment goes when its last attach
// does: our own read of one nothing else has attached would remove it. The
// namespace has it off while its segments are read, and on again after.
class RmidForcedOff {
 public:
  static Result<RmidForcedOff> of_this_namespace() {
    RmidForcedOff off;
    auto value = read_file(kPath);
    if (!value.ok() || std::strtol(value->c_str(), nullptr, 10) == 0) return off;
    CRYO_TRY(write_value("0"));
    off.was_on_ = true;
    return off;
  }
  RmidForcedOff(RmidForcedOff&& o) noexcept : was_on_(o.was_on_) { o.was_on_ = false; }
  RmidForcedOff& operator=(RmidForcedOff&&) = delete;
  ~RmidForcedOff() {
    if (!was_on_) return;
    auto st = write_value("1");
    if (!st.ok()) log::error(st.error().message());
  }

 private:
  static constexpr const char* kPath = "/proc/sys/kernel/shm_rmid_forced";
  RmidForcedOff() = default;
  static Status write_value(const char* value) {
    CRYO_ASSIGN(UniqueFd fd, open_file(kPath, O_WRONLY | O_CLOEXEC));
    return write_all(fd.get(), value).wrap("kernel.shm_rmid_forced of the tree's ipc namespace");
  }
  bool was_on_ = false;
};

Status dump_segments(image::IpcNamespace* out, image::PageWriter& pages, mm::DumpStats* stats) {
  CRYO_ASSIGN(RmidForcedOff rmid_forced_off, RmidForcedOff::of_this_namespace());
  struct shm_info info{};
  int max_index = ::shmctl(0, SHM_INFO, reinterpret_cast<struct shmid_ds*>(&info));
  if (max_index < 0) return errno_error("shmctl SHM_INFO");
  for (int index = 0; index <= max_index; index++) {
    struct shmid_ds ds{};
    int id = ::shmctl(index, SHM_STAT, &ds);
    if (id < 0) continue;  // an unused slot
    constexpr uint32_t kDest = 01000, kLocked = 02000;
    if (ds.shm_perm.mode & kLocked) return Error(shm_name(id) + " is locked in memory (SHM_LOCK, not supported)");
    auto* s = out->add_shms();
    s->set_id(id);
    s->set_key(ds.shm_perm.__key);
    s->set_size(ds.shm_segsz);
    s->set_mode(ds.shm_perm.mode & 0777);
    s->set_uid(ds.shm_perm.uid);
    s->set_gid(ds.shm_perm.gid);
    s->set_cuid(ds.shm_perm.cuid);
    s->set_cgid(ds.shm_perm.cgid);
    s->set_removed((ds.shm_perm.mode & kDest) != 0);
    CRYO_TRY(dump_segment_data(id, s, pages, stats).wrap(shm_name(id)));
  }
  return {};
}

Status dump_semaphores(image::IpcNamespace* out, const tree::FrozenTree& tree, const PidMap& pids) {
  struct seminfo info{};
  int max_index = ::semctl(0, 0, SEM_INFO, &info);
  if (max_index < 0) return errno_error("semctl SEM_INFO");
  for (int index = 0; index <= max_index; index++) {
    struct semid_ds ds{};
    int id = ::semctl(index, 0, SEM_STAT, &ds);
    if (id < 0) continue;
    std::vector<unsigned short> values(ds.sem_nsems);
    if (::semctl(id, 0, GETALL, values.data()) < 0)
      return errno_error("semaphore set " + std::to_string(id) + " of the tree's ipc namespace: GETALL");
    auto* s = out->add_sems();
    s->set_id(id);
    s->set_key(ds.sem_perm.__key);
    s->set_mode(ds.sem_perm.mode & 0777);
    s->set_uid(ds.sem_perm.uid);
    s->set_gid(ds.sem_perm.gid);
    s->set_cuid(ds.sem_perm.cuid);
    s->set_cgid(ds.sem_perm.cgid);
    for (unsigned short v : values) s->add_values(v);
    for (int i = 0; i < static_cast<int>(values.size()); i++) {
      int last = ::semctl(id, i, GETPID);  // as cryo sees it
      s->add_pids(last > 0 && tree.contains(last) ? pids.inner(last) : 0);
    }
  }
  return {};
}

// Messages are copied, not taken (MSG_COPY reads the nth one in place).
Status dump_message_queues(image::IpcNamespace* out) {
  struct msginfo info{};
  int max_index = ::msgctl(0, MSG_INFO, reinterpret_cast<struct msqid_ds*>(&info));
  if (max_index < 0) return errno_error("msgctl MSG_INFO");
  for (int index = 0; index <= max_index; index++) {
    struct msqid_ds ds{};
    int id = ::msgctl(index, MSG_STAT, &ds);
    if (id < 0) continue;
    std::string what = "message queue " + std::to_string(id) + " of the tree's ipc namespace";
    auto* q = out->add_msg_queues();
    q->set_id(id);
    q->set_key(ds.msg_perm.__key);
    q->set_mode(ds.msg_perm.mode & 0777);
    q->set_uid(ds.msg_perm.uid);
    q->set_gid(ds.msg_perm.gid);
    q->set_cuid(ds.msg_perm.cuid);
    q->set_cgid(ds.msg_perm.cgid);
    q->set_qbytes(ds.msg_qbytes);
    // No message is longer than all of them together.
    std::vector<char> buf(sizeof(long) + ds.__msg_cbytes + 1);
    for (msgqnum_t n = 0; n < ds.msg_qnum; n++) {
      ssize_t got = ::msgrcv(id, buf.data(), buf.size() - sizeof(long), static_cast<long>(n), IPC_NOWAIT | MSG_COPY);
      if (got < 0) {
        if (errno == ENOSYS) return Error(ENOSYS, what + ": this kernel cannot copy messages (MSG_COPY needs CONFIG_CHECKPOINT_RESTORE)");
        return errno_error(what + ": msgrcv MSG_COPY of message " + std::to_string(n));
      }
      long type;
      std::memcpy(&type, buf.data(), sizeof type);
      auto* m = q->add_messages();
      m->set_type(type);
      m->set_text(std::string(buf.data() + sizeof(long), static_cast<size_t>(got)));
    }
  }
  return {};
}

// The namespace's own mqueue filesystem, as a mount attached nowhere: it
// lists the queues without touching any mount namespace.
Result<UniqueFd> mount_mqueue_fs() {
  UniqueFd fs(static_cast<int>(::syscall(SYS_fsopen, "mqueue", FSOPEN_CLOEXEC)));
  if (!fs) return errno_error("fsopen mqueue");
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
    return errno_error("fsconfig of an mqueue filesystem");
  UniqueFd mnt(static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, 0)));
  if (!mnt) return errno_error("fsmount of an mqueue filesystem");
  return mnt;
}

// "QSIZE:0 NOTIFY:0 SIGNO:0 NOTIFY_PID:0": a process registered for
// notification would not be after a restore.
Status check_no_notify(int dir, const std::string& name, const std::string& what) {
  CRYO_ASSIGN(UniqueFd fd, open_at(dir, name, O_RDONLY | O_CLOEXEC));
  CRYO_ASSIGN(std::string status, read_fd(fd.get()));
  auto at = status.find("NOTIFY_PID:");
  if (at != std::string::npos && std::strtol(status.c_str() + at + 11, nullptr, 10) != 0)
    return Error(what + " has a process registered for notification (mq_notify, not supported)");
  return {};
}

// mq_receive is the only way to read a message: each is taken and all are
// sent back at once, in the order taken (priority, then age), which is the
// order they had.
Status copy_messages(int mq, image::PosixMqueue* q, const std::string& what) {
  std::vector<char> buf(static_cast<size_t>(q->msgsize()) + 1);
  std::vector<image::PosixMessage> taken;
  Status st;
  for (;;) {
    unsigned prio = 0;
    ssize_t got = ::mq_receive(mq, buf.data(), buf.size(), &prio);
    if (got < 0) {
      if (errno != EAGAIN) st = errno_error(what + ": mq_receive");
      break;
    }
    image::PosixMessage m;
    m.set_priority(prio);
    m.set_text(std::string(buf.data(), static_cast<size_t>(got)));
    taken.push_back(std::move(m));
  }
  for (const auto& m : taken) {
    if (::mq_send(mq, m.text().data(), m.text().size(), m.priority()) < 0) {
      auto lost = errno_error(what + ": putting a message back (mq_send)");
      log::error(lost.message());
      if (st.ok()) st = std::move(lost);
    }
  }
  if (!st.ok()) return st;
  for (auto& m : taken) *q->add_messages() = std::move(m);
  return {};
}

Status dump_posix_queues(image::IpcNamespace* out) {
  CRYO_ASSIGN(UniqueFd mnt, mount_mqueue_fs());
  CRYO_ASSIGN(UniqueFd dir_fd, open_at(mnt.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* dir = ::fdopendir(dir_fd.get());
  if (!dir) return errno_error("fdopendir of the mqueue filesystem");
  (void)dir_fd.release();
  std::vector<std::string> names;
  while (struct dirent* d = ::readdir(dir))
    if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0) names.emplace_back(d->d_name);
  ::closedir(dir);
  for (const auto& name : names) {
    std::string what = "POSIX message queue /" + name + " of the tree's ipc namespace";
    struct stat st;
    if (::fstatat(mnt.get(), name.c_str(), &st, 0) < 0) return errno_error(what + ": stat");
    CRYO_TRY(check_no_notify(mnt.get(), name, what));
    // An fd of the mqueue filesystem is a message queue descriptor.
    CRYO_ASSIGN(UniqueFd mq, open_at(mnt.get(), name, O_RDWR | O_NONBLOCK | O_CLOEXEC));
    struct mq_attr attr{};
    if (::mq_getattr(mq.get(), &attr) < 0) return errno_error(what + ": mq_getattr");
    // A sender blocked on a full queue would slip its message in as soon as
    // one is taken, and one would be left over when they go back.
    if (attr.mq_curmsgs > 0 && attr.mq_curmsgs >= attr.mq_maxmsg)
      return Error(what + " is full: a process may be waiting to send to it (not supported)");
    auto* q = out->add_mqueues();
    q->set_name(name);
    q->set_mode(st.st_mode & 07777);
    q->set_uid(st.st_uid);
    q->set_gid(st.st_gid);
    q->set_maxmsg(attr.mq_maxmsg);
    q->set_msgsize(attr.mq_msgsize);
    CRYO_TRY(copy_messages(mq.get(), q, what));
  }
  return {};
}

}  // namespace

Result<std::optional<image::IpcNamespace>> dump_ipc_ns(const tree::FrozenTree& tree, const PidMap& pids,
                                                     image::PageWriter& pages, mm::DumpStats* stats) {
  pid_t root = tree.processes().front().pid;
  if (!own_namespace(root, "ipc")) return std::optional<image::IpcNamespace>();
  CRYO_ASSIGN(std::string theirs, read_link(ns_path(root)));
  uint64_t start = now_us();
  CRYO_TRY(check_no_outsiders(tree, theirs));
  image::IpcNamespace out;
  {
    CRYO_ASSIGN(Scope inside, Scope::enter_of(root, CLONE_NEWIPC));
    dump_sysctls(&out);
    CRYO_TRY(dump_segments(&out, pages, stats));
    CRYO_TRY(dump_semaphores(&out, tree, pids));
    CRYO_TRY(dump_message_queues(&out));
    CRYO_TRY(dump_posix_queues(&out));
    CRYO_TRY(inside.leave());
  }
  log::info("ipc namespace of pid " + std::to_string(root) + ": " + std::to_string(out.shms_size()) + " segments, " +
            std::to_string(out.sems_size()) + " semaphore sets, " + std::to_string(out.msg_queues_size()) +
            " message queues, " + std::to_string(out.mqueues_size()) + " POSIX message queues, read in " +
            std::to_string(now_us() - start) + " us");
  return std::optional<image::IpcNamespace>(std::move(out));
}

}  // namespace cryo::ns
