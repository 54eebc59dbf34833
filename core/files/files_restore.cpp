#include "core/files/files_restore.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/files/bpf_map.h"
#include "core/files/ghosts.h"
#include "core/files/fanotify.h"
#include "core/net/socket_restore.h"
#include "core/sys/kernel_abi.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"
#include "core/sys/scope_guard.h"

namespace cryo::files {
namespace {

constexpr uint32_t kOpenOnly = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY;

std::string name_file(const image::FileDesc& f) {
  return "file " + std::to_string(f.id()) + " (" + f.path() + ")";
}

}  // namespace

// Whether a process other than this one has the file open.
static Result<bool> held_elsewhere(const struct stat& file) {
  return proc::any_other_process_fd([&file](int fd_dir, const char* name) {
    struct stat st;
    return ::fstatat(fd_dir, name, &st, 0) == 0 && st.st_dev == file.st_dev && st.st_ino == file.st_ino;
  });
}

Result<int> FileObjects::place(UniqueFd fd) {
  CRYO_ASSIGN(UniqueFd placed, zone_.copy(fd.get()));
  owned_.push_back(std::move(placed));
  return owned_.back().get();
}

std::vector<int> FileObjects::repaired_sockets(const image::Files& files) const {
  std::vector<int> out;
  for (const auto& f : files.files())
    if (net::repaired_on_restore(f) && fd_of(f.id()) >= 0) out.push_back(fd_of(f.id()));
  return out;
}

Status FileObjects::leave_repair(const image::Files& files) const {
  for (const auto& f : files.files())
    if (net::repaired_on_restore(f) && fd_of(f.id()) >= 0)
      CRYO_TRY(net::leave_repair(fd_of(f.id()), f.socket()).wrap("TCP connection of socket " + std::to_string(f.id())));
  return {};
}

int FileObjects::fd_of(uint32_t file_id) const {
  auto it = by_file_.find(file_id);
  return it == by_file_.end() ? -1 : it->second;
}

void FileObjects::close_all() {
  // The caller gave its fds to the tree (as CRIU closes them); its stdio stays.
  std::set<int> given;
  for (const auto& [id, fd] : inherited_) given.insert(fd);
  for (int fd : given)
    if (fd > 2) ::close(fd);
  inherited_.clear();
  owned_.clear();
  contents_.clear();
  by_file_.clear();
  by_shmem_.clear();
}

int FileObjects::shmem_fd(uint64_t shmem_id) const {
  auto it = by_shmem_.find(shmem_id);
  return it == by_shmem_.end() ? -1 : it->second;
}

Result<UniqueFd> FileObjects::open_anon(const image::FileDesc& f) {
  switch (f.kind()) {
    case image::FileDesc::EVENTFD: {
      UniqueFd fd(::eventfd(0, EFD_CLOEXEC | (f.eventfd().semaphore() ? EFD_SEMAPHORE : 0)));
      if (!fd.valid()) return errno_error("eventfd");
      uint64_t count = f.eventfd().count();
      if (count > 0 && ::write(fd.get(), &count, sizeof count) != sizeof count)
        return errno_error("set the eventfd count to " + std::to_string(count));
      return fd;
    }
    case image::FileDesc::SIGNALFD: {
      uint64_t mask = f.signalfd().mask();  // the kernel's own sigset layout on x86-64
      UniqueFd fd(static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC)));
      if (!fd.valid()) return errno_error("signalfd");
      return fd;
    }
    case image::FileDesc::TIMERFD: {
      const auto& t = f.timerfd();
      UniqueFd fd(::timerfd_create(t.clockid(), TFD_CLOEXEC));
      if (!fd.valid()) return errno_error("timerfd_create on clock " + std::to_string(t.clockid()));
      auto split = [](uint64_t ns) {
        return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      };
      struct itimerspec when = {split(t.interval_ns()), split(t.value_ns())};
      int flags = static_cast<int>(t.settime_flags() & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET));
      if (t.value_ns() != 0 && (flags & TFD_TIMER_ABSTIME)) {
        // A wall-clock deadline stays that deadline; any other clock's
        // deadline is as far ahead as it was.
        uint64_t deadline = t.deadline_ns();
        if (deadline == 0) {
          struct timespec now;
          if (::clock_gettime(t.clockid(), &now) < 0) return errno_error("clock_gettime");
          deadline = static_cast<uint64_t>(now.tv_sec) * 1000000000 + static_cast<uint64_t>(now.tv_nsec) + t.value_ns();
        }
        when.it_value = split(deadline);
      }
      if (::timerfd_settime(fd.get(), flags, &when, nullptr) < 0) return errno_error("timerfd_settime");
      uint64_t ticks = t.ticks();
      if (ticks > 0 && ::ioctl(fd.get(), abi::kTimerfdSetTicks, &ticks) < 0)
        return errno_error("TFD_IOC_SET_TICKS " + std::to_string(ticks));
      return fd;
    }
    case image::FileDesc::INOTIFY:
      return open_inotify(f);
    case image::FileDesc::FANOTIFY:
      return open_fanotify(f.fanotify(), tree_root_);
    case image::FileDesc::BPF_MAP:
      return open_bpf_map(f.bpf_map());
    case image::FileDesc::EPOLL: {
      UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
      if (!fd.valid()) return errno_error("epoll_create1");
      return fd;  // its targets are added by its owner (watch_epoll_targets)
    }
    default:
      return Error(EINVAL, name_file(f) + ": not an anonymous-inode file");
  }
}

