#include "core/lazy/daemon.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "core/image/image.h"
#include "core/image/proto/mm.pb.h"
#include "core/mm/parent_images.h"
#include "core/lazy/handover.h"
#include "core/lazy/keeper.h"
#include "core/lazy/pending.h"
#include "core/pageserver/lazy_stream.h"
#include "core/sys/failpoint.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/util.h"

namespace cryo::lazy {
namespace {

constexpr uint64_t kFaultPages = 16;        // a fault brings 64 KiB: the pages after it are likely next
constexpr uint64_t kBackgroundPages = 256;  // 1 MiB a step between looks at the faults
constexpr uint64_t kMaxRanges = 1u << 20;
constexpr uint64_t kShortRunPages = 32;      // a run this short comes before the stream (bring_short_runs)
constexpr size_t kShortRunsAtOnce = 256;
constexpr uint64_t kQuietAfterRestoreUs = 30000;

// One userfaultfd: a restored process, or a child it forked since.
struct Target {
  int id = 0;
  pid_t pid = 0;  // of the image; 0 for a child forked after the restore
  bool pid_known = false;
  // The pid as the daemon (and its keeper) sees it: the restore may have
  // made the process in a pid namespace of its own, where pids differ.
  pid_t seen_pid = 0;
  bool own_ns = true;  // in the daemon's pid namespace: a fault's thread id is a pid here too
  UniqueFd uffd, pidfd;
  PendingPages pending;
  std::vector<uint64_t> unanswered;  // faults to answer once the events before them are read
  bool gone = false;
};

enum class Copy { kDone, kAgain, kGone, kFailed };  // kFailed: the source failed (failure_)

class Daemon {
 public:
  Status load(const std::string& dir, bool remote);
  Status connect_source(const pageserver::Endpoint& source);
  Status serve(int listener);

 private:
  Status accept_restore(int listener);
  Error source_failed();
  Status receive_handover();
  Status serve_fetch(const Handover& h);
  Status drain_events(Target& t, std::vector<std::unique_ptr<Target>>* born);
  Copy copy_in(Target& t, PageSpan span);
  Copy place_fetched(Target& t, PageSpan span, const pageserver::Frame& f);
  Copy bring_short_runs();
  Copy place(Target& t, uint64_t addr, uint64_t npages, const uint8_t* src, uint64_t* done);
  Copy answer_fault(Target& t, uint64_t addr);
  void add_target(std::unique_ptr<Target> t);
  void finish_target(Target& t, const char* why);

