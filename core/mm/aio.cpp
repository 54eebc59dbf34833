#include "core/mm/aio.h"

#include <linux/aio_abi.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <set>

#include "core/guard/guard.h"
#include "core/task/parked_leader.h"
#include "core/sys/failpoint.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/scope_guard.h"

namespace cryo::mm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint32_t kRingMagic = 0xa10a10a1;  // AIO_RING_MAGIC (fs/aio.c)
// io_event.data of the requests cryo submits itself ("cryo-aio").
constexpr uint64_t kCryoTag = 0x6372796f2d61696fULL;

// struct aio_ring of fs/aio.c: the header of the ring the task sees.
struct RingHeader {
  uint32_t id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};
static_assert(sizeof(RingHeader) == 32 && sizeof(struct io_event) == 32);

// The scratch room in the task: the iocb cryo submits, io_setup's answer,
// then as many pointers to that one iocb as fit (a page: kMaxBatch).
constexpr uint64_t kIocbAt = 0, kAnswerAt = 64, kListAt = 128;
constexpr size_t kMaxBatch = (kPage - kListAt) / 8;
constexpr char kMemfdName[] = "cryo-aio";

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(v));
  return buf;
}

std::string what_ctx(pid_t pid, uint64_t ctx) { return "pid " + std::to_string(pid) + " AIO context 0x" + hex(ctx); }

Result<RingHeader> read_header(pid_t pid, uint64_t ctx) {
  RingHeader h;
  CRYO_TRY(ptrace::read_memory(pid, ctx, &h, sizeof h));
  return h;
}

Status write_head(pid_t pid, uint64_t ctx, uint32_t head) {
  return ptrace::write_memory(pid, ctx + offsetof(RingHeader, head), &head, sizeof head);
}

// Events [from, from + count) of a ring of nr, wrapping at its end.
Result<std::vector<struct io_event>> read_events(pid_t pid, uint64_t ctx, uint32_t nr, uint32_t from, uint32_t count) {
  std::vector<struct io_event> out(count);
  for (uint32_t done = 0; done < count;) {
    uint32_t at = (from + done) % nr, n = std::min(count - done, nr - at);
    CRYO_TRY(ptrace::read_memory(pid, ctx + sizeof(RingHeader) + uint64_t{at} * sizeof(struct io_event),
                                 out.data() + done, n * sizeof(struct io_event)));
    done += n;
  }
  return out;
}

Status write_events(pid_t pid, uint64_t ctx, uint32_t nr, uint32_t from, const std::vector<struct io_event>& events) {
  uint32_t count = static_cast<uint32_t>(events.size());
  for (uint32_t done = 0; done < count;) {
    uint32_t at = (from + done) % nr, n = std::min(count - done, nr - at);
    CRYO_TRY(ptrace::write_memory(pid, ctx + sizeof(RingHeader) + uint64_t{at} * sizeof(struct io_event),
                                  events.data() + done, n * sizeof(struct io_event)));
    done += n;
  }
  return {};
}

uint32_t distance(uint32_t from, uint32_t to, uint32_t nr) { return (to + nr - from) % nr; }

// What io_setup makes of a ring of `size` bytes: the kernel raises the
// request to 4 per possible CPU, doubles it, adds 2 and fills the pages that
// takes with events. Half of what fits, less 2, grows back to the same pages.
uint32_t events_in(uint64_t size) { return static_cast<uint32_t>((size - sizeof(RingHeader)) / sizeof(struct io_event)); }
uint32_t nr_request_for(uint32_t nr) { return nr > 2 ? (nr - 2) / 2 : 1; }

Status check_header(const RingHeader& h, uint64_t size, const std::string& what) {
  if (h.magic != kRingMagic || h.header_length != sizeof(RingHeader) || h.incompat_features != 0 ||
      h.nr != events_in(size))
    return Error(EINVAL, what + ": the ring's header is not one cryo knows (magic 0x" + hex(h.magic) + ", " +
                             std::to_string(h.nr) + " events in " + std::to_string(size) + " bytes)");
  if (h.head >= h.nr || h.tail >= h.nr)
    return Error(EINVAL, what + ": head " + std::to_string(h.head) + " or tail " + std::to_string(h.tail) +
                             " lies outside the ring of " + std::to_string(h.nr));
  return {};
}

