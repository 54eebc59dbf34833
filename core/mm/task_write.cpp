#include "core/mm/task_write.h"

#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/ptrace/ptrace.h"
#include "core/ptrace/rescue.h"
#include "core/sys/failpoint.h"
#include "core/sys/fdpass.h"
#include "core/sys/log.h"
#include "core/sys/util.h"
#include "core/task/parked_leader.h"
#include "core/task/task_probe.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kPage = 4096;
// About what one pwritev of the task writes: small enough that the reader
// follows it closely, large enough that the remote syscall's two ptrace
// stops do not count (512 MiB to tmpfs here, idle: 0.29-0.39 s in 8 MiB
// calls, 0.38-0.43 s in 1 MiB calls; with cryo's other threads copying
// pieces beside it, each call ends waiting for this thread to be scheduled
// again, and 32 MiB calls wrote 470-500 of 512 MiB where 8 MiB calls wrote
// 260-320). On a disk's filesystem (ext4 here) 8 MiB calls took 0.5-4 s now
// and then, 1 MiB calls steadily 0.23-0.28 s, as cryo's own 1 MiB writes:
// its writeback starts after each call (PageWriter::written).
constexpr uint64_t kBatchBytesInMemory = 32u << 20, kBatchBytes = 1u << 20;
// What the reader reads back at once: well inside a core's L2 cache for
// the zero test and the checksum that follow.
constexpr size_t kReadBack = 256u << 10;

// The room below the leader's stack: the socket pair's fds, recvmsg's
// message, then pwritev's iovecs.
constexpr uint64_t kPairAt = 0, kMsgAt = 16, kIovAt = 80, kControlAt = 96, kDataAt = 120, kIovecsAt = 128;
static_assert(kMsgAt + sizeof(struct msghdr) <= kIovAt);
static_assert(kControlAt + CMSG_SPACE(sizeof(int)) <= kDataAt);

// A range the task wrote: pages [addr, addr + bytes) of piece, at `at` in its page file.
struct Part {
  size_t piece;
  bool skip_zero;  // the piece's, for the reader (which never touches the pieces: more come meanwhile)
  uint64_t addr, bytes, at;
};

// What the reader made of a part.
struct PartRuns {
  google::protobuf::RepeatedPtrField<image::PageRun> runs;
  DumpStats stats;
  Ranges zero;
};

struct Batch {
  std::vector<Part> parts;
  std::vector<PartRuns> made;  // one per part
};

// Reads what the task wrote back, batch by batch, on threads of its own,
// each batch as soon as it is written.
class ReadBack {
 public:
  // file: the page file the task writes (PageWriter::reserve_file).
  ReadBack(image::PageWriter& pages, uint32_t file, unsigned threads) : pages_(pages), file_(file) {
    for (unsigned i = 0; i < threads; i++) threads_.emplace_back([this] { run(); });
  }
  ~ReadBack() { (void)stop(); }