  std::optional<image::ImageDirReader> reader_;
  std::map<pid_t, std::vector<PageSpan>> image_pages_;  // checked runs of each process, by address
  std::vector<std::unique_ptr<Target>> targets_;
  UniqueFd session_;
  bool session_done_ = false, session_over_ = false;
  bool short_runs_brought_ = false;
  int next_id_ = 1;
  uint64_t rate_ = 0;  // bytes a second the background copy may take (0: as fast as it goes)
  uint64_t next_step_us_ = 0;
  size_t next_background_ = 0;
  Keeper keeper_;
  uint64_t faults_ = 0, fault_pages_ = 0, background_pages_ = 0, zero_pages_ = 0;
  uint64_t fetched_pages_ = 0;  // for the restore itself (serve_fetch)
  std::unique_ptr<pageserver::LazyFetcher> source_;  // a lazy migration's source
  uint64_t remote_pages_ = 0, remote_total_ = 0;
  std::optional<Error> failure_;  // of the source
};

Status Daemon::connect_source(const pageserver::Endpoint& source) {
  CRYO_ASSIGN(source_, pageserver::LazyFetcher::connect(source));
  log::info("connected to " + source_->peer());
  return {};
}

Status Daemon::load(const std::string& dir, bool remote) {
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(dir));
  reader_.emplace(std::move(reader));
  for (const auto& f : reader_->inventory().files()) {
    int pid = 0;
    char tail = 0;
    if (std::sscanf(f.name().c_str(), "mm-%d.im%c", &pid, &tail) != 2 || pid <= 0) continue;
    image::Mm mm;
    CRYO_TRY(reader_->read(f.name(), image::Kind::kMm, &mm));
    // An incremental image's pages kept in its parents (checked there, whole).
    CRYO_TRY(mm::expand_parent_pages(*reader_, &mm).wrap(f.name()));
    auto& spans = image_pages_[pid];
    for (const auto& run : mm.pages()) {
      if (run.npages() == 0 || run.npages() > (1ULL << 36) / kPage)
        return Error(EINVAL, f.name() + ": a page run of " + std::to_string(run.npages()) + " pages");
      if (run.remote()) {  // a lazy migration's: the source has it
        if (!remote)
          return Error(EINVAL, f.name() + ": the image's memory stays with the dump that made it (dump --lazy-pages): "
                                          "name that source with --page-server --address --port");
        spans.push_back({run.addr(), run.npages(), nullptr, pid, run.addr()});
        remote_total_ += run.npages();
        continue;
      }
      // Checked once here, before the first page is served.
      CRYO_ASSIGN(const uint8_t* src,
                  (run.checked() ? reader_->run_bytes(run)
                                 : reader_->checked_page_run(run))
                      .wrap(f.name()));
      spans.push_back({run.addr(), run.npages(), src});
    }
    std::sort(spans.begin(), spans.end(), [](const PageSpan& a, const PageSpan& b) { return a.addr < b.addr; });
  }
  return {};
}

// The source went away (or failed) before every page came: the restored
// tree cannot run on without its memory (the keeper kills it as the daemon
// exits).
Error Daemon::source_failed() {
  Error e = failure_ ? *failure_ : Error(EPROTO, "the source failed");
  return std::move(e).wrap(std::to_string(remote_pages_) + " of " + std::to_string(remote_total_) +
                           " remote pages had come when the source failed; the restored tree is killed, it cannot "
                           "run without its memory");
}

Status Daemon::accept_restore(int listener) {
  int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return errno == EINTR || errno == EAGAIN ? Status() : errno_error("accept");
  session_.reset(fd);
  log::info("a restore connected");
  return {};
}

// The pid a pidfd names, as this process sees it (0 if not here).
pid_t pid_of_pidfd(int pidfd) {
  auto text = read_file("/proc/self/fdinfo/" + std::to_string(pidfd));
  if (!text.ok()) return 0;
  size_t at = text->find("\nPid:");
  return at == std::string::npos ? 0 : std::atoi(text->c_str() + at + 5);
}

Status recv_all(int fd, void* data, size_t size) {
  CRYO_ASSIGN(Received got, receive_all(fd, data, size).wrap("receive from the restore"));
  if (got.bytes != size) return Error(ECONNRESET, "the restore hung up in the middle of a message");
  return {};
}

Status Daemon::receive_handover() {
  Handover h;
  CRYO_ASSIGN(Received got, receive_all(session_.get(), &h, sizeof h).wrap("receive from the restore"));
  std::vector<UniqueFd>& fds = got.fds;
  if (got.bytes == 0) {
    session_.reset();
    session_over_ = true;
    if (!session_done_) log::error("the restore ended before it was done (it failed, and kills what it made)");
    return {};
  }
  if (got.bytes != sizeof h) return Error(EPROTO, "a short handover from the restore");
  if (h.magic != kHandoverMagic || h.version != kHandoverVersion)
    return Error(EPROTO, "the restore speaks another handover (magic " + std::to_string(h.magic) + ", version " +
                             std::to_string(h.version) + ")");
  if (h.kind == kDone) {
    session_done_ = session_over_ = true;
    session_.reset();
    log::info("the restore is done: every process runs");
    return {};
  }
  if (h.kind == kFetch && fds.empty()) return serve_fetch(h);
  if (h.kind != kProcess || fds.size() != 2 || h.ranges > kMaxRanges)
    return Error(EPROTO, "a malformed handover from the restore");
  std::vector<uint64_t> words(h.ranges * 2);
  CRYO_TRY(recv_all(session_.get(), words.data(), words.size() * 8));
  auto it = image_pages_.find(h.pid);
  if (it == image_pages_.end()) return Error(EPROTO, "the restore hands over pid " + std::to_string(h.pid) + ", which the image lacks");
  auto t = std::make_unique<Target>();
  t->pid = h.pid;
  t->pid_known = true;
  t->uffd = std::move(fds[0]);
  t->pidfd = std::move(fds[1]);
  t->seen_pid = pid_of_pidfd(t->pidfd.get());
  auto theirs = read_link("/proc/" + std::to_string(t->seen_pid) + "/ns/pid"), ours = read_link("/proc/self/ns/pid");
  t->own_ns = theirs.ok() && ours.ok() && *theirs == *ours;
  // The image's pages inside the registered ranges (both sorted).
  const auto& spans = it->second;
  size_t s = 0;
  for (size_t r = 0; r < h.ranges; r++) {
    uint64_t start = words[2 * r], end = words[2 * r + 1];
    if (start >= end || start % kPage || end % kPage) return Error(EPROTO, "a malformed range in a handover");
    while (s < spans.size() && spans[s].addr + spans[s].npages * kPage <= start) s++;
    for (size_t k = s; k < spans.size() && spans[k].addr < end; k++) {
      uint64_t from = std::max(start, spans[k].addr);
      uint64_t to = std::min(end, spans[k].addr + spans[k].npages * kPage);
      PageSpan piece = spans[k].after((from - spans[k].addr) / kPage);
      piece.npages = (to - from) / kPage;
      t->pending.add(piece);
    }
  }
  log::info("pid " + std::to_string(h.pid) + ": " + std::to_string(t->pending.pages()) + " pages to bring in");
  add_target(std::move(t));
  return {};
}

// Pages the restore writes itself (handover.h, kFetch): they come from the
// source now, before the processes that share them exist.
Status Daemon::serve_fetch(const Handover& h) {
  uint64_t range[2];
  CRYO_TRY(recv_all(session_.get(), range, sizeof range));
  uint64_t start = range[0], end = range[1];
  if (h.ranges != 1 || start >= end || start % kPage || end % kPage) return Error(EPROTO, "a malformed request for pages");
  std::string what = "pid " + std::to_string(h.pid) + ": pages " + std::to_string(start) + "-" + std::to_string(end);
  if (!source_) return Error(EPROTO, what + " are asked for, and this daemon has no source (--page-server)");
  // Each page must be one of the pid's remote runs.
  auto it = image_pages_.find(h.pid);
  uint64_t at = start;
  if (it != image_pages_.end())
    for (const auto& span : it->second)
      if (span.from_pid && span.addr <= at && at < span.addr + span.npages * kPage) at = span.addr + span.npages * kPage;
  if (at < end) return Error(EPROTO, what + " are asked for, and the image has no remote pages there");
  std::vector<uint8_t> bytes(pageserver::kMaxLazyPages * kPage);
  for (at = start; at < end;) {
    uint64_t n = std::min((end - at) / kPage, pageserver::kMaxLazyPages);
    pageserver::Frame f;
    if (auto st = source_->fetch(h.pid, at, n, &f); !st.ok()) {
      failure_ = std::move(st).error();
      return source_failed();
    }
    for (const auto& run : pageserver::answered_runs(f, n)) {
      uint8_t* to = bytes.data() + run.first * kPage;
      if (run.data) {
        std::memcpy(to, run.data, run.count * kPage);
      } else {
        std::memset(to, 0, run.count * kPage);
        zero_pages_ += run.count;
      }
    }
    CRYO_TRY(send_all(session_.get(), bytes.data(), n * kPage, "send pages to the restore"));
    remote_pages_ += n;
    fetched_pages_ += n;
    at += n * kPage;
  }
  return {};
}

void Daemon::add_target(std::unique_ptr<Target> t) {
  t->id = next_id_++;
  keeper_.add(t->id, t->seen_pid, t->uffd.get());
  targets_.push_back(std::move(t));
}

void Daemon::finish_target(Target& t, const char* why) {
  if (t.gone) return;
  t.gone = true;
  log::info("userfaultfd " + std::to_string(t.id) + (t.pid_known ? " (pid " + std::to_string(t.pid) + ")" : "") + ": " + why);
  t.uffd.reset();
  t.pidfd.reset();
  keeper_.drop(t.id);
}

// Places pages at addr: src's bytes (UFFDIO_COPY) or zero pages (src null).
// *done: how many are in (or were there already).
Copy Daemon::place(Target& t, uint64_t addr, uint64_t npages, const uint8_t* src, uint64_t* done) {
  *done = 0;
  while (*done < npages) {
    uint64_t at = addr + *done * kPage, left = npages - *done;
    int rc;
    int64_t moved;
    if (src) {
      struct uffdio_copy c {};
      c.dst = at;
      c.src = reinterpret_cast<uint64_t>(src + *done * kPage);
      c.len = left * kPage;
      rc = ::ioctl(t.uffd.get(), UFFDIO_COPY, &c);
      moved = c.copy;
    } else {
      struct uffdio_zeropage z {};
      z.range.start = at;
      z.range.len = left * kPage;
      rc = ::ioctl(t.uffd.get(), UFFDIO_ZEROPAGE, &z);
      moved = z.zeropage;
    }
    if (rc == 0) {
      *done = npages;
      return Copy::kDone;
    }
    int err = errno;
    if (moved > 0) *done += static_cast<uint64_t>(moved) / kPage;
    if (err == EAGAIN) return Copy::kAgain;  // the address space is changing: read its events first
    if (err == ESRCH) return Copy::kGone;
    if (err == EEXIST) {  // that page is there already (the process wrote it, or it came by fork)
      (*done)++;
      continue;
    }
    // ENOENT, EFAULT: the mapping is gone (its event follows).
    log::debug("placing pages at " + std::to_string(at) + ": " + std::strerror(err));
    return Copy::kDone;
  }
  return Copy::kDone;
}

Copy Daemon::copy_in(Target& t, PageSpan span) {
  if (!span.from_pid) {
    uint64_t done = 0;
    Copy c = place(t, span.addr, span.npages, span.src, &done);
    if (c == Copy::kAgain && done < span.npages) t.pending.put_back(span.after(done));
    return c;
  }
  // A remote span: fetched from the source, its zero pages sent as a flag.
  while (span.npages > 0) {
    uint64_t n = std::min(span.npages, pageserver::kMaxLazyPages);
    pageserver::Frame f;
    if (auto st = source_->fetch(span.from_pid, span.from_addr, n, &f); !st.ok()) {
      failure_ = std::move(st).error();
      return Copy::kFailed;
    }
    PageSpan piece = span;
    piece.npages = n;
    if (Copy c = place_fetched(t, piece, f); c != Copy::kDone) {
      if (c == Copy::kAgain && n < span.npages) t.pending.put_back(span.after(n));
      return c;
    }
    span = span.after(n);
  }
  return Copy::kDone;
}

// Places a remote span's pages as the source sent them (f: its answer).
Copy Daemon::place_fetched(Target& t, PageSpan span, const pageserver::Frame& f) {
  for (const auto& run : pageserver::answered_runs(f, span.npages)) {
    uint64_t done = 0;
    Copy c = place(t, span.addr + run.first * kPage, run.count, run.data, &done);
    if (c != Copy::kDone) {
      // What is not in yet goes back (the source sends it again).
      if (c == Copy::kAgain) t.pending.put_back(span.after(run.first + done));
      return c;
    }
    if (!run.data) zero_pages_ += run.count;
  }
  remote_pages_ += span.npages;
  return Copy::kDone;
}

// Once the processes run, before the stream of the rest: every short run
// still missing (a process's stack, heap and libraries' data are short runs
// beside its large ones, and what it touches first is mostly there), in
// one round trip to a source. Faults find them in, not one trip each.
Copy Daemon::bring_short_runs() {
  std::vector<std::pair<Target*, PageSpan>> wanted;
  for (auto& t : targets_) {
    if (t->gone) continue;
    for (const auto& span : t->pending.short_runs(kShortRunPages, kShortRunsAtOnce - wanted.size()))
      wanted.emplace_back(t.get(), span);
  }
  if (wanted.empty()) return Copy::kDone;
  std::vector<pageserver::LazyFetcher::Request> requests;
  std::vector<pageserver::Frame> answers;
  if (source_) {
    for (const auto& [t, span] : wanted)
      if (span.from_pid) requests.push_back({span.from_pid, span.from_addr, span.npages});
    if (auto st = source_->fetch_all(requests, &answers); !st.ok()) {
      failure_ = std::move(st).error();
      return Copy::kFailed;
    }
  }
  size_t answer = 0;
  uint64_t pages = 0;
  for (const auto& [t, span] : wanted) {
    const pageserver::Frame* f = span.from_pid ? &answers[answer++] : nullptr;
    if (t->gone || !t->pending.take(span.addr, span.npages)) continue;
    Copy c = f ? place_fetched(*t, span, *f) : copy_in(*t, span);
    if (c == Copy::kFailed) return c;
    if (c == Copy::kGone) finish_target(*t, "its address space is gone");
    pages += span.npages;
  }
  background_pages_ += pages;
  log::debug("brought " + std::to_string(wanted.size()) + " short runs (" + std::to_string(pages) + " pages) first");
  return Copy::kDone;
}

Copy Daemon::answer_fault(Target& t, uint64_t addr) {
  faults_++;
  if (auto span = t.pending.take(addr, kFaultPages)) {
    fault_pages_ += span->npages;
    Copy c = copy_in(t, *span);
    if (c != Copy::kDone) return c;
    log::debug("userfaultfd " + std::to_string(t.id) + ": fault at " + std::to_string(addr) + ", " +
               std::to_string(span->npages) + " pages in" + (span->from_pid ? " from the source" : ""));
  } else {
    // A page the image does not hold (never touched, or given up since):
    // zeros, as the kernel would have given.
    struct uffdio_zeropage z {};
    z.range.start = addr;
    z.range.len = kPage;
    if (::ioctl(t.uffd.get(), UFFDIO_ZEROPAGE, &z) < 0) {
      if (errno == EAGAIN) return Copy::kAgain;
      if (errno == ESRCH) return Copy::kGone;
    } else {
      zero_pages_++;
    }
  }
  // However it went, whoever waits on that page looks again.
  struct uffdio_range wake {addr, kPage};
  ::ioctl(t.uffd.get(), UFFDIO_WAKE, &wake);
  return Copy::kDone;
}

Status Daemon::drain_events(Target& t, std::vector<std::unique_ptr<Target>>* born) {
  struct uffd_msg msgs[64];
  for (;;) {
    ssize_t n = ::read(t.uffd.get(), msgs, sizeof msgs);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return {};
    if (n <= 0) {
      finish_target(t, "its address space is gone");
      return {};
    }
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(struct uffd_msg); i++) {
      const auto& m = msgs[i];
      switch (m.event) {
        case UFFD_EVENT_PAGEFAULT:
          if (!t.pid_known && m.arg.pagefault.feat.ptid > 0) {
            t.pid_known = true;
            t.pid = static_cast<pid_t>(m.arg.pagefault.feat.ptid);
            if (t.own_ns) {  // else the keeper finds it as a descendant of the restored processes
              t.seen_pid = t.pid;
              keeper_.learned_pid(t.id, t.pid);
            }
          }
          t.unanswered.push_back(m.arg.pagefault.address & ~(kPage - 1));
          break;
        case UFFD_EVENT_FORK: {
          // The child has what the parent had, and lacks what it lacked.
          auto child = std::make_unique<Target>();
          child->uffd.reset(static_cast<int>(m.arg.fork.ufd));
          child->pending = t.pending;
          child->own_ns = t.own_ns;
          log::info("userfaultfd " + std::to_string(t.id) + ": its process forked");
          born->push_back(std::move(child));
          break;
        }
        case UFFD_EVENT_REMAP: {
          uint64_t from = m.arg.remap.from, to = m.arg.remap.to, len = m.arg.remap.len;
          auto moved = t.pending.extract(from, from + len);
          t.pending.erase(to, to + len);
          for (auto span : moved) {
            span.addr = span.addr - from + to;
            t.pending.add(span);
          }
          break;
        }
        case UFFD_EVENT_REMOVE:  // madvise(MADV_DONTNEED/REMOVE): zeros from now on
          t.pending.erase(m.arg.remove.start, m.arg.remove.end);
          break;
        case UFFD_EVENT_UNMAP:
          t.pending.erase(m.arg.remove.start, m.arg.remove.end);
          break;
        default:
          return Error(EPROTO, "an unknown userfaultfd event " + std::to_string(m.event));
      }
    }
  }
}