std::vector<int> cpus_of(const cpu_set_t& mask) {
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &mask)) cpus.push_back(c);
  return cpus;
}

// The CPUs tid may run on.
Result<std::vector<int>> allowed_cpus(pid_t tid, cpu_set_t* mask) {
  if (::sched_getaffinity(tid, sizeof *mask, mask) < 0) return errno_error("sched_getaffinity");
  return cpus_of(*mask);
}

bool run_on(pid_t tid, int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return ::sched_setaffinity(tid, sizeof one, &one) == 0;
}

// Requests that complete as they are submitted: writes of no byte to a memfd
// of the task's own, each completion an event tagged kCryoTag. Submitting
// them is the only way to move the kernel's tail of a ring, and counting
// how many the kernel takes the only way to see its free slots.
class Submitter {
 public:
  // scratch: `size` bytes of the task's (kListAt + 8 at least). want_fd >= 0:
  // the fd the memfd must take (the guard was told), else it fails.
  static Result<Submitter> open(pid_t pid, ptrace::Remote& r, uint64_t scratch, uint64_t size = kPage,
                                int want_fd = -1) {
    if (size < kListAt + 8) return Error(EINVAL, "no room for AIO requests");
    Submitter s(pid, r, scratch, std::min<size_t>((size - kListAt) / 8, kMaxBatch));
    CRYO_TRY(ptrace::write_memory(pid, scratch + kListAt, kMemfdName, sizeof kMemfdName));
    CRYO_ASSIGN(long fd, r.call("memfd_create", SYS_memfd_create, {scratch + kListAt, MFD_CLOEXEC}));
    s.fd_ = static_cast<int>(fd);
    if (want_fd >= 0 && fd != want_fd)
      return Error(EBUSY, "memfd_create gave fd " + std::to_string(fd) + ", not the free fd " + std::to_string(want_fd));
    struct iocb cb;
    std::memset(&cb, 0, sizeof cb);
    cb.aio_data = kCryoTag;
    cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    cb.aio_fildes = static_cast<uint32_t>(fd);
    cb.aio_buf = scratch;
    cb.aio_nbytes = 0;
    CRYO_TRY(ptrace::write_memory(pid, scratch + kIocbAt, &cb, sizeof cb));
    std::vector<uint64_t> list(s.batch_, scratch + kIocbAt);
    CRYO_TRY(ptrace::write_memory(pid, scratch + kListAt, list.data(), list.size() * 8));
    return s;
  }
  Submitter(Submitter&& o) noexcept
      : pid_(o.pid_), r_(o.r_), scratch_(o.scratch_), batch_(o.batch_), fd_(std::exchange(o.fd_, -1)) {}
  ~Submitter() {
    if (fd_ >= 0) (void)r_->raw(SYS_close, {static_cast<uint64_t>(fd_)});
  }

  // Up to n (at most a batch) requests to ctx: how many the kernel took, 0
  // when it has no free slot for this CPU.
  Result<uint32_t> submit(uint64_t ctx, uint32_t n) {
    CRYO_ASSIGN(long got, r_->raw(SYS_io_submit, {ctx, std::min<uint64_t>(n, batch_), scratch_ + kListAt}));
    if (got == -EAGAIN) return 0u;
    if (got < 0) return Error(static_cast<int>(-got), "io_submit");
    return static_cast<uint32_t>(got);
  }

  // Submits until the kernel takes no more on this CPU.
  Result<uint64_t> drain(uint64_t ctx) {
    uint64_t total = 0;
    for (;;) {
      CRYO_ASSIGN(uint32_t got, submit(ctx, static_cast<uint32_t>(batch_)));
      if (got == 0) return total;
      total += got;
    }
  }

  Result<uint64_t> io_setup(uint32_t nr_request) {
    uint64_t ctx = 0;  // io_setup wants it zero
    CRYO_TRY(ptrace::write_memory(pid_, scratch_ + kAnswerAt, &ctx, sizeof ctx));
    CRYO_TRY(r_->call("io_setup", SYS_io_setup, {nr_request, scratch_ + kAnswerAt}));
    CRYO_TRY(ptrace::read_memory(pid_, scratch_ + kAnswerAt, &ctx, sizeof ctx));
    return ctx;
  }

  ptrace::Remote& remote() { return *r_; }