  void add(std::unique_ptr<Batch> batch) {
    std::lock_guard lock(mu_);
    batches_.push_back(std::move(batch));
    queue_.push_back(batches_.back().get());
    cv_.notify_one();
  }
  // Waits for every batch; the first failure.
  Status stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (error_) return *error_;
    return {};
  }
  // In the order they were written.
  const std::deque<std::unique_ptr<Batch>>& batches() const { return batches_; }
  uint32_t file() const { return file_; }

 private:
  void run() {
    std::unique_ptr<uint8_t, decltype(&std::free)> buf(static_cast<uint8_t*>(std::aligned_alloc(kPage, kReadBack)),
                                                       &std::free);
    for (;;) {
      Batch* batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        batch = queue_.front();
        queue_.pop_front();
      }
      batch->made.resize(batch->parts.size());
      for (size_t i = 0; i < batch->parts.size(); i++) {
        Status st = read_part(batch->parts[i], buf.get(), &batch->made[i]);
        if (st.ok()) continue;
        std::lock_guard lock(mu_);
        if (!error_) error_ = std::move(st).error();
      }
    }
  }

  // The part's runs, as RunBuilder makes them from pages read out of the
  // task: one per run of pages, all-zero pages left out where the mapping
  // allows (and punched out of the file).
  Status read_part(const Part& part, uint8_t* buf, PartRuns* out) {
    image::Checksummer sum;
    image::PageRun* open = nullptr;
    uint64_t zero_from = 0, zero_bytes = 0;  // a stretch of zero pages to punch
    auto end_zero = [&] {
      if (zero_bytes) pages_.punch(file_, zero_from, zero_bytes);
      zero_bytes = 0;
    };
    auto end_run = [&] {
      if (!open) return;
      open->set_xxh3(sum.digest());
      out->stats.pages_written += open->npages();
      open = nullptr;
    };
    for (uint64_t done = 0; done < part.bytes; done += kReadBack) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kReadBack, part.bytes - done));
      CRYO_TRY(pages_.read_back(file_, part.at + done, buf, n));
      out->stats.bytes_copied_in += n;
      for (size_t off = 0; off < n; off += kPage) {
        const uint8_t* page = buf + off;
        uint64_t addr = part.addr + done + off, at = part.at + done + off;
        if (part.skip_zero && is_zero_page(page, &out->stats.bytes_zero_tested)) {
          end_run();
          out->stats.zero_pages_skipped++;
          if (!out->zero.empty() && out->zero.back().second == addr)
            out->zero.back().second += kPage;
          else
            out->zero.emplace_back(addr, addr + kPage);
          if (!zero_bytes) zero_from = at;
          zero_bytes += kPage;
          continue;
        }
        end_zero();
        if (!open) {
          open = out->runs.Add();
          open->set_addr(addr);
          open->set_file(file_);
          open->set_offset(at);
          open->set_npages(0);
          sum.reset();
        }
        sum.update(page, kPage);
        out->stats.bytes_checksummed += kPage;
        open->set_npages(open->npages() + 1);
      }
    }
    end_run();
    end_zero();
    out->stats.bytes_written_by_tasks += part.bytes;
    return {};
  }

  image::PageWriter& pages_;
  uint32_t file_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Batch>> batches_;
  std::deque<Batch*> queue_;
  bool stopping_ = false;
  std::optional<Error> error_;
  std::vector<std::thread> threads_;
};

// What pid's fd is, for the guard to know it by.
Guard::TaskFd task_fd(pid_t pid, int fd, Guard::TaskFd::Kind kind) {
  Guard::TaskFd f{fd, kind, 0, 0};
  struct stat st;
  std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  if (::stat(path.c_str(), &st) == 0) {
    f.dev = st.st_dev;
    f.inode = st.st_ino;
  }
  return f;
}

// The steps inside the task, its leader parked.
class InTask {
 public:
  // pages_fd: cryo's fd of the page file the task is to write.
  InTask(pid_t pid, task::ParkedRoom& room, int pages_fd)
      : pid_(pid), r_(room.remote), guard_(room.guard), room_(room), pages_fd_(pages_fd) {}

  // The page file's fd inside the task (-1: it could not take one, nothing
  // changed). On failure, the fds it made there are closed again.
  Result<int> pass_pages_fd() {
    auto fd = pass();
    if (fd.ok()) return fd;
    for (int held : held_) (void)close_in_task(held);
    if (!held_.empty()) (void)guard_.task_fds_closed();
    held_.clear();
    return fd;
  }

  // pwritev of iovecs (the task's memory) to `at` of fd: the bytes written
  // (fewer, or a negative errno, at a fault).
  Result<long> pwritev(int fd, const std::vector<struct iovec>& iov, uint64_t at) {
    CRYO_TRY(ptrace::write_memory(pid_, room_.scratch + kIovecsAt, iov.data(), iov.size() * sizeof(struct iovec)));
    return r_.raw(SYS_pwritev, {static_cast<uint64_t>(fd), room_.scratch + kIovecsAt, iov.size(), at, 0});
  }

  size_t max_iovecs() const { return std::min<size_t>(IOV_MAX, (room_.size - kIovecsAt) / sizeof(struct iovec)); }

  Status close_pages_fd(int fd) {
    CRYO_TRY(close_in_task(fd));
    return guard_.task_fds_closed();
  }

