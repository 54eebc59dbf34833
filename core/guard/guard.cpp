#include "core/guard/guard.h"

#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "core/mm/aio.h"
#include "core/mm/tracking.h"
#include "core/net/netlock.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo {
namespace {

constexpr int kFirstSocket = 3;

enum Kind : uint32_t {
  kProcess = 1,
  kParking = 2,
  kUnparked = 3,
  kFinishOnDeath = 4,
  kDone = 5,
  kAioCount = 6,
  kAioRing = 7,
  kAioSeen = 8,
  kAioCountDone = 9,
  kParkingOnFrame = 10,
  kTaskFds = 11,
  kTaskFdsClosed = 12,
};

// One word of cryo's to the guard; a pidfd rides along with kProcess, and
// `payload` bytes follow it (the AIO count's).
struct Message {
  uint32_t kind;
  int32_t tid;
  uint64_t ip;
  uint64_t mask;
  uint64_t payload;
  user_regs_struct regs;
};

// The AIO count's words, in and out of bytes.
class Writer {
 public:
  template <typename T>
  Writer& put(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Writer& bytes(const void* data, size_t size) {
    put(static_cast<uint64_t>(size));
    out_.append(static_cast<const char*>(data), size);
    return *this;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  template <typename T>
  T get() {
    T v{};
    if (at_ + sizeof v <= in_.size()) std::memcpy(&v, in_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  std::string bytes() {
    uint64_t size = get<uint64_t>();
    if (at_ > in_.size() || size > in_.size() - at_) return {};
    std::string out = in_.substr(at_, size);
    at_ += size;
    return out;
  }

 private:
  const std::string& in_;
  size_t at_ = 0;
};

template <typename T>
std::vector<T> vector_of(const std::string& bytes) {
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

struct Parked {
  uint64_t ip;
  uint64_t mask;
  user_regs_struct regs;
  bool on_frame = false;  // reaches pause() through a rescue frame once cryo is gone
};

// The fds cryo holds inside a task (Guard::task_fds).
struct TaskFds {
  pid_t pid;
  pid_t tid;
  std::vector<Guard::TaskFd> fds;
};

// Whether pid's fd is still the one cryo made there.
bool is_cryos(pid_t pid, const Guard::TaskFd& f) {
  std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(f.fd);
  switch (f.kind) {
    case Guard::TaskFd::kUserfaultfd:
      return mm::stale_tracker_inode(pid, f.fd) != 0;
    case Guard::TaskFd::kSocket: {
      auto link = read_link(path);
      return link.ok() && (f.inode ? *link == "socket:[" + std::to_string(f.inode) + "]" : link->starts_with("socket:["));
    }
    case Guard::TaskFd::kFile: {
      struct stat st;
      return ::stat(path.c_str(), &st) == 0 && st.st_dev == f.dev && st.st_ino == f.inode;
    }
  }
  return false;
}

Status close_task_fds(ptrace::Remote& r, const TaskFds& t) {
  for (const auto& f : t.fds) {
    if (!is_cryos(t.pid, f)) continue;
    CRYO_ASSIGN(long closed, r.raw(SYS_close, {static_cast<uint64_t>(f.fd)}));
    if (closed < 0)
      return Error(static_cast<int>(-closed), "pid " + std::to_string(t.pid) + " fd " + std::to_string(f.fd) +
                                                  ": closing the fd cryo made there");
  }
  return {};
}

// Reads one message (and the fd passed with it, and its payload); false at
// end of file.
bool receive(int fd, Message* m, UniqueFd* passed, std::string* payload) {
  passed->reset();
  auto got = receive_all(fd, m, sizeof *m);
  if (!got.ok() || got->bytes != sizeof *m) return false;
  if (!got->fds.empty()) *passed = std::move(got->fds.front());
  payload->assign(m->payload, '\0');
  auto rest = receive_all(fd, payload->data(), payload->size());
  return rest.ok() && rest->bytes == payload->size();
}

void set_repair(int fd, int on) {
  int now = 0;
  socklen_t len = sizeof now;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &now, &len) == 0 && now != on)
    ::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on);
}

// Seizes tid once cryo's death has let it go: a tracer's exit closes its
// files (whose end of file woke the guard) before it detaches its tracees.
bool seize_released(pid_t tid, unsigned options) {
  for (int tries = 0; tries < 2000; tries++) {
    auto st = ptrace::seize(tid, options);
    if (st.ok()) return true;
    if (st.error().code() != EPERM) return false;  // gone
    ::usleep(1000);
  }
  return false;
}

bool at_pause(const user_regs_struct& regs, uint64_t ip) {
  return (regs.rip == ip + 2 && regs.orig_rax == SYS_pause) || (regs.rip == ip && regs.rax == SYS_pause);
}

// A parked thread sits in pause() at park_ip with every signal blocked (or
// has not yet run the syscall): it gets its own registers back. A thread
// seen elsewhere ran on before it was parked: only its mask is ours.
// A thread parked on a frame (the one that counts AIO requests or makes a
// userfaultfd) gets time to arrive there; undo: what cryo changed through
// it (`what`), put back through it before it is given back.
void give_back(pid_t tid, const Parked& p, const std::function<Status(ptrace::Remote&)>& undo = {},
               const std::string& what = "") {
  if (!seize_released(tid, undo ? PTRACE_O_TRACESYSGOOD : 0)) return;  // gone
  bool stopped = false, parked = false;
  for (int tries = p.on_frame ? 2000 : 1; tries > 0 && !parked; tries--) {
    stopped = ptrace::interrupt_and_wait(tid, 2000).ok();
    if (!stopped) break;
    auto regs = ptrace::get_regs(tid);
    parked = regs.ok() && at_pause(*regs, p.ip);
    if (parked && undo) {
      ptrace::Remote r(tid, p.ip, *regs);
      auto st = undo(r);
      if (!st.ok()) log::error("guard: " + st.error().message());
      for (const auto& [tgid, sig] : ptrace::take_deferred_stops()) ::kill(tgid, sig);
    }
    if (!parked && tries > 1) {
      if (::ptrace(PTRACE_CONT, tid, nullptr, nullptr) < 0) break;
      stopped = false;
      ::usleep(1000);
    }
  }
  if (undo && !parked) log::error("guard: thread " + std::to_string(tid) + " did not come to rest: " + what + " stays");
  if (stopped) {
    if (parked) (void)ptrace::set_regs(tid, p.regs);
    // cryo blocked everything it could (the kernel keeps SIGKILL and SIGSTOP
    // out of any mask).
    constexpr uint64_t kAllBlocked = ~0ULL & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
    auto mask = ptrace::get_sigmask(tid);
    if (mask.ok() && *mask == kAllBlocked) (void)ptrace::set_sigmask(tid, p.mask);
  }
  (void)ptrace::detach(tid);
}

}  // namespace

Guard& Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    life_ = std::exchange(other.life_, -1);
    tools_ = std::exchange(other.tools_, -1);
  }
  return *this;
}