 private:
  Submitter(pid_t pid, ptrace::Remote& r, uint64_t scratch, size_t batch)
      : pid_(pid), r_(&r), scratch_(scratch), batch_(batch) {}
  pid_t pid_;
  ptrace::Remote* r_;
  uint64_t scratch_;
  size_t batch_;
  int fd_ = -1;
};

// The completions in [from, to) that are not cryo's own.
Status collect_foreign(pid_t pid, uint64_t ctx, uint32_t nr, uint32_t from, uint32_t to,
                       std::vector<struct io_event>* out) {
  CRYO_ASSIGN(auto events, read_events(pid, ctx, nr, from, distance(from, to, nr)));
  for (const auto& e : events)
    if (e.data != kCryoTag) out->push_back(e);
  return {};
}

// Brings the ring at ctx to: head `head`, the events `events` in [head, ...)
// and the kernel's tail right after them. cryo's own requests move the
// kernel's tail, reaped by moving head as they come, but the last
// events.size() of them stay unreaped, so that the kernel counts as many
// events in the ring as it will hold; their slots then get the events.
// Completions of the task's own requests that arrive meanwhile are kept,
// after `events`. cpus: where slots may be taken when one CPU has none.
// seen (if any) learns, before head moves past them, the completions of the
// task's found up to a point of the ring (see AioUndo::scan_from).
using Seen = std::function<Status(uint32_t scan_from, const std::vector<struct io_event>& more)>;
Status put_ring(pid_t pid, Submitter& sub, uint64_t ctx, uint32_t nr, uint32_t head,
                std::vector<struct io_event> events, const std::vector<int>& cpus, const Seen& seen = {}) {
  pid_t tid = sub.remote().tid();
  // Collects the completions not cryo's in [from, to) into late and tells seen.
  auto collect = [&](uint32_t from, uint32_t to, std::vector<struct io_event>* late) -> Status {
    size_t had = late->size();
    CRYO_TRY(collect_foreign(pid, ctx, nr, from, to, late));
    if (!seen) return {};
    return seen(to, std::vector<struct io_event>(late->begin() + static_cast<ptrdiff_t>(had), late->end()));
  };
  for (int lap = 0; lap < 16; lap++) {
    uint32_t keep = static_cast<uint32_t>(events.size());
    if (keep >= nr) return Error(EINVAL, "more events than the ring holds");
    uint32_t target = (head + keep) % nr;
    CRYO_ASSIGN(RingHeader h, read_header(pid, ctx));
    uint64_t need = distance(h.tail, target, nr);
    while (need < keep) need += nr;
    std::vector<struct io_event> late;
    // Reaped as they come ...
    for (uint64_t left = need - keep; left > 0;) {
      CRYO_ASSIGN(uint32_t got, sub.submit(ctx, static_cast<uint32_t>(std::min<uint64_t>(left, kMaxBatch))));
      CRYO_ASSIGN(RingHeader now, read_header(pid, ctx));
      CRYO_TRY(collect(h.tail, now.tail, &late));
      CRYO_TRY(write_head(pid, ctx, now.tail));
      if (got == 0) {
        // Slots come back from the reaped events on the next submit; none at all: all in flight.
        CRYO_ASSIGN(uint32_t again, sub.submit(ctx, 1));
        if (again == 0) return Error(EAGAIN, "the ring has no free slot");
        got = again;
        uint32_t from = now.tail;
        CRYO_ASSIGN(now, read_header(pid, ctx));
        CRYO_TRY(collect(from, now.tail, &late));
        CRYO_TRY(write_head(pid, ctx, now.tail));
      }
      h = now;
      left -= std::min<uint64_t>(left, got);
    }
    // ... then `keep` left unreaped, taking slots from every CPU if need be.
    size_t cpu = 0;
    for (uint32_t left = keep; left > 0;) {
      CRYO_ASSIGN(uint32_t got, sub.submit(ctx, left));
      if (got == 0) {
        while (cpu < cpus.size() && !run_on(tid, cpus[cpu])) cpu++;
        if (cpu++ >= cpus.size()) return Error(EAGAIN, "the ring has no free slot for its events");
        continue;
      }
      left -= got;
    }
    CRYO_ASSIGN(RingHeader now, read_header(pid, ctx));
    CRYO_TRY(collect(h.tail, now.tail, &late));
    if (!late.empty()) {  // the task's own completions came in between: another lap
      events.insert(events.end(), late.begin(), late.end());
      continue;
    }
    CRYO_TRY(write_events(pid, ctx, nr, head, events));
    return write_head(pid, ctx, head);
  }
  return Error(EBUSY, "completions kept arriving while cryo put the ring back");
}

}  // namespace