  std::string what() const { return pid_str(pid_); }

 private:
  Result<int> pass() {
    CRYO_ASSIGN(auto told, task::lowest_free_fds(pid_, 2));
    CRYO_TRY(tell({{told[0], Guard::TaskFd::kSocket, 0, 0}, {told[1], Guard::TaskFd::kSocket, 0, 0}}));
    CRYO_ASSIGN(long made, r_.raw(SYS_socketpair, {AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, room_.scratch + kPairAt}));
    if (made < 0) {
      log::debug(what() + ": socketpair: " + strerror(static_cast<int>(-made)) + ": cryo reads its pages instead");
      CRYO_TRY(guard_.task_fds_closed());
      return -1;
    }
    int pair[2];
    CRYO_TRY(ptrace::read_memory(pid_, room_.scratch + kPairAt, pair, sizeof pair));
    held_ = {pair[0], pair[1]};
    CRYO_TRY(tell({task_fd(pid_, pair[0], Guard::TaskFd::kSocket), task_fd(pid_, pair[1], Guard::TaskFd::kSocket)}));
    failpoint("taskwrite.socketpair");
    CRYO_ASSIGN(UniqueFd mine, copy_fd(pid_, pair[1]).wrap(what() + " fd " + std::to_string(pair[1]) +
                                                           ": taking cryo's socket"));
    CRYO_TRY(close_in_task(pair[1]));
    held_ = {pair[0]};
    Guard::TaskFd kept = task_fd(pid_, pair[0], Guard::TaskFd::kSocket);
    CRYO_ASSIGN(auto next, task::lowest_free_fds(pid_, 1));
    struct stat st;
    if (::fstat(pages_fd_, &st) < 0) return errno_error("fstat of a page file");
    Guard::TaskFd file{next[0], Guard::TaskFd::kFile, st.st_dev, st.st_ino};
    CRYO_TRY(tell({kept, file}));
    CRYO_TRY(send_with_fds(mine.get(), "p", 1, std::span<const int>(&pages_fd_, 1))
                 .wrap(what() + " fd " + std::to_string(pair[0]) + ": sending a page file"));
    // recvmsg's message in the room: one byte and one fd.
    char control[CMSG_SPACE(sizeof(int))] = {};
    struct msghdr msg = {};
    struct iovec iov = {reinterpret_cast<void*>(room_.scratch + kDataAt), 1};
    msg.msg_iov = reinterpret_cast<struct iovec*>(room_.scratch + kIovAt);
    msg.msg_iovlen = 1;
    msg.msg_control = reinterpret_cast<void*>(room_.scratch + kControlAt);
    msg.msg_controllen = sizeof control;
    CRYO_TRY(ptrace::write_memory(pid_, room_.scratch + kMsgAt, &msg, sizeof msg));
    CRYO_TRY(ptrace::write_memory(pid_, room_.scratch + kIovAt, &iov, sizeof iov));
    CRYO_TRY(ptrace::write_memory(pid_, room_.scratch + kControlAt, control, sizeof control));
    CRYO_ASSIGN(long got, r_.raw(SYS_recvmsg, {static_cast<uint64_t>(pair[0]), room_.scratch + kMsgAt,
                                               MSG_CMSG_CLOEXEC}));
    int fd = -1;
    if (got == 1) {
      CRYO_TRY(ptrace::read_memory(pid_, room_.scratch + kControlAt, control, sizeof control));
      const auto* c = reinterpret_cast<const struct cmsghdr*>(control);
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
    if (fd >= 0) held_.push_back(fd);
    if (fd >= 0 && fd != file.fd) {  // another process sharing the table took the number meant
      file.fd = fd;
      CRYO_TRY(tell({kept, file}));
    }
    CRYO_TRY(close_in_task(pair[0]));
    held_.erase(held_.begin());
    if (fd < 0) {
      log::debug(what() + ": recvmsg of a page file: " + (got < 0 ? strerror(static_cast<int>(-got)) : "no fd") +
                 ": cryo reads its pages instead");
      CRYO_TRY(guard_.task_fds_closed());
      return -1;
    }
    CRYO_TRY(tell({file}));
    failpoint("taskwrite.passed");
    return fd;
  }

  Status tell(const std::vector<Guard::TaskFd>& fds) { return guard_.task_fds(pid_, r_.tid(), fds); }
  Status close_in_task(int fd) {
    CRYO_ASSIGN(long closed, r_.raw(SYS_close, {static_cast<uint64_t>(fd)}));
    if (closed < 0)
      return Error(static_cast<int>(-closed), what() + " fd " + std::to_string(fd) + ": closing the fd cryo made there");
    return {};
  }

  pid_t pid_;
  ptrace::Remote& r_;
  Guard& guard_;
  task::ParkedRoom& room_;
  int pages_fd_;
  std::vector<int> held_;  // the fds made in the task so far
};

// The batches: the pieces' ranges in order, about batch_bytes a pwritev.
// A piece stops being written at the first fault in it or after it in its
// batch; what is left of it then is read the usual way, after what the task
// wrote of it. A fault stops the rest of the faulting mapping too.
// More pieces come from more() once those given are written.
Status write_batches(InTask& task, int fd, std::deque<TaskPiece>& pieces, const MorePieces& more,
                     image::PageWriter& pages, ReadBack& readers, uint64_t batch_bytes) {
  std::vector<size_t> pos(pieces.size(), 0);  // the next range of each piece to write
  std::vector<Ranges> left(pieces.size());    // the parts of a stopped piece not written, before pieces[k].wanted[pos[k]..]
  std::vector<bool> stopped(pieces.size(), false);
  std::set<const proc::MapEntry*> faulted;
  size_t max_iov = task.max_iovecs();
  bool first = true, last = false;
  auto another = [&] {
    if (last || !more(pieces)) {
      last = true;
      return false;
    }
    pos.push_back(0);
    left.emplace_back();
    stopped.push_back(false);
    return true;
  };
  for (size_t k = 0;;) {
    auto batch = std::make_unique<Batch>();
    std::vector<struct iovec> iov;
    uint64_t bytes = 0;
    while ((k < pieces.size() || another()) && bytes < batch_bytes && iov.size() < max_iov) {
      if (stopped[k] || faulted.count(pieces[k].m) || pos[k] == pieces[k].wanted.size()) {
        stopped[k] = stopped[k] || faulted.count(pieces[k].m);
        k++;
        continue;
      }
      auto& [s, e] = pieces[k].wanted[pos[k]];
      uint64_t take = std::min(e - s, batch_bytes - bytes);
      iov.push_back({reinterpret_cast<void*>(s), take});
      batch->parts.push_back({k, pieces[k].skip_zero, s, take, 0});
      s += take;
      if (s == e) pos[k]++;
      bytes += take;
    }
    if (iov.empty()) break;
    CRYO_ASSIGN(uint64_t span, pages.reserve(bytes));
    uint64_t at = span;
    for (auto& part : batch->parts) {
      part.at = at;
      at += part.bytes;
    }
    CRYO_ASSIGN(long wrote, task.pwritev(fd, iov, span));
    if (first) failpoint("taskwrite.writing");
    first = false;
    if (wrote < 0 && wrote != -EFAULT)
      return Error(static_cast<int>(-wrote), task.what() + " fd " + std::to_string(fd) + ": pwritev into " + image::page_file_name(readers.file()));
    uint64_t done = wrote < 0 ? 0 : static_cast<uint64_t>(wrote);
    pages.written(span, done);
    if (done < bytes) {
      // A fault: what was written goes to the reader, the rest of the batch
      // back to its pieces, each stopped there.
      // (A page written in part is written again by cryo.)
      uint64_t whole = done / kPage * kPage;
      std::vector<Part> written;
      for (const auto& part : batch->parts) {
        uint64_t in = part.at - span;  // where the part starts in the batch
        uint64_t kept = in >= whole ? 0 : std::min(part.bytes, whole - in);
        if (kept) written.push_back({part.piece, part.skip_zero, part.addr, kept, part.at});
        if (kept == part.bytes) continue;
        if (in <= whole && whole < in + part.bytes) faulted.insert(pieces[part.piece].m);
        stopped[part.piece] = true;
        left[part.piece].emplace_back(part.addr + kept, part.addr + part.bytes);
      }
      pages.punch(readers.file(), span + whole, bytes - whole);
      batch->parts = std::move(written);
      log::debug(task.what() + ": pwritev stopped at a fault after " + std::to_string(done) + " of " +
                 std::to_string(bytes) + " bytes: the rest of its mapping is read by cryo");
    }
    if (!batch->parts.empty()) readers.add(std::move(batch));
  }
  // What the task did not write: read the usual way.
  for (size_t k = 0; k < pieces.size(); k++) {
    Ranges rest = std::move(left[k]);
    rest.insert(rest.end(), pieces[k].wanted.begin() + static_cast<long>(pos[k]), pieces[k].wanted.end());
    pieces[k].wanted = std::move(rest);
  }
  return {};
}

}  // namespace