// Watch descriptors are handed out in rising order from a cursor that never
// goes back: to get wd N, add the watch, and while it gets a lower one,
// remove it and add it again. The IN_IGNORED events of the removals are
// read away at the end; the queue was empty at dump time.
Result<UniqueFd> FileObjects::open_inotify(const image::FileDesc& f) {
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd.valid()) return errno_error("inotify_init1");
  std::vector<const image::Inotify::Watch*> watches;
  for (const auto& w : f.inotify().watches()) watches.push_back(&w);
  std::sort(watches.begin(), watches.end(), [](auto* a, auto* b) { return a->wd() < b->wd(); });
  for (const auto* w : watches) {
    std::string what = "inotify watch " + std::to_string(w->wd()) + " on " + w->path();
    if (w->path().empty() || w->path()[0] != '/') return Error(EINVAL, what + ": not an absolute path");
    CRYO_ASSIGN(UniqueFd file, open_in_tree(w->path(), O_PATH).wrap(what));
    struct stat st;
    if (::fstat(file.get(), &st) < 0) return errno_error(what + ": fstat");
    if (w->made_again() ? (st.st_mode & S_IFMT) != (w->mode() & S_IFMT) : st.st_ino != w->ino() || st.st_dev != w->dev())
      return Error(EINVAL, what + ": another file is there now");
    // inotify_add_watch takes no O_PATH fd, but a path through one.
    std::string through = "/proc/self/fd/" + std::to_string(file.get());
    for (;;) {
      int wd = ::inotify_add_watch(fd.get(), through.c_str(), w->mask() | IN_MASK_CREATE);
      if (wd < 0) return errno_error(what);
      if (wd == w->wd()) break;
      if (wd > w->wd() || ::inotify_rm_watch(fd.get(), wd) < 0)
        return Error(EINVAL, what + ": the kernel gave watch descriptor " + std::to_string(wd));
    }
  }
  char drain[4096];
  while (::read(fd.get(), drain, sizeof drain) > 0) {
  }
  return fd;
}

Status FileObjects::watch_epoll_targets(pid_t pid, const image::Files& files) const {
  for (const auto& f : files.files()) {
    if (f.kind() != image::FileDesc::EPOLL || f.epoll().owner() != pid) continue;
    int epfd = fd_of(f.id());
    for (const auto& t : f.epoll().targets()) {
      struct epoll_event ev{};
      ev.events = t.events();
      ev.data.u64 = t.data();
      if (::epoll_ctl(epfd, EPOLL_CTL_ADD, t.fd(), &ev) < 0)
        return errno_error("epoll " + std::to_string(f.id()) + ": watch fd " + std::to_string(t.fd()));
    }
  }
  return {};
}