bool is_aio_ring(const proc::MapEntry& m) { return m.path == "/[aio] (deleted)"; }

Result<std::vector<const proc::MapEntry*>> find_aio_contexts(pid_t pid, ptrace::Remote& r,
                                                             const std::vector<proc::MapEntry>& maps) {
  std::vector<const proc::MapEntry*> rings;
  for (const auto& m : maps) {
    if (!is_aio_ring(m)) continue;
    // Waiting for none, io_getevents only looks the context up: EINVAL when
    // the ring is no context of this address space.
    CRYO_ASSIGN(long got, r.raw(SYS_io_getevents, {m.start, 0, 0, 0, 0}));
    if (got == -EINVAL) continue;
    if (got < 0) return Error(static_cast<int>(-got), what_ctx(pid, m.start) + ": io_getevents");
    rings.push_back(&m);
  }
  return rings;
}

namespace {

// One ring: measured, filled, counted, put back. undo and the guard learn
// each change first.
Status count_ring(pid_t pid, Submitter& sub, const proc::MapEntry& m, const std::vector<int>& cpus, AioUndo* undo,
                  Guard* guard) {
  ptrace::Remote& r = sub.remote();
  uint64_t ctx = m.start, size = m.end - m.start;
  std::string what = what_ctx(pid, ctx);
  CRYO_ASSIGN(RingHeader h, read_header(pid, ctx).wrap(what));
  CRYO_TRY(check_header(h, size, what));
  uint32_t nr = h.nr, head = h.head, tail = h.tail;
  // The slots a ring of this size offers when nothing is in flight: the
  // kernel keeps some per CPU and leaves a remainder it never hands out,
  // so measure them on a new context of the same size.
  if (!cpus.empty()) run_on(r.tid(), cpus[0]);
  CRYO_ASSIGN(uint64_t fresh, sub.io_setup(nr_request_for(nr)).wrap(what + ": a context to measure"));
  failpoint("aio.count");
  auto offered = sub.drain(fresh);
  (void)r.raw(SYS_io_destroy, {fresh});
  if (!offered.ok()) return std::move(offered).error().wrap(what);
  CRYO_ASSIGN(auto events, read_events(pid, ctx, nr, head, distance(head, tail, nr)).wrap(what));
  undo->ctx = ctx;
  undo->nr = nr;
  undo->head = head;
  undo->scan_from = tail;
  undo->events = events;
  if (guard) CRYO_TRY(guard->aio_ring(*undo));
  // Take every free slot, from every CPU: what is left unaccounted for is
  // held by requests in flight.
  for (int cpu : cpus) {
    if (!run_on(r.tid(), cpu)) continue;
    CRYO_TRY(sub.drain(ctx).wrap(what));
    failpoint("aio.count");
  }
  CRYO_ASSIGN(RingHeader after, read_header(pid, ctx).wrap(what));
  uint32_t in_ring = distance(head, after.tail, nr);
  uint64_t in_flight = *offered > in_ring ? *offered - in_ring : 0;
  // Completions of the task's requests that came in meanwhile stay, after
  // the events it had.
  auto seen = [&](uint32_t scan_from, const std::vector<struct io_event>& more) -> Status {
    undo->events.insert(undo->events.end(), more.begin(), more.end());
    undo->scan_from = scan_from;
    if (guard) CRYO_TRY(guard->aio_seen(scan_from, more));
    failpoint("aio.count");
    return {};
  };
  size_t had = events.size();
  CRYO_TRY(collect_foreign(pid, ctx, nr, tail, after.tail, &events).wrap(what));
  CRYO_TRY(seen(after.tail, std::vector<struct io_event>(events.begin() + static_cast<ptrdiff_t>(had), events.end())));
  if (after.tail != tail)
    CRYO_TRY(put_ring(pid, sub, ctx, nr, head, std::move(events), cpus, seen)
                 .wrap(what + ": putting the ring back as it was"));
  undo->ctx = 0;
  undo->events.clear();
  if (guard) CRYO_TRY(guard->aio_ring(*undo));
  if (in_flight > 0)
    return Error(what + ": " + std::to_string(in_flight) + " request" + (in_flight == 1 ? " is" : "s are") +
                 " in flight (submitted, not completed), which cannot be saved; dump again once " +
                 (in_flight == 1 ? "it has" : "they have") + " completed");
  return {};
}

}  // namespace