Status Daemon::serve(int listener) {
  // CRYO_LAZY_RATE=MiB/s: a slower background copy leaves a link (or the
  // disk) to the faults.
  if (const char* rate = ::getenv("CRYO_LAZY_RATE")) rate_ = std::strtoull(rate, nullptr, 10) << 20;
  CRYO_ASSIGN(keeper_, Keeper::start());
  uint64_t start = now_us();
  for (;;) {
    for (auto it = targets_.begin(); it != targets_.end();) {
      Target& t = **it;
      if (!t.gone && t.pending.empty() && t.unanswered.empty()) finish_target(t, "all its pages are in");
      it = t.gone ? targets_.erase(it) : it + 1;
    }
    if (session_over_ && targets_.empty()) break;
    std::vector<struct pollfd> fds;
    enum Kind { kListener, kSession, kUffd, kPidfd };
    std::vector<std::pair<Kind, Target*>> what;
    if (!session_ && !session_over_) {
      fds.push_back({listener, POLLIN, 0});
      what.emplace_back(kListener, nullptr);
    }
    if (session_) {
      fds.push_back({session_.get(), POLLIN, 0});
      what.emplace_back(kSession, nullptr);
    }
    // The stream waits for the restore's end: until then nothing runs that
    // could fault, and the restore has the CPU to itself.
    bool running = session_done_ || session_over_;
    bool background = false;
    for (auto& t : targets_) {
      fds.push_back({t->uffd.get(), POLLIN, 0});
      what.emplace_back(kUffd, t.get());
      if (t->pidfd) {
        fds.push_back({t->pidfd.get(), POLLIN, 0});
        what.emplace_back(kPidfd, t.get());
      }
      background = background || (running && !t->pending.empty()) || !t->unanswered.empty();
    }
    int timeout = -1;
    if (background) {
      uint64_t now = now_us();
      timeout = now >= next_step_us_ ? 0 : static_cast<int>((next_step_us_ - now + 999) / 1000);
    }
    int ready = ::poll(fds.data(), fds.size(), timeout);
    if (ready < 0 && errno != EINTR) return errno_error("poll");
    std::vector<std::unique_ptr<Target>> born;
    for (size_t i = 0; ready > 0 && i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      auto [kind, t] = what[i];
      if (kind == kListener) CRYO_TRY(accept_restore(listener));
      if (kind == kSession) CRYO_TRY(receive_handover());
      if (kind == kUffd && !t->gone) CRYO_TRY(drain_events(*t, &born));
      if (kind == kPidfd && !t->gone) finish_target(*t, "its process ended");
    }
    for (auto& t : targets_) {
      if (t->gone) continue;
      std::vector<uint64_t> faults;
      faults.swap(t->unanswered);
      for (size_t k = 0; k < faults.size(); k++) {
        Copy c = answer_fault(*t, faults[k]);
        if (c == Copy::kFailed) return source_failed();
        if (c == Copy::kGone) {
          finish_target(*t, "its address space is gone");
          break;
        }
        if (c == Copy::kAgain) {  // after its events
          t->unanswered.insert(t->unanswered.end(), faults.begin() + static_cast<long>(k), faults.end());
          break;
        }
      }
    }
    for (auto& child : born) add_target(std::move(child));
    if (running && !short_runs_brought_) {
      short_runs_brought_ = true;
      if (bring_short_runs() == Copy::kFailed) return source_failed();
      // The processes just let go take their first steps now: for a moment
      // the stream leaves them the CPU (and a source's link) and only their
      // faults are served.
      next_step_us_ = std::max(next_step_us_, now_us() + kQuietAfterRestoreUs);
    }
    // One step of the background copy, round robin (at most at the rate asked).
    for (size_t k = 0; running && k < targets_.size() && now_us() >= next_step_us_; k++) {
      Target& t = *targets_[(next_background_ + k) % targets_.size()];
      if (t.gone || t.pending.empty() || !t.unanswered.empty()) continue;
      next_background_ = (next_background_ + k + 1) % targets_.size();
      failpoint("lazy.background");
      auto span = t.pending.take_first(kBackgroundPages);
      Copy c = copy_in(t, *span);
      if (c == Copy::kFailed) return source_failed();
      if (c == Copy::kDone) background_pages_ += span->npages;
      if (c == Copy::kGone) finish_target(t, "its address space is gone");
      if (rate_ > 0) next_step_us_ = now_us() + span->npages * kPage * 1000000 / rate_;
      break;
    }
  }
  if (session_done_ && source_) {  // the source's tree may go now
    CRYO_TRY(source_->bye().wrap("telling the source every page is in"));
    log::info("received " + std::to_string(source_->bytes()) + " bytes for " + std::to_string(remote_pages_) +
              " remote pages from " + source_->peer());
  }
  keeper_.end();
  log::info("lazy pages done in " + std::to_string((now_us() - start) / 1000) + " ms: " + std::to_string(faults_) +
            " faults (" + std::to_string(fault_pages_) + " pages, " + std::to_string(zero_pages_) + " zero), " +
            std::to_string(background_pages_) + " pages in the background" +
            (fetched_pages_ ? ", " + std::to_string(fetched_pages_) + " before the processes ran (shared copy-on-write)"
                            : std::string()));
  if (!session_done_) return Error("the restore failed before every process ran");
  return {};
}

}  // namespace

Status run_lazy_pages(const DaemonOptions& options, const std::function<void()>& on_listening) {
  Daemon daemon;
  CRYO_TRY(daemon.load(options.images_dir, options.page_server.has_value()).wrap(options.images_dir));
  if (options.page_server) CRYO_TRY(daemon.connect_source(*options.page_server));
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) return errno_error("socket");
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (options.socket_path.size() >= sizeof addr.sun_path) return Error(ENAMETOOLONG, "socket " + options.socket_path);
  std::memcpy(addr.sun_path, options.socket_path.c_str(), options.socket_path.size() + 1);
  ::unlink(options.socket_path.c_str());  // a stale one of a daemon gone
  if (::bind(listener.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) < 0)
    return errno_error("bind " + options.socket_path);
  struct Unlink {
    const std::string& path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_socket{options.socket_path};
  if (::listen(listener.get(), 1) < 0) return errno_error("listen " + options.socket_path);
  log::info("lazy-pages listening on " + options.socket_path);
  if (on_listening) on_listening();
  return daemon.serve(listener.get());
}

}  // namespace cryo::lazy