namespace {

int g_guards_hold = -1;  // see guards_hold()

std::string& guard_binary() {
  static std::string path = "/proc/self/exe";
  return path;
}

}  // namespace

void set_guard_binary(const std::string& path) { guard_binary() = path; }

void guards_hold(int fd) { g_guards_hold = fd; }

Result<Guard> Guard::start(const std::string& method, const std::string& table, const std::vector<int>& sockets,
                           const std::string& commit_marker) {
  struct stat marker{};
  if (commit_marker.empty() || ::stat(commit_marker.c_str(), &marker) < 0) marker.st_ino = 0;
  // A socket pair rather than a pipe: it carries pidfds, and cryo's words
  // are sent with MSG_NOSIGNAL, so a guard that died early cannot take cryo
  // down with SIGPIPE.
  int life[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) < 0) return errno_error("socketpair");
  // The lock tools cryo runs (nft, iptables) hold the write end of this
  // pipe: its end of file tells the guard that none of them is still at work.
  int tools[2];
  if (::pipe2(tools, O_CLOEXEC) < 0) {
    ::close(life[0]);
    ::close(life[1]);
    return errno_error("pipe2");
  }
  // Everything the child needs is made before fork: it only moves fds and execs.
  std::vector<std::string> words = {"cryo", "guard", method.empty() ? "-" : method, table.empty() ? "-" : table,
                                    std::to_string(sockets.size()), commit_marker.empty() ? "-" : commit_marker,
                                    std::to_string(marker.st_ino)};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const std::string binary = guard_binary();
  int n = static_cast<int>(sockets.size());
  int held = g_guards_hold;
  pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {life[0], life[1], tools[0], tools[1]}) ::close(fd);
    return errno_error("fork the guard");
  }
  if (pid == 0) {
    // Out of the way first (above anything in use), then into place: the
    // sockets at 3.., the socket pair's end after them, the tools' pipe,
    // then the held file.
    int high = 1024 + n + 8;
    for (int i = 0; i < n; i++)
      if (::fcntl(sockets[static_cast<size_t>(i)], F_DUPFD, high + i) != high + i) ::_exit(127);
    if (::fcntl(life[0], F_DUPFD, high + n) != high + n) ::_exit(127);
    if (::fcntl(tools[0], F_DUPFD, high + n + 1) != high + n + 1) ::_exit(127);
    int last = held >= 0 ? n + 2 : n + 1;
    if (held >= 0 && ::fcntl(held, F_DUPFD, high + last) != high + last) ::_exit(127);
    for (int i = 0; i <= last; i++)
      if (::dup2(high + i, kFirstSocket + i) < 0) ::_exit(127);
    ::syscall(SYS_close_range, kFirstSocket + last + 1, ~0U, 0);
    ::setsid();  // a Ctrl-C meant for cryo does not reach the guard
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(life[0]);
  ::close(tools[0]);
  Guard guard;
  guard.pid_ = pid;
  guard.life_ = life[1];
  guard.tools_ = tools[1];
  net::lock_tools_hold(tools[1]);
  return guard;
}