Status count_aio_in_flight(pid_t pid, ptrace::Remote& r, const std::vector<const proc::MapEntry*>& rings,
                           const std::vector<proc::MapEntry>& maps, const AioCountRoom& room) {
  if (rings.empty()) return {};
  AioUndo undo;
  undo.pid = pid;
  undo.tid = r.tid();
  cpu_set_t saved;
  CRYO_ASSIGN(auto cpus, allowed_cpus(r.tid(), &saved));
  undo.affinity.assign(reinterpret_cast<const char*>(&saved), sizeof saved);
  for (const auto& m : maps)
    if (is_aio_ring(m)) undo.rings_before.push_back(m.start);
  undo.scratch = room.scratch;
  undo.scratch_size = room.scratch_size;
  bool mapped = false;
  if (!undo.scratch) {  // no room given: a page of its own (no guard then, see count_aio)
    CRYO_ASSIGN(long page, r.call("mmap", SYS_mmap, {0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                                    static_cast<uint64_t>(-1), 0}));
    undo.scratch = static_cast<uint64_t>(page);
    undo.scratch_size = kPage;
    mapped = true;
  }
  ScopeGuard unmap([&] {
    if (mapped) (void)r.raw(SYS_munmap, {undo.scratch, kPage});
  });
  if (room.guard) {
    CRYO_ASSIGN(undo.fd, task::lowest_free_fd(pid));
    CRYO_TRY(room.guard->aio_count(undo));
  }
  bool clean = false;  // everything put back, by the count itself
  Status counted = [&]() -> Status {
    failpoint("aio.count");
    CRYO_ASSIGN(Submitter sub, Submitter::open(pid, r, undo.scratch, undo.scratch_size, undo.fd));
    failpoint("aio.count");
    Status refused;
    for (const auto* m : rings) {
      Status st = count_ring(pid, sub, *m, cpus, &undo, room.guard);
      if (!st.ok() && undo.ctx) return st;  // the ring is not back as it was
      if (!st.ok()) {
        refused = std::move(st);
        break;
      }
    }
    if (::sched_setaffinity(r.tid(), sizeof saved, &saved) < 0) return errno_error("sched_setaffinity");
    clean = true;
    return refused;
  }();
  if (!clean) {
    // What a guard would have done had cryo died here.
    Status back = undo_aio_count(r, undo);
    if (!back.ok()) log::error(back.error().wrap("putting back what counting AIO requests changed").message());
    else clean = true;
  }
  if (clean && room.guard) CRYO_TRY(room.guard->aio_count_done());
  return counted;
}

