// Making the tree's IPC namespace again (see ipc_ns.h). make_ipc_ns runs in
// the root stub, a single-threaded child of the restorer that glibc does
// not know as its own: credentials change with raw syscalls.
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/files/sysv_shm.h"
#include "core/ns/ipc_ns.h"
#include "core/ns/ipc_ns_sysctls.h"
#include "core/sys/io.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

// Limits a kernel puts on these objects, the bounds of a sane image.
constexpr uint64_t kMaxSegment = 1ULL << 40;
constexpr int kMaxSemaphores = 32000;   // SEMMSL's ceiling
constexpr uint32_t kMaxSemValue = 32767;  // SEMVMX
constexpr size_t kMaxMessage = 1 << 24;
constexpr int64_t kMaxQueueLength = 65536;  // HARD_MSGMAX
constexpr uint32_t kMaxPriority = 32768;    // MQ_PRIO_MAX

union SemArg {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

std::string shm_name(int id) { return "System V segment " + std::to_string(id); }
std::string sem_name(int id) { return "semaphore set " + std::to_string(id); }
std::string msg_name(int id) { return "message queue " + std::to_string(id); }
std::string mq_name(const std::string& name) { return "POSIX message queue /" + name; }

Status validate_sysctl(const image::IpcSysctl& s) {
  bool known = false;
  for (const char* name : kIpcSysctls) known = known || s.name() == name;
  if (!known) return Error(EINVAL, "sysctl " + s.name() + " is not one of an ipc namespace");
  if (s.value().empty() || s.value().size() > 64 ||
      s.value().find_first_not_of("0123456789 \t-") != std::string::npos)
    return Error(EINVAL, "sysctl " + s.name() + " has a malformed value");
  return {};
}

bool valid_mq_name(const std::string& name) {
  return !name.empty() && name.size() <= NAME_MAX && name != "." && name != ".." &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

// The next object made in this namespace gets id (kernel.*_next_id).
Status set_next_id(const char* sysctl, int id, const std::string& what) {
  CRYO_ASSIGN(UniqueFd next, open_file(std::string("/proc/sys/kernel/") + sysctl, O_WRONLY | O_CLOEXEC));
  return write_all(next.get(), std::to_string(id)).wrap(what + ": kernel." + sysctl);
}

// Effective ids of the object's creator while it is made (the kernel records
// them as cuid/cgid, which nothing can change later); root again after.
// A change of effective ids clears the parent-death signal, by which a stub
// dies with the restorer: it is set again, and a parent that died meanwhile
// is noticed.
class AsCreator {
 public:
  AsCreator(uint32_t uid, uint32_t gid) : uid_(::geteuid()), gid_(::getegid()), parent_(::getppid()) {
    ::prctl(PR_GET_PDEATHSIG, &death_signal_);
    if (gid != gid_) ::syscall(SYS_setresgid, -1, gid, -1);
    if (uid != uid_) ::syscall(SYS_setresuid, -1, uid, -1);
  }
  ~AsCreator() {
    ::syscall(SYS_setresuid, -1, uid_, -1);
    ::syscall(SYS_setresgid, -1, gid_, -1);
    if (death_signal_ == 0) return;
    ::prctl(PR_SET_PDEATHSIG, death_signal_);
    if (::getppid() != parent_) ::kill(::getpid(), death_signal_);
  }
  AsCreator(const AsCreator&) = delete;
  AsCreator& operator=(const AsCreator&) = delete;

 private:
  uid_t uid_;
  gid_t gid_;
  pid_t parent_;
  int death_signal_ = 0;
};

// Makes an object with its recorded id: the kernel gives the next_id set
// just before, unless it is taken (it cannot be, in a fresh namespace).
template <typename Make>
Status make_with_id(const char* next_id, int id, uint32_t cuid, uint32_t cgid, const std::string& what, Make make) {
  CRYO_TRY(set_next_id(next_id, id, what));
  int got;
  {
    AsCreator creator(cuid, cgid);
    got = make();
  }
  if (got < 0) return errno_error(what + ": making it");
  if (got != id) return Error(EBUSY, what + ": the kernel gave id " + std::to_string(got));
  return {};
}

// forced: kernel.shm_rmid_forced alone, which must wait for the segments
// (set, it removes a segment as soon as nothing has it attached, as when
// its data is written); without it, all the others.
Status write_sysctls(const image::IpcNamespace& ipc, bool forced) {
  for (const auto& s : ipc.sysctls()) {
    if ((s.name() == "kernel/shm_rmid_forced") != forced) continue;
    CRYO_ASSIGN(UniqueFd fd, open_file("/proc/sys/" + s.name(), O_WRONLY | O_CLOEXEC));
    CRYO_TRY(write_all(fd.get(), s.value()).wrap("sysctl " + s.name() + " of the ipc namespace"));
  }
  return {};
}

Status make_segment(const image::SysvShm& s, const image::ImageDirReader& images) {
  std::string what = shm_name(s.id());
  CRYO_TRY(make_with_id("shm_next_id", s.id(), s.cuid(), s.cgid(), what, [&] {
    return ::shmget(s.key(), s.size(), IPC_CREAT | IPC_EXCL | static_cast<int>(s.mode() & 0777) | files::huge_flags(s));
  }));
  struct shmid_ds ds{};
  if (::shmctl(s.id(), IPC_STAT, &ds) < 0) return errno_error(what + ": IPC_STAT");
  ds.shm_perm.uid = s.uid();
  ds.shm_perm.gid = s.gid();
  ds.shm_perm.mode = static_cast<unsigned short>(s.mode() & 0777);
  if (::shmctl(s.id(), IPC_SET, &ds) < 0) return errno_error(what + ": IPC_SET");
  return files::fill_segment(s, images, false);
}

Status make_semaphores(const image::SysvSem& s) {
  std::string what = sem_name(s.id());
  CRYO_TRY(make_with_id("sem_next_id", s.id(), s.cuid(), s.cgid(), what, [&] {
    return ::semget(s.key(), s.values_size(), IPC_CREAT | IPC_EXCL | static_cast<int>(s.mode() & 0777));
  }));
  struct semid_ds ds{};
  if (::semctl(s.id(), 0, IPC_STAT, SemArg{.buf = &ds}) < 0) return errno_error(what + ": IPC_STAT");
  ds.sem_perm.uid = s.uid();
  ds.sem_perm.gid = s.gid();
  ds.sem_perm.mode = static_cast<unsigned short>(s.mode() & 0777);
  if (::semctl(s.id(), 0, IPC_SET, SemArg{.buf = &ds}) < 0) return errno_error(what + ": IPC_SET");
  std::vector<unsigned short> values(s.values().begin(), s.values().end());
  if (::semctl(s.id(), 0, SETALL, SemArg{.array = values.data()}) < 0) return errno_error(what + ": SETALL");
  return {};
}

Status make_message_queue(const image::SysvMsgQueue& q) {
  std::string what = msg_name(q.id());
  CRYO_TRY(make_with_id("msg_next_id", q.id(), q.cuid(), q.cgid(), what, [&] {
    return ::msgget(q.key(), IPC_CREAT | IPC_EXCL | static_cast<int>(q.mode() & 0777));
  }));
  struct msqid_ds ds{};
  if (::msgctl(q.id(), IPC_STAT, &ds) < 0) return errno_error(what + ": IPC_STAT");
  ds.msg_perm.uid = q.uid();
  ds.msg_perm.gid = q.gid();
  ds.msg_perm.mode = static_cast<unsigned short>(q.mode() & 0777);
  // Room for every message first (the limit may have been lowered below
  // what the queue holds), the recorded limit once they are in.
  uint64_t total = 0;
  for (const auto& m : q.messages()) total += m.text().size();
  ds.msg_qbytes = std::max<uint64_t>(q.qbytes(), total);
  if (::msgctl(q.id(), IPC_SET, &ds) < 0) return errno_error(what + ": IPC_SET");
  std::vector<char> buf;
  for (const auto& m : q.messages()) {
    buf.resize(sizeof(long) + m.text().size());
    long type = static_cast<long>(m.type());
    std::memcpy(buf.data(), &type, sizeof type);
    std::memcpy(buf.data() + sizeof type, m.text().data(), m.text().size());
    if (::msgsnd(q.id(), buf.data(), m.text().size(), IPC_NOWAIT) < 0) return errno_error(what + ": msgsnd");
  }
  if (ds.msg_qbytes != q.qbytes()) {
    ds.msg_qbytes = q.qbytes();
    if (::msgctl(q.id(), IPC_SET, &ds) < 0) return errno_error(what + ": IPC_SET of its byte limit");
  }
  return {};
}

Status send_all(int mq, const image::PosixMqueue& q) {
  for (const auto& m : q.messages())
    if (::mq_send(mq, m.text().data(), m.text().size(), m.priority()) < 0) return errno_error(mq_name(q.name()) + ": mq_send");
  return {};
}

// Made by root (its messages are charged to root's RLIMIT_MSGQUEUE, lifted
// meanwhile), then given to its owner: a queue has no creator of its own.
Status make_posix_queue(const image::PosixMqueue& q) {
  std::string what = mq_name(q.name());
  struct mq_attr attr{};
  attr.mq_maxmsg = q.maxmsg();
  attr.mq_msgsize = q.msgsize();
  struct rlimit old, unlimited = {RLIM_INFINITY, RLIM_INFINITY};
  ::getrlimit(RLIMIT_MSGQUEUE, &old);
  ::setrlimit(RLIMIT_MSGQUEUE, &unlimited);
  mode_t mask = ::umask(0);
  mqd_t mq = ::mq_open(("/" + q.name()).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NONBLOCK | O_CLOEXEC,
                       static_cast<mode_t>(q.mode() & 0777), &attr);
  int saved = errno;
  ::umask(mask);
  ::setrlimit(RLIMIT_MSGQUEUE, &old);
  if (mq < 0) return Error(saved, what + ": mq_open");
  UniqueFd fd(mq);
  if (::fchown(fd.get(), q.uid(), q.gid()) < 0) return errno_error(what + ": fchown");
  return send_all(fd.get(), q);
}

template <typename T>
Status check_unique_ids(const T& objects, const std::string& kind) {
  std::set<int> ids;
  for (const auto& o : objects) {
    if (o.id() < 0) return Error(EINVAL, kind + " " + std::to_string(o.id()) + " has a bad id");
    if (!ids.insert(o.id()).second) return Error(EINVAL, kind + " " + std::to_string(o.id()) + " is there twice");
  }
  return {};
}

}  // namespace

Status validate_ipc_ns(const image::IpcNamespace& ipc, const image::Files& files) {
  if (files.sysv_shms_size() > 0)
    return Error(EINVAL, "segments of cryo's ipc namespace in an image whose tree has one of its own");
  for (const auto& s : ipc.sysctls()) CRYO_TRY(validate_sysctl(s));
  CRYO_TRY(check_unique_ids(ipc.shms(), "System V segment"));
  CRYO_TRY(check_unique_ids(ipc.sems(), "semaphore set"));
  CRYO_TRY(check_unique_ids(ipc.msg_queues(), "message queue"));
  for (const auto& s : ipc.shms())
    if (s.size() == 0 || s.size() > kMaxSegment) return Error(EINVAL, shm_name(s.id()) + " has a bad size");
  for (const auto& s : ipc.sems()) {
    if (s.values_size() == 0 || s.values_size() > kMaxSemaphores)
      return Error(EINVAL, sem_name(s.id()) + " has a bad number of semaphores");
    for (uint32_t v : s.values())
      if (v > kMaxSemValue) return Error(EINVAL, sem_name(s.id()) + " has a value above " + std::to_string(kMaxSemValue));
    if (s.pids_size() != 0 && s.pids_size() != s.values_size())
      return Error(EINVAL, sem_name(s.id()) + " has a last pid for some of its semaphores only");
  }
  for (const auto& q : ipc.msg_queues())
    for (const auto& m : q.messages())
      if (m.type() <= 0 || m.text().size() > kMaxMessage)
        return Error(EINVAL, msg_name(q.id()) + " has a message of a bad type or size");
  std::set<std::string> names;
  for (const auto& q : ipc.mqueues()) {
    if (!valid_mq_name(q.name()) || !names.insert(q.name()).second)
      return Error(EINVAL, "a POSIX message queue has a bad or repeated name");
    if (q.maxmsg() <= 0 || q.maxmsg() > kMaxQueueLength || q.msgsize() <= 0 ||
        q.msgsize() > static_cast<int64_t>(kMaxMessage) || q.messages_size() > q.maxmsg())
      return Error(EINVAL, mq_name(q.name()) + " has bad attributes");
    for (const auto& m : q.messages())
      if (m.priority() >= kMaxPriority || m.text().size() > static_cast<size_t>(q.msgsize()))
        return Error(EINVAL, mq_name(q.name()) + " has a message of a bad priority or size");
  }
  return {};
}

Status make_ipc_ns(const image::IpcNamespace& ipc, const image::ImageDirReader& images) {
  if (::unshare(CLONE_NEWIPC) < 0) return errno_error("unshare(CLONE_NEWIPC)");
  CRYO_TRY(write_sysctls(ipc, false));  // first: they bound what the objects may be
  for (const auto& s : ipc.shms()) CRYO_TRY(make_segment(s, images));
  for (const auto& s : ipc.sems()) CRYO_TRY(make_semaphores(s));
  for (const auto& q : ipc.msg_queues()) CRYO_TRY(make_message_queue(q));
  for (const auto& q : ipc.mqueues()) CRYO_TRY(make_posix_queue(q));
  return write_sysctls(ipc, true);
}

Status take_semaphore_pids(const image::IpcNamespace& ipc, pid_t pid) {
  for (const auto& s : ipc.sems()) {
    for (int i = 0; i < s.pids_size() && i < s.values_size(); i++) {
      if (s.pids(i) != pid) continue;
      // Down and up again (or up and down, from zero) in one atomic semop.
      short first = s.values(i) > 0 ? -1 : 1;
      struct sembuf ops[2] = {{static_cast<unsigned short>(i), first, IPC_NOWAIT},
                              {static_cast<unsigned short>(i), static_cast<short>(-first), IPC_NOWAIT}};
      if (::semop(s.id(), ops, 2) < 0)
        return errno_error(sem_name(s.id()) + ": semop to be its semaphore " + std::to_string(i) + "'s last process");
    }
  }
  return {};
}

Status remove_ipc_segments(pid_t pid, const image::IpcNamespace& ipc) {
  std::vector<int> removed;
  for (const auto& s : ipc.shms())
    if (s.removed()) removed.push_back(s.id());
  if (removed.empty()) return {};
  CRYO_ASSIGN(UniqueFd ns, open_file("/proc/" + std::to_string(pid) + "/ns/ipc", O_RDONLY | O_CLOEXEC));
  pid_t helper = ::fork();
  if (helper < 0) return errno_error("fork");
  if (helper == 0) {  // only system calls from here: the restorer may have threads
    if (::setns(ns.get(), CLONE_NEWIPC) < 0) ::_exit(2);
    for (int id : removed)
      if (::shmctl(id, IPC_RMID, nullptr) < 0) ::_exit(3);
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(helper, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error(EIO, "removing the System V segments that were removed at dump time in the ipc namespace of " +
                          pid_str(pid) + (WIFEXITED(status) && WEXITSTATUS(status) == 2 ? ": setns failed" : ": IPC_RMID failed"));
  return {};
}

}  // namespace cryo::ns