Status Guard::send(uint32_t kind, pid_t tid, uint64_t ip, const user_regs_struct* regs, uint64_t mask, int pass_fd,
                   const std::string& payload) {
  if (life_ < 0) return {};
  Message m{};
  m.kind = kind;
  m.tid = tid;
  m.ip = ip;
  m.mask = mask;
  m.payload = payload.size();
  if (regs) m.regs = *regs;
  std::string bytes(reinterpret_cast<const char*>(&m), sizeof m);
  bytes += payload;
  std::span<const int> fds;
  if (pass_fd >= 0) fds = std::span<const int>(&pass_fd, 1);
  return send_all(life_, bytes.data(), bytes.size(), "telling the guard", fds);
}

Status Guard::add_process(pid_t pid) {
  if (life_ < 0) return {};
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno_error("pidfd_open " + std::to_string(pid));
  Status st = send(kProcess, pid, 0, nullptr, 0, pidfd);
  ::close(pidfd);
  return st;
}

Status Guard::parking(pid_t tid, uint64_t park_ip, const user_regs_struct& regs, uint64_t mask) {
  return send(kParking, tid, park_ip, &regs, mask);
}

Status Guard::parking_on_frame(pid_t tid, uint64_t park_ip, const user_regs_struct& regs, uint64_t mask) {
  return send(kParkingOnFrame, tid, park_ip, &regs, mask);
}

Status Guard::unparked(pid_t tid) { return send(kUnparked, tid, 0, nullptr, 0); }

Status Guard::finish_on_death() { return send(kFinishOnDeath, 0, 0, nullptr, 0); }

Status Guard::aio_count(const mm::AioUndo& undo) {
  Writer w;
  w.put(undo.pid).put(undo.tid).put(undo.scratch).put(undo.scratch_size).put(undo.fd);
  w.bytes(undo.affinity.data(), undo.affinity.size());
  w.bytes(undo.rings_before.data(), undo.rings_before.size() * sizeof(uint64_t));
  return send(kAioCount, undo.tid, 0, nullptr, 0, -1, w.take());
}

Status Guard::aio_ring(const mm::AioUndo& undo) {
  Writer w;
  w.put(undo.ctx).put(undo.nr).put(undo.head).put(undo.scan_from);
  w.bytes(undo.events.data(), undo.events.size() * sizeof(struct io_event));
  return send(kAioRing, undo.tid, 0, nullptr, 0, -1, w.take());
}

Status Guard::aio_seen(uint32_t scan_from, const std::vector<struct io_event>& more) {
  Writer w;
  w.put(scan_from);
  w.bytes(more.data(), more.size() * sizeof(struct io_event));
  return send(kAioSeen, 0, 0, nullptr, 0, -1, w.take());
}

Status Guard::aio_count_done() { return send(kAioCountDone, 0, 0, nullptr, 0); }

Status Guard::task_fds(pid_t pid, pid_t tid, const std::vector<TaskFd>& fds) {
  Writer w;
  w.put(pid);
  w.bytes(fds.data(), fds.size() * sizeof(TaskFd));
  return send(kTaskFds, tid, 0, nullptr, 0, -1, w.take());
}

Status Guard::task_fds_closed() { return send(kTaskFdsClosed, 0, 0, nullptr, 0); }