Status undo_aio_count(ptrace::Remote& r, AioUndo undo) {
  pid_t pid = undo.pid;
  Status first;
  auto keep = [&](Status st, const std::string& what) {
    if (!st.ok() && first.ok()) first = std::move(st).error().wrap(what);
  };
  // A context made since the count began is cryo's (the one it measures).
  auto text = read_file("/proc/" + std::to_string(pid) + "/maps");
  auto maps = text.ok() ? proc::parse_maps(*text) : Result<std::vector<proc::MapEntry>>(text.error());
  if (maps.ok()) {
    for (const auto& m : *maps) {
      if (!is_aio_ring(m) ||
          std::find(undo.rings_before.begin(), undo.rings_before.end(), m.start) != undo.rings_before.end())
        continue;
      auto st = r.raw(SYS_io_destroy, {m.start});
      if (st.ok() && *st < 0 && *st != -EINVAL)
        keep(Error(static_cast<int>(-*st), "io_destroy"), what_ctx(pid, m.start) + " of cryo's");
    }
  } else {
    keep(std::move(maps).error(), "the maps of pid " + std::to_string(pid));
  }
  // cryo's memfd, if it was made.
  if (undo.fd >= 0) {
    auto target = read_link("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(undo.fd));
    if (target.ok() && *target == std::string("/memfd:") + kMemfdName + " (deleted)") {
      auto st = r.raw(SYS_close, {static_cast<uint64_t>(undo.fd)});
      if (!st.ok()) keep(std::move(st).error(), "closing fd " + std::to_string(undo.fd) + " of cryo's");
    }
  }
  cpu_set_t saved;
  CPU_ZERO(&saved);
  std::memcpy(&saved, undo.affinity.data(), std::min(undo.affinity.size(), sizeof saved));
  if (undo.ctx && undo.scratch) {
    std::string what = what_ctx(pid, undo.ctx);
    Status st = [&]() -> Status {
      CRYO_ASSIGN(Submitter sub, Submitter::open(pid, r, undo.scratch, undo.scratch_size));
      CRYO_ASSIGN(RingHeader h, read_header(pid, undo.ctx));
      if (h.nr != undo.nr || h.tail >= h.nr || undo.scan_from >= h.nr) return Error(EINVAL, "the ring changed size");
      CRYO_TRY(collect_foreign(pid, undo.ctx, undo.nr, undo.scan_from, h.tail, &undo.events));
      return put_ring(pid, sub, undo.ctx, undo.nr, undo.head, std::move(undo.events), cpus_of(saved));
    }();
    keep(std::move(st), what + ": putting the ring back as it was");
  }
  if (!undo.affinity.empty() && ::sched_setaffinity(undo.tid, sizeof saved, &saved) < 0)
    keep(errno_error("sched_setaffinity"), "thread " + std::to_string(undo.tid));
  return first;
}

Status dump_aio_ring(pid_t pid, const proc::MapEntry& m, image::AioRing* out) {
  uint64_t ctx = m.start, size = m.end - m.start;
  std::string what = what_ctx(pid, ctx);
  CRYO_ASSIGN(RingHeader h, read_header(pid, ctx).wrap(what));
  CRYO_TRY(check_header(h, size, what));
  CRYO_ASSIGN(auto events, read_events(pid, ctx, h.nr, h.head, distance(h.head, h.tail, h.nr)).wrap(what));
  out->set_ctx(ctx);
  out->set_size(size);
  out->set_nr(h.nr);
  out->set_head(h.head);
  out->set_tail(h.tail);
  out->set_events(events.data(), events.size() * sizeof(struct io_event));
  return {};
}

Status restore_aio_ring(pid_t pid, ptrace::Remote& r, uint64_t scratch, const image::AioRing& ring) {
  std::string what = what_ctx(pid, ring.ctx());
  if (ring.size() % kPage || ring.size() < kPage || ring.ctx() % kPage || ring.nr() != events_in(ring.size()) ||
      ring.head() >= ring.nr() || ring.tail() >= ring.nr() ||
      ring.events().size() != uint64_t{distance(ring.head(), ring.tail(), ring.nr())} * sizeof(struct io_event))
    return Error(EINVAL, what + ": the image's ring is malformed");
  CRYO_ASSIGN(Submitter sub, Submitter::open(pid, r, scratch));
  CRYO_ASSIGN(uint64_t made, sub.io_setup(nr_request_for(ring.nr())).wrap(what));
  CRYO_ASSIGN(RingHeader h, read_header(pid, made).wrap(what));
  if (h.nr != ring.nr()) {
    (void)r.raw(SYS_io_destroy, {made});
    return Error(EINVAL, what + ": io_setup makes a ring of " + std::to_string(h.nr) + " events here, the image's had " +
                             std::to_string(ring.nr()) + " (a machine with more CPUs?)");
  }
  // The kernel's mremap hook for aio rings makes the new address the id.
  CRYO_ASSIGN(long moved, r.call("mremap", SYS_mremap, {made, ring.size(), ring.size(), MREMAP_MAYMOVE | MREMAP_FIXED,
                                                        ring.ctx()}));
  if (static_cast<uint64_t>(moved) != ring.ctx()) return Error(EINVAL, what + ": mremap moved the ring elsewhere");
  std::vector<struct io_event> events(ring.events().size() / sizeof(struct io_event));
  std::memcpy(events.data(), ring.events().data(), ring.events().size());
  if (ring.head() == 0 && ring.tail() == 0) return {};
  cpu_set_t saved;
  CRYO_ASSIGN(auto cpus, allowed_cpus(r.tid(), &saved));
  ScopeGuard affinity([&] { ::sched_setaffinity(r.tid(), sizeof saved, &saved); });
  // A new ring starts at 0: its head is set after the events.
  return put_ring(pid, sub, ring.ctx(), ring.nr(), ring.head(), std::move(events), cpus).wrap(what);
}

}  // namespace cryo::mm