Status FileObjects::make_content(const image::Content& c, const image::ImageDirReader& images) {
  if (!c.memfd() && !S_ISREG(c.mode())) {  // a removed directory, FIFO or device node
    CRYO_ASSIGN(contents_[c.id()], make_ghost_node(c, tree_root_));
    return {};
  }
  std::string what = (c.memfd() ? "memfd " : "deleted file ") + c.name();
  if (c.size() > (1ULL << 40)) return Error(EINVAL, what + ": bad size");
  UniqueFd fd;
  if (c.memfd()) {
    if (c.name().size() > 249) return Error(EINVAL, what + ": the name is too long");
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (uint64_t huge = c.huge_page_size(); huge != 0) {
      if ((huge & (huge - 1)) || huge < 4096 || c.size() % huge)
        return Error(EINVAL, what + ": bad huge page size " + std::to_string(huge));
      flags |= MFD_HUGETLB | (static_cast<unsigned>(__builtin_ctzll(huge)) << 26 /* MFD_HUGE_SHIFT */);
    }
    fd = UniqueFd(static_cast<int>(::memfd_create(c.name().c_str(), flags)));
    if (!fd.valid())
      return errno_error(what + (c.huge_page_size() ? ": memfd_create(MFD_HUGETLB, " +
                                                          std::to_string(c.huge_page_size() >> 10) + " kB pages)"
                                                    : ": memfd_create"));
  } else {
    // Made at its old path and unlinked at once, so that /proc shows the
    // same "PATH (deleted)"; where that path is taken, an unnamed file in
    // the same directory (or in /tmp when the directory is gone too).
    // In a mount namespace of the tree's own, the path is the tree's.
    if (c.name().empty() || c.name()[0] != '/') return Error(EINVAL, what + ": not an absolute path");
    size_t slash = c.name().rfind('/');
    std::string dir_path = c.name().substr(0, slash + 1), base = c.name().substr(slash + 1);
    auto dir = open_in_tree(dir_path, O_PATH | O_DIRECTORY);
    int made = dir.ok() && !base.empty() && base != "." && base != ".."
                   ? ::openat(dir->get(), base.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)
                   : -1;
    if (made >= 0) {
      ::unlinkat(dir->get(), base.c_str(), 0);
    } else {
      if (dir.ok()) made = ::openat(dir->get(), ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
      if (made < 0) {
        auto tmp = open_in_tree("/tmp", O_PATH | O_DIRECTORY);
        if (tmp.ok()) made = ::openat(tmp->get(), ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
      }
      if (made < 0) return errno_error(what + ": create it again");
    }
    fd = UniqueFd(made);
  }
  // hugetlbfs has no write(): its data goes in through a mapping, sized first.
  uint8_t* huge_map = nullptr;
  if (c.huge_page_size() != 0 && c.size() != 0) {
    if (::ftruncate(fd.get(), static_cast<off_t>(c.size())) < 0) return errno_error(what + ": ftruncate");
    void* at = ::mmap(nullptr, c.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (at == MAP_FAILED)
      return errno_error(what + ": map its " + std::to_string(c.size() / c.huge_page_size()) +
                         " huge pages (are that many free? vm.nr_hugepages)");
    huge_map = static_cast<uint8_t*>(at);
  }
  ScopeGuard unmap_huge([&] {
    if (huge_map) ::munmap(huge_map, c.size());
  });
  for (const auto& run : c.pages()) {
    uint64_t bytes = run.npages() * 4096;
    if (run.npages() == 0 || run.addr() % 4096 || run.addr() >= c.size() || bytes > (1ULL << 40))
      return Error(EINVAL, what + ": a page run lies outside it");
    CRYO_ASSIGN(const uint8_t* src, images.page_run(run.file(), run.offset(), bytes));
    uint64_t useful = std::min(bytes, c.size() - run.addr());  // the last page may run past the end
    if (huge_map)
      std::memcpy(huge_map + run.addr(), src, useful);
    else
      CRYO_TRY(pwrite_all(fd.get(), src, useful, static_cast<off_t>(run.addr())).wrap(what));
  }
  unmap_huge.run_now();
  if (::ftruncate(fd.get(), static_cast<off_t>(c.size())) < 0) return errno_error(what + ": ftruncate");
  if (::fchown(fd.get(), c.uid(), c.gid()) < 0) return errno_error(what + ": fchown");
  if (::fchmod(fd.get(), c.mode() & 07777) < 0) return errno_error(what + ": fchmod");
  if (c.has_mtime_ns()) {
    auto ts = [](uint64_t ns) {
      return timespec{static_cast<time_t>(ns / 1000000000ULL), static_cast<long>(ns % 1000000000ULL)};
    };
    const timespec times[2] = {ts(c.atime_ns()), ts(c.mtime_ns())};
    if (::futimens(fd.get(), times) < 0) return errno_error(what + ": futimens");
  }
  if (c.memfd() && c.seals() != 0 && ::fcntl(fd.get(), F_ADD_SEALS, c.seals()) < 0)
    return errno_error(what + ": F_ADD_SEALS");
  // Keep a read-only handle: a file open for writing cannot become a
  // process's exe (PR_SET_MM_MAP), and the descriptions reopen it anyway.
  CRYO_ASSIGN(contents_[c.id()], open_file("/proc/self/fd/" + std::to_string(fd.get()), O_RDONLY | O_CLOEXEC));
  return {};
}

Result<UniqueFd> FileObjects::open_in_tree(const std::string& path, int flags) const {
  return open_in_root(tree_root_, path, flags);
}

Result<UniqueFd> FileObjects::open_desc(const image::FileDesc& f) {
  int flags = static_cast<int>(f.flags() & ~kOpenOnly);
  if (f.content_id() != 0) {  // a memfd, or a file, directory or device node removed while open
    auto content = contents_.find(f.content_id());
    if (content == contents_.end()) return Error(EINVAL, name_file(f) + " names a content the image lacks");
    // A description of its own on the same inode, as open(2) gave the task.
    CRYO_ASSIGN(UniqueFd fd, open_file("/proc/self/fd/" + std::to_string(content->second.get()), flags));
    if (f.kind() == image::FileDesc::REGULAR && f.pos() != 0 &&
        ::lseek(fd.get(), static_cast<off_t>(f.pos()), SEEK_SET) < 0)
      return errno_error("seek " + f.path());
    return fd;
  }
  switch (f.kind()) {
    case image::FileDesc::REGULAR:
    case image::FileDesc::DIRECTORY:
    case image::FileDesc::CHAR_DEVICE:
    case image::FileDesc::MAPPED: {
      if (f.path().empty() || f.path()[0] != '/') return Error(EINVAL, name_file(f) + ": not an absolute path");
      CRYO_ASSIGN(UniqueFd fd, open_in_tree(f.path(), flags));
      struct stat st;
      if (::fstat(fd.get(), &st) < 0) return errno_error("fstat " + f.path());
      if ((st.st_mode & S_IFMT) != (f.mode() & S_IFMT))
        return Error(EINVAL, f.path() + " is no longer the kind of file it was at dump time");
      if (f.kind() == image::FileDesc::MAPPED && static_cast<uint64_t>(st.st_size) != f.size())
        return Error(EINVAL, f.path() + " changed size since the dump (" + std::to_string(f.size()) + " -> " +
                                 std::to_string(st.st_size) + " bytes)");
      if (f.kind() == image::FileDesc::MAPPED) {
        CRYO_ASSIGN(uint64_t content, image::mapped_file_checksum("/proc/self/fd/" + std::to_string(fd.get())));
        if (content != f.content_xxh3())
          return Error(EINVAL, f.path() + " changed since the dump (its contents differ): the process would run "
                                          "code or data it never had");
      }
      if (f.kind() == image::FileDesc::CHAR_DEVICE && st.st_rdev != f.rdev())
        return Error(EINVAL, f.path() + " is another device than at dump time");
      // (An O_PATH fd cannot seek; a fresh one is at 0 anyway.)
      if (f.kind() != image::FileDesc::MAPPED && f.kind() != image::FileDesc::CHAR_DEVICE && f.pos() != 0 &&
          ::lseek(fd.get(), static_cast<off_t>(f.pos()), SEEK_SET) < 0)
        return errno_error("seek " + f.path());
      return fd;
    }
    case image::FileDesc::EVENTFD:
    case image::FileDesc::SIGNALFD:
    case image::FileDesc::TIMERFD:
    case image::FileDesc::INOTIFY:
    case image::FileDesc::FANOTIFY:
    case image::FileDesc::BPF_MAP:
    case image::FileDesc::EPOLL: {
      CRYO_ASSIGN(UniqueFd fd, open_anon(f));
      if (::fcntl(fd.get(), F_SETFL, flags) < 0) return errno_error("F_SETFL");
      return fd;
    }
    case image::FileDesc::INHERITED: {
      if (f.inherit_fd() == -1)
        return Error(EINVAL, "the terminal " + f.inherit_key() + " was dumped as external (--external): hand one "
                             "over with --inherit-fd fd[N]:" + f.inherit_key());
      if (f.inherit_fd() < 0 || f.inherit_fd() > 2) return Error(EINVAL, name_file(f) + ": bad inherited fd");
      int fd = ::fcntl(f.inherit_fd(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return errno_error("the shell job's fd " + std::to_string(f.inherit_fd()));
      return UniqueFd(fd);
    }
    default:
      return Error(EINVAL, name_file(f) + ": unknown kind");
  }
}

Status FileObjects::open_pipe(const image::Files& files, const image::Pipe& pipe) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) < 0) return errno_error("pipe2");
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  if (pipe.capacity() > 0 && ::fcntl(write_end.get(), F_SETPIPE_SZ, pipe.capacity()) < 0)
    return errno_error("F_SETPIPE_SZ " + std::to_string(pipe.capacity()));
  if (!pipe.data().empty()) CRYO_TRY(write_all(write_end.get(), pipe.data()).wrap("refill pipe"));
  // One file description per recorded description: the first of each side
  // takes the end pipe2 made, others reopen it through /proc.
  bool read_used = false, write_used = false;
  for (const auto& f : files.files()) {
    if (f.kind() != image::FileDesc::PIPE || f.pipe_id() != pipe.id() || inherited_.count(f.id())) continue;
    bool writer = (f.flags() & O_ACCMODE) != O_RDONLY;
    UniqueFd& end = writer ? write_end : read_end;
    bool& used = writer ? write_used : read_used;
    UniqueFd fd;
    if (!used) {
      fd = UniqueFd(::fcntl(end.get(), F_DUPFD_CLOEXEC, 0));
      used = true;
    } else {
      CRYO_ASSIGN(fd, open_file("/proc/self/fd/" + std::to_string(end.get()), writer ? O_WRONLY : O_RDONLY));
    }
    if (!fd.valid()) return errno_error("dup pipe end");
    if (::fcntl(fd.get(), F_SETFL, f.flags() & ~kOpenOnly) < 0) return errno_error("F_SETFL pipe");
    CRYO_ASSIGN(by_file_[f.id()], place(std::move(fd)));
  }
  return {};
}

Status FileObjects::open_fifo(const image::Files& files, const image::Pipe& pipe) {
  const image::FileDesc* first = nullptr;
  for (const auto& f : files.files())
    if (f.kind() == image::FileDesc::FIFO && f.pipe_id() == pipe.id()) first = first ? first : &f;
  if (!first) return {};
  // A FIFO removed while open is reached through its ghost.
  std::string path = first->path();
  if (first->content_id() != 0) {
    auto ghost = contents_.find(first->content_id());
    if (ghost == contents_.end()) return Error(EINVAL, name_file(*first) + " names a content the image lacks");
    path = "/proc/self/fd/" + std::to_string(ghost->second.get());
  }
  // Hold the FIFO open for both sides so that no open blocks, and refill it.
  CRYO_ASSIGN(UniqueFd holder, first->content_id() != 0 ? open_file(path, O_RDWR | O_NONBLOCK)
                                                       : open_in_tree(path, O_RDWR | O_NONBLOCK));
  struct stat st;
  if (::fstat(holder.get(), &st) < 0 || !S_ISFIFO(st.st_mode)) return Error(EINVAL, first->path() + " is not a FIFO");
  if (pipe.capacity() > 0) ::fcntl(holder.get(), F_SETPIPE_SZ, pipe.capacity());
  for (const auto& f : files.files()) {
    if (f.kind() != image::FileDesc::FIFO || f.pipe_id() != pipe.id()) continue;
    // Through the holder: the same FIFO for every description.
    CRYO_ASSIGN(UniqueFd fd, open_file("/proc/self/fd/" + std::to_string(holder.get()),
                                       static_cast<int>((f.flags() & ~kOpenOnly) | O_NONBLOCK)));
    if (::fcntl(fd.get(), F_SETFL, f.flags() & ~kOpenOnly) < 0) return errno_error("F_SETFL fifo");
    CRYO_ASSIGN(by_file_[f.id()], place(std::move(fd)));
  }
  // Held open outside the image the whole time, the FIFO kept its bytes: writing
  // them again would say them twice (and a hostile image must not talk to a
  // FIFO some daemon reads).
  if (!pipe.data().empty()) {
    CRYO_ASSIGN(bool held, held_elsewhere(st));
    if (held)
      log::info("fifo " + path + " is held open outside the image: it kept its bytes");
    else
      CRYO_TRY(write_all(holder.get(), pipe.data()).wrap("refill fifo " + path));
  }
  CRYO_TRY(place(std::move(holder)).ok() ? Status() : Status(Error("place fifo holder")));
  return {};
}

Status FileObjects::open_shmem(const image::Shmem& shmem, const image::ImageDirReader& images) {
  uint64_t size = shmem.size();
  if (size == 0 || size % 4096 != 0 || size > (1ULL << 40))
    return Error(EINVAL, "shared memory object " + std::to_string(shmem.id()) + " has a bad size");
  // A shared anonymous mapping of our own gives the same kind of object the
  // task had ("/dev/zero (deleted)"); keep a file handle on it and drop the mapping.
  // One of huge pages (MAP_HUGETLB) gives "/anon_hugepage (deleted)".
  int flags = MAP_SHARED | MAP_ANONYMOUS;
  if (uint64_t huge = shmem.huge_page_size(); huge != 0) {
    if ((huge & (huge - 1)) || huge < 4096 || size % huge)
      return Error(EINVAL, "shared memory object " + std::to_string(shmem.id()) + " has a bad huge page size");
    flags |= MAP_HUGETLB | (__builtin_ctzll(huge) << MAP_HUGE_SHIFT);
  }
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (map == MAP_FAILED)
    return errno_error(shmem.huge_page_size() ? "mmap shared memory of " + std::to_string(size / shmem.huge_page_size()) +
                                                    " huge pages (are that many free? vm.nr_hugepages)"
                                              : std::string("mmap shared memory"));
  char range[64];
  snprintf(range, sizeof range, "%lx-%lx", reinterpret_cast<unsigned long>(map),
           reinterpret_cast<unsigned long>(map) + size);
  auto fd = open_file(std::string("/proc/self/map_files/") + range, O_RDWR);
  if (fd.ok()) {
    for (const auto& run : shmem.pages()) {
      uint64_t bytes = run.npages() * 4096;
      if (run.npages() == 0 || run.addr() % 4096 || run.addr() > size || bytes > size - run.addr()) {
        ::munmap(map, size);
        return Error(EINVAL, "shared memory object: a page run lies outside it");
      }
      auto src = images.page_run(run.file(), run.offset(), bytes);
      if (!src.ok()) {
        ::munmap(map, size);
        return std::move(src).error();
      }
      std::memcpy(static_cast<char*>(map) + run.addr(), *src, bytes);
    }
  }
  ::munmap(map, size);
  if (!fd.ok()) return std::move(fd).error();
  CRYO_ASSIGN(by_shmem_[shmem.id()], place(std::move(*fd)));
  return {};
}

Status FileObjects::open_all(const image::Files& files, const image::ImageDirReader& images, const FdZone& zone,
                             std::vector<StubGroup> stub_groups, std::vector<ListenerGroup> listener_groups) {
  zone_ = zone;
  CRYO_ASSIGN(inherited_, match_inherit_fds(files, inherit_fds_));
  stub_groups_ = std::move(stub_groups);
  listener_groups_ = std::move(listener_groups);
  std::set<uint32_t> by_stubs;
  for (const auto& group : listener_groups_) {
    std::vector<uint32_t> ids = {group.listener};
    for (const auto& c : group.connections) {
      ids.push_back(c.client);
      ids.push_back(c.server);
    }
    for (uint32_t id : ids) {
      CRYO_ASSIGN(UniqueFd placeholder, open_file("/dev/null", O_RDONLY));
      CRYO_ASSIGN(by_file_[id], place(std::move(placeholder)));
      by_stubs.insert(id);
    }
  }
  for (const auto& group : stub_groups_) {
    for (uint32_t id : group.ids) {
      CRYO_ASSIGN(UniqueFd placeholder, open_file("/dev/null", O_RDONLY));
      CRYO_ASSIGN(by_file_[id], place(std::move(placeholder)));
      by_stubs.insert(id);
    }
  }
  // Contents first: a FIFO removed while open is reopened through its ghost.
  for (const auto& content : files.contents()) CRYO_TRY(make_content(content, images));
  for (const auto& pipe : files.pipes()) {
    bool fifo = false;
    for (const auto& f : files.files())
      if (f.pipe_id() == pipe.id() && f.kind() == image::FileDesc::FIFO) fifo = true;
    CRYO_TRY(fifo ? open_fifo(files, pipe) : open_pipe(files, pipe));
  }
  for (const auto& shmem : files.shmems()) CRYO_TRY(open_shmem(shmem, images));
  CRYO_TRY(open_ptys(files));
  for (const auto& f : files.files()) {
    if (f.kind() == image::FileDesc::SOCKET) continue;
    if (auto given = inherited_.find(f.id()); given != inherited_.end()) {
      log::info(name_file(f) + ": from fd " + std::to_string(given->second) + " (--inherit-fd " +
                inherit_key(f, files) + ")");
      auto fd = open_inherited(f, given->second);
      if (!fd.ok()) return std::move(fd).error().wrap(name_file(f));
      CRYO_ASSIGN(by_file_[f.id()], place(std::move(*fd)));
      if (f.kind() == image::FileDesc::INHERITED && f.ctty_sid() > 0) external_cttys_[f.ctty_sid()] = by_file_[f.id()];
      continue;
    }
    if (f.kind() == image::FileDesc::PIDFD || f.proc_pid() != 0) {  // made in its task once every process exists
      CRYO_ASSIGN(UniqueFd placeholder, open_file("/dev/null", O_RDONLY));
      CRYO_ASSIGN(by_file_[f.id()], place(std::move(placeholder)));
      continue;
    }
    if (f.kind() == image::FileDesc::PTY_MASTER || f.kind() == image::FileDesc::PTY_SLAVE ||
        f.kind() == image::FileDesc::TTY_CURRENT) {
      if (!by_file_.count(f.id())) return Error(EINVAL, name_file(f) + " names a pseudo-terminal the image lacks");
      continue;
    }
    if (f.kind() == image::FileDesc::PIPE || f.kind() == image::FileDesc::FIFO) {
      if (!by_file_.count(f.id())) return Error(EINVAL, name_file(f) + " names a pipe the image lacks");
      continue;
    }
    auto fd = open_desc(f);
    if (!fd.ok()) return std::move(fd).error().wrap(name_file(f));
    CRYO_ASSIGN(by_file_[f.id()], place(std::move(*fd)));
  }
  // Sockets last: their queues may carry the other files in flight.
  std::map<uint32_t, UniqueFd> sockets;
  CRYO_TRY(net::open_sockets(files, [&](uint32_t id) { return !by_stubs.count(id); }, file_fds(), &sockets));
  for (auto& entry : sockets) {
    CRYO_ASSIGN(by_file_[entry.first], place(std::move(entry.second)));
  }
  return {};
}

Status FileObjects::make_stub_groups(pid_t pid, const image::Files& files) const {
  for (const auto& group : stub_groups_) {
    if (group.creator != pid) continue;
    std::set<uint32_t> ids(group.ids.begin(), group.ids.end());
    std::map<uint32_t, UniqueFd> made;
    CRYO_TRY(net::open_sockets(files, [&](uint32_t id) { return ids.count(id) > 0; }, file_fds(), &made));
    for (auto& [id, fd] : made)
      if (::dup3(fd.get(), fd_of(id), O_CLOEXEC) < 0) return errno_error("dup3 socket");
  }
  return {};
}

namespace {

const image::FileDesc* file_by_id(const image::Files& files, uint32_t id) {
  if (id == 0 || id > static_cast<uint32_t>(files.files_size())) return nullptr;
  return &files.files(static_cast<int>(id - 1));
}

}  // namespace

Status FileObjects::make_listeners_and_connections(pid_t pid, const image::Files& files) const {
  for (const auto& group : listener_groups_) {
    const auto* listener = file_by_id(files, group.listener);
    if (!listener) return Error(EINVAL, "a listener group names an unknown file");
    if (group.creator == pid) {
      CRYO_ASSIGN(UniqueFd l, net::unix_listen(listener->socket()));
      CRYO_TRY(net::finish_socket(l.get(), *listener));
      if (::dup3(l.get(), fd_of(group.listener), O_CLOEXEC) < 0) return errno_error("dup3 listener");
    }
    for (const auto& c : group.connections) {
      if (c.connector != pid) continue;
      const auto* client = file_by_id(files, c.client);
      const auto* server = file_by_id(files, c.server);
      if (!client || !server) return Error(EINVAL, "a listener group names an unknown file");
      CRYO_ASSIGN(UniqueFd s, net::unix_connect(client->socket(), listener->socket()));
      CRYO_TRY(net::send_queued(s.get(), server->socket(), file_fds()).wrap("bytes queued for the accepted end"));
      CRYO_TRY(net::finish_socket(s.get(), *client));
      if (::dup3(s.get(), fd_of(c.client), O_CLOEXEC) < 0) return errno_error("dup3 client");
    }
  }
  return {};
}

Status FileObjects::accept_connections(pid_t pid, const image::Files& files) const {
  for (const auto& group : listener_groups_) {
    if (group.creator != pid) continue;
    int listener = fd_of(group.listener);
    std::vector<bool> done(group.connections.size());
    for (size_t n = 0; n < group.connections.size(); n++) {
      int a = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (a < 0) return errno_error("accept a connection to restore");
      UniqueFd accepted(a);
      struct ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(a, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return errno_error("SO_PEERCRED");
      // The first connection not yet placed whose connector this is.
      size_t k = 0;
      while (k < done.size() && (done[k] || group.connections[k].connector != cred.pid)) k++;
      if (k == done.size()) return Error(EINVAL, "an unexpected connection to a restored listener");
      done[k] = true;
      const auto& c = group.connections[k];
      const auto* client = file_by_id(files, c.client);
      const auto* server = file_by_id(files, c.server);
      CRYO_TRY(net::send_queued(a, client->socket(), file_fds()).wrap("bytes queued for the client end"));
      CRYO_TRY(net::finish_socket(a, *server));
      if (::dup3(a, fd_of(c.server), O_CLOEXEC) < 0) return errno_error("dup3 server end");
    }
  }
  return {};
}

Status FileObjects::install_fds(const image::Process& core, const FileObjects& objects, const FdZone& zone) {
  std::set<std::pair<unsigned, unsigned>> kept;  // [first, last]
  for (const auto& fd : core.fds()) {
    int src = objects.fd_of(fd.file_id());
    if (src < 0) return Error(EINVAL, "fd " + std::to_string(fd.fd()) + " names an unknown file");
    if (::dup2(src, fd.fd()) < 0) return errno_error("dup2 to fd " + std::to_string(fd.fd()));
    if (::fcntl(fd.fd(), F_SETFD, fd.cloexec() ? FD_CLOEXEC : 0) < 0) return errno_error("F_SETFD");
    kept.emplace(fd.fd(), fd.fd());
  }
  // Close everything else (what the restorer had open), the zone apart:
  // the gaps between the numbers kept, in order.
  kept.emplace(zone.begin, zone.end == INT_MAX ? ~0U : static_cast<unsigned>(zone.end) - 1);
  unsigned from = 0;
  for (auto [first, last] : kept) {
    if (first > from) ::syscall(SYS_close_range, from, first - 1, 0);
    if (last == ~0U) return {};
    from = std::max(from, last + 1);
  }
  ::syscall(SYS_close_range, from, ~0U, 0);
  return {};
}

}  // namespace cryo::files