void Guard::release() {
  if (life_ < 0) return;
  (void)send(kDone, 0, 0, nullptr, 0);
  ::close(life_);
  life_ = -1;
  net::lock_tools_hold(-1);
  ::close(tools_);
  tools_ = -1;
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

int run_guard(const std::string& method, const std::string& table, int count, const std::string& commit_marker,
              uint64_t marker_inode) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(sig, SIG_IGN);
  // CRYO_FAILPOINT names cryo's steps: the guard, which undoes what a cryo
  // killed at one of them left, must not die at its own remote syscalls.
  ::unsetenv("CRYO_FAILPOINT");
  // It holds a pidfd of each process of the tree: a pidfd it could not take
  // (EMFILE) would cut a message short, which ends its reading like a death
  // of cryo's.
  struct rlimit files;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  int life = kFirstSocket + count;
  std::vector<int> pidfds;
  std::map<pid_t, Parked> parked;
  bool finish = false;
  std::optional<mm::AioUndo> aio;  // an AIO count under way
  std::optional<TaskFds> task_fds;  // fds cryo holds inside a task
  Message m;
  UniqueFd passed;
  std::string payload;
  while (receive(life, &m, &passed, &payload)) {
    Reader in(payload);
    switch (m.kind) {
      case kProcess:
        if (passed) pidfds.push_back(passed.release());
        break;
      case kParking:
      case kParkingOnFrame:
        parked[m.tid] = Parked{m.ip, m.mask, m.regs, m.kind == kParkingOnFrame};
        break;
      case kUnparked:
        parked.erase(m.tid);
        break;
      case kFinishOnDeath:
        finish = true;
        break;
      case kAioCount: {
        mm::AioUndo u;
        u.pid = in.get<pid_t>();
        u.tid = in.get<pid_t>();
        u.scratch = in.get<uint64_t>();
        u.scratch_size = in.get<uint64_t>();
        u.fd = in.get<int>();
        u.affinity = in.bytes();
        u.rings_before = vector_of<uint64_t>(in.bytes());
        aio = std::move(u);
        break;
      }
      case kAioRing:
        if (aio) {
          aio->ctx = in.get<uint64_t>();
          aio->nr = in.get<uint32_t>();
          aio->head = in.get<uint32_t>();
          aio->scan_from = in.get<uint32_t>();
          aio->events = vector_of<struct io_event>(in.bytes());
        }
        break;
      case kAioSeen:
        if (aio) {
          aio->scan_from = in.get<uint32_t>();
          auto more = vector_of<struct io_event>(in.bytes());
          aio->events.insert(aio->events.end(), more.begin(), more.end());
        }
        break;
      case kAioCountDone:
        aio.reset();
        break;
      case kTaskFds: {
        TaskFds t;
        t.pid = in.get<pid_t>();
        t.tid = m.tid;
        t.fds = vector_of<Guard::TaskFd>(in.bytes());
        task_fds = std::move(t);
        break;
      }
      case kTaskFdsClosed:
        task_fds.reset();
        break;
      case kDone:
        return 0;  // cryo took care of it
      default:
        break;
    }
  }
  // cryo died after the job was done but before it said so: a new inventory
  // renamed into place means the image is complete.
  struct stat marker;
  if (!finish && commit_marker != "-" && ::stat(commit_marker.c_str(), &marker) == 0 && marker.st_ino != marker_inode)
    finish = true;
  if (finish) {
    // The image is complete (or a restore was letting its tree go): the
    // tree dies as planned, its connections close silently, the lock stays.
    for (int fd : pidfds) ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
    for (int fd = kFirstSocket; fd < kFirstSocket + count; fd++) set_repair(fd, 1);
    return 0;
  }
  // cryo died in the middle: the tree runs on, so its connections must work
  // again before any of its parked threads runs.
  for (int fd = kFirstSocket; fd < kFirstSocket + count; fd++) set_repair(fd, 0);
  // A lock tool of cryo's may still be putting the lock in place: wait for
  // the end of file of the pipe every one of them holds (bounded, should a
  // tool hang).
  struct pollfd tools = {kFirstSocket + count + 1, POLLIN, 0};
  for (char sink[64]; ::poll(&tools, 1, 10000) > 0 && ::read(tools.fd, sink, sizeof sink) > 0;) {
  }
  int code = 0;
  if (table != "-") {
    auto st = net::unlock_connections(table, method);
    if (!st.ok()) {
      log::error("guard: " + st.error().message());
      code = 1;
    }
  }
  // The thread that counted AIO requests or made fds inside its task first: no
  // thread of its task may run before what cryo changed is back.
  pid_t through = 0;
  std::function<Status(ptrace::Remote&)> undo;
  std::string what;
  if (aio && parked.count(aio->tid)) {
    through = aio->tid;
    undo = [&](ptrace::Remote& r) { return mm::undo_aio_count(r, *aio); };
    what = "what counting AIO requests changed in pid " + std::to_string(aio->pid);
  } else if (task_fds && parked.count(task_fds->tid)) {
    through = task_fds->tid;
    undo = [&](ptrace::Remote& r) { return close_task_fds(r, *task_fds); };
    what = "the fds cryo made in pid " + std::to_string(task_fds->pid);
    for (const auto& f : task_fds->fds) what += " " + std::to_string(f.fd);
  }
  if (through) give_back(through, parked.at(through), undo, what);
  for (const auto& [tid, p] : parked)
    if (tid != through) give_back(tid, p);
  return code;
}

}  // namespace cryo