Status write_by_task(pid_t pid, const std::vector<pid_t>& tids, uint64_t syscall_ip,
                     const std::vector<proc::MapEntry>& maps, std::deque<TaskPiece>& pieces, const MorePieces& more,
                     image::PageWriter& pages) {
  if (!pages.local()) return {};
  auto plan = ptrace::plan_rescue(pid, maps);
  if (!plan.ok()) {
    log::debug(plan.error().message() + ": cryo reads its pages");
    return {};
  }
  CRYO_ASSIGN(task::TaskProbe probe, task::TaskProbe::attach(pid, syscall_ip, &*plan, maps));
  // The readers follow the task's writes on the other CPUs. One keeps up
  // with the task alone, but cryo's other threads take CPU time too, and
  // what it has not read when the task is done is time the dump waits: two
  // cut that wait (512 MiB: 6-12 ms, against 10-45 ms with one) and whole
  // dumps by 3-5% (512 MiB, 2 GiB).
  // A page file of its own, which none of cryo's writers waits for.
  CRYO_ASSIGN(auto reserved, pages.reserve_file());
  uint32_t file = reserved.first;
  int file_fd = reserved.second;
  ReadBack readers(pages, file, 2);
  struct statfs fs;
  bool in_memory = ::fstatfs(file_fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
  Status wrote;
  uint64_t started = now_us(), passed = 0, written = 0;
  CRYO_ASSIGN(bool parked,
              task::run_parked(tids, probe, &*plan, maps, {kIovecsAt + 16384, kIovecsAt + 4096, kIovecsAt + 1024},
                               "taskwrite", [&](task::ParkedRoom& room) -> Status {
                                 InTask task(pid, room, file_fd);
                                 CRYO_ASSIGN(int fd, task.pass_pages_fd());
                                 if (fd < 0) return {};
                                 passed = now_us();
                                 wrote = write_batches(task, fd, pieces, more, pages, readers,
                                                       in_memory ? kBatchBytesInMemory : kBatchBytes);
                                 written = now_us();
                                 // Closed whatever happened: the task keeps no fd of cryo's.
                                 CRYO_TRY(task.close_pages_fd(fd));
                                 return {};
                               }));
  Status read = readers.stop();
  if (written)
    log::debug(pid_str(pid) + " wrote its pages: " + std::to_string(passed - started) + " us to park it and pass the fd, " +
               std::to_string(written - passed) + " us writing, " + std::to_string(now_us() - written) +
               " us more to read them back");
  if (!parked) log::debug(pid_str(pid) + ": no room for a parking frame: cryo reads its pages");
  CRYO_TRY(std::move(wrote));
  CRYO_TRY(std::move(read));
  // Each piece's runs in the order its pages were written.
  for (const auto& batch : readers.batches())
    for (size_t i = 0; i < batch->parts.size(); i++) {
      TaskPiece& piece = pieces[batch->parts[i].piece];
      PartRuns& made = batch->made[i];
      for (auto& run : made.runs) *piece.runs.Add() = std::move(run);
      piece.stats.add(made.stats);
      for (const auto& z : made.zero) {
        if (!piece.zero.empty() && piece.zero.back().second == z.first)
          piece.zero.back().second = z.second;
        else
          piece.zero.push_back(z);
      }
    }
  return {};
}

}  // namespace cryo::mm
