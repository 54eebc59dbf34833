#include "core/files/files_dump.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/files/bpf_map.h"
#include "core/files/devices.h"
#include "core/files/external.h"
#include "core/files/proc_files.h"
#include "core/files/fanotify.h"
#include "core/files/mounts.h"
#include "core/image/image.h"
#include "core/mm/mm_dump.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/log.h"
#include "core/sys/proc.h"

namespace cryo::files {
namespace {

// The mqueue filesystem's (ipc/mqueue.c; not in the kernel's uapi headers).
constexpr long kMqueueMagic = 0x19800202;

// How deep sockets in flight may nest, each in the queue of the one before
// (the kernel sets no limit since 5.x; the dump recurses once per level).
constexpr int kMaxInFlightDepth = 16;

std::string fd_path(pid_t pid, int fd) { return "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd); }
std::string name_fd(pid_t pid, int fd) { return "pid " + std::to_string(pid) + " fd " + std::to_string(fd); }

bool same_description(pid_t pid1, int fd1, pid_t pid2, int fd2) {
  return ::syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) == 0;
}

bool is_terminal(dev_t rdev) {
  unsigned major_nr = major(rdev);
  return major_nr == 4 || (major_nr == 5 && minor(rdev) <= 1) || (major_nr >= 136 && major_nr <= 143);
}

// The file an inotify watch names, found by its file handle under a mount
// of its filesystem: in the tree's own mount namespace when it has one
// (tree_root "/proc/PID/root"), by the path the tree sees.
struct WatchedFile {
  std::string path;
  struct stat st;
  bool made_again = false;  // on a filesystem the restore makes anew
};

Result<WatchedFile> watched_file(const proc::InotifyWatch& w, const std::string& tree_root) {
  WatchedFile out;
  auto seen = tree_mount_of_dev(w.sdev, tree_root);
  std::vector<std::string>& mounts = seen.mount_points;
  out.made_again = seen.made_again;
  std::string what = "inotify watch " + std::to_string(w.wd);
  if (mounts.empty()) return Error("no mount of the filesystem of " + what + " is visible");
  std::vector<uint8_t> buf(sizeof(struct file_handle) + w.handle.size());
  auto* handle = reinterpret_cast<struct file_handle*>(buf.data());
  handle->handle_bytes = static_cast<unsigned>(w.handle.size());
  handle->handle_type = w.handle_type;
  std::memcpy(handle->f_handle, w.handle.data(), w.handle.size());
  // Opened under a mount that shows the file: its path is then that of the
  // fd (the tree's, outside cryo's mount namespace).
  std::string tried;
  for (const auto& mount : mounts) {
    CRYO_ASSIGN(UniqueFd mount_fd, open_file(tree_root + mount, O_RDONLY | O_DIRECTORY));
    UniqueFd file(::open_by_handle_at(mount_fd.get(), handle, O_PATH | O_CLOEXEC));
    if (!file.valid()) return errno_error("open the file of " + what + " by its handle");
    CRYO_ASSIGN(out.path, read_link("/proc/self/fd/" + std::to_string(file.get())));
    if (!out.path.empty() && out.path[0] == '/' && ::stat((tree_root + out.path).c_str(), &out.st) == 0 &&
        out.st.st_ino == w.ino)
      return out;
    tried += (tried.empty() ? "" : ", ") + out.path;
  }
  return Error(what + " names " + tried + ", which cannot be reached by its path");
}

// "anon_inode:[eventfd]" -> "eventfd"
std::string anon_kind(const std::string& link) {
  std::string k = link.substr(link.find(':') + 1);
  if (!k.empty() && k.front() == '[') k = k.substr(1, k.size() - 2);
  return k;
}

}  // namespace

static bool is_memfd(const std::string& link, const struct stat& st) {
  return link.starts_with("/memfd:") && link.ends_with(" (deleted)") && st.st_nlink == 0 && S_ISREG(st.st_mode);
}

namespace {

// The bytes of a file that are data, not holes (SEEK_DATA / SEEK_HOLE).
Result<uint64_t> data_bytes(const std::string& path, uint64_t size) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  uint64_t total = 0;
  for (off_t at = 0; static_cast<uint64_t>(at) < size;) {
    off_t data = ::lseek(fd.get(), at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0) return errno_error("SEEK_DATA " + path);
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) return errno_error("SEEK_HOLE " + path);
    total += static_cast<uint64_t>(hole - data);
    at = hole;
  }
  return total;
}

}  // namespace

Result<uint64_t> FilesDump::add_content(const std::string& source, const struct stat& st, const std::string& link,
                                        const std::string& what) {
  if (auto it = contents_.find({st.st_dev, st.st_ino}); it != contents_.end())
    return files_.contents(static_cast<int>(it->second)).id();
  bool memfd = is_memfd(link, st);
  constexpr std::string_view kDeleted = " (deleted)";
  std::string name = link.ends_with(kDeleted) ? link.substr(0, link.size() - kDeleted.size()) : link;
  if (memfd) {
    name = name.substr(std::string_view("/memfd:").size());
  } else if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > options_.ghost_limit) {
    // Only its data goes into the image: a sparse file is measured by that.
    CRYO_ASSIGN(uint64_t data, data_bytes(source, static_cast<uint64_t>(st.st_size)));
    if (data > options_.ghost_limit)
      return Error(what + ": the deleted file " + name + " holds " + std::to_string(data) +
                   " bytes of data, more than the ghost limit of " + std::to_string(options_.ghost_limit) +
                   " (--ghost-limit)");
  }
  if (!memfd && (name.empty() || name[0] != '/')) return Error(what + ": " + link + " is not a file cryo can save");
  auto* c = files_.add_contents();
  c->set_id(static_cast<uint64_t>(files_.contents_size()));
  c->set_memfd(memfd);
  c->set_name(name);
  c->set_mode(st.st_mode);
  c->set_uid(st.st_uid);
  c->set_gid(st.st_gid);
  c->set_size(S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) c->set_rdev(st.st_rdev);
  auto ns = [](const timespec& t) { return static_cast<uint64_t>(t.tv_sec) * 1000000000ULL + static_cast<uint64_t>(t.tv_nsec); };
  c->set_atime_ns(ns(st.st_atim));
  c->set_mtime_ns(ns(st.st_mtim));
  if (memfd) {
    CRYO_ASSIGN(UniqueFd fd, open_file(source, O_RDONLY));
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0) return errno_error(what + ": F_GET_SEALS");
    c->set_seals(static_cast<uint32_t>(seals));
    struct statfs fs;  // MFD_HUGETLB: a file of hugetlbfs, whose block size is its page size
    if (::fstatfs(fd.get(), &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC)
      c->set_huge_page_size(static_cast<uint64_t>(fs.f_bsize));
  }
  contents_[{st.st_dev, st.st_ino}] = static_cast<size_t>(files_.contents_size() - 1);
  content_sources_.push_back(source);
  return c->id();
}

Status FilesDump::dump_contents(image::PageWriter& pages, mm::DumpStats* stats) {
  for (int i = 0; i < files_.contents_size(); i++) {
    auto* c = files_.mutable_contents(i);
    const std::string& source = content_sources_[static_cast<size_t>(i)];
    if (!S_ISREG(c->mode())) continue;  // a removed directory, FIFO or device node: no data of its own
    std::string what = (c->memfd() ? "memfd " : "deleted file ") + c->name();
    CRYO_ASSIGN(UniqueFd fd, open_file(source, O_RDONLY));
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return errno_error(what + ": fstat");
    if (static_cast<uint64_t>(st.st_size) != c->size())
      return Error(what + " changed size while the tree was frozen (a holder outside the tree?)");
    CRYO_TRY(mm::dump_file_data(fd.get(), c->size(), c->mutable_pages(), pages, stats).wrap(what));
  }
  return {};
}

Result<uint32_t> FilesDump::add_mapped_file(const std::string& source, bool writable, const std::string& what) {
  struct stat used;
  if (::stat(source.c_str(), &used) < 0) return errno_error(what + ": stat " + source);
  if (used.st_nlink == 0) {  // a memfd or a deleted file: its data goes into the image
    CRYO_ASSIGN(std::string link, read_link(source));
    std::string key = "content " + std::to_string(used.st_dev) + ":" + std::to_string(used.st_ino) +
                      (writable ? "\nw" : "\nr");
    if (auto it = mapped_.find(key); it != mapped_.end()) return it->second;
    CRYO_ASSIGN(uint64_t content, add_content(source, used, link, what));
    auto* f = add_mapped_desc(key, link, writable, used);
    f->set_content_id(content);
    return f->id();
  }
  // The link is the exact name (maps would escape newlines), with no
  // " (deleted)" added since the file is not deleted.
  CRYO_ASSIGN(std::string path, read_link(source));
  std::string key = path + (writable ? "\nw" : "\nr");
  if (auto it = mapped_.find(key); it != mapped_.end()) return it->second;
  if (path.empty() || path[0] != '/') return Error(what + ": " + path + " is not a file cryo can reopen");
  struct stat st;
  if (::stat((options_.tree_root + path).c_str(), &st) < 0) return errno_error(what + ": stat " + path);
  if (st.st_dev != used.st_dev || st.st_ino != used.st_ino)
    return Error(what + ": " + path + " on disk is not the file in use (replaced since it was opened)");
  CRYO_ASSIGN(uint64_t content, image::mapped_file_checksum(source));
  auto* f = add_mapped_desc(key, path, writable, st);
  f->set_content_xxh3(content);
  return f->id();
}

image::FileDesc* FilesDump::add_mapped_desc(const std::string& key, const std::string& path, bool writable,
                                            const struct stat& st) {
  auto* f = files_.add_files();
  f->set_id(static_cast<uint32_t>(files_.files_size()));
  f->set_kind(image::FileDesc::MAPPED);
  f->set_path(path);
  f->set_flags(writable ? O_RDWR : O_RDONLY);
  f->set_mode(st.st_mode);
  f->set_size(static_cast<uint64_t>(st.st_size));
  mapped_[key] = f->id();
  return f;
}

image::Shmem* FilesDump::add_shmem(uint64_t id, bool* is_new) {
  if (auto it = shmems_.find(id); it != shmems_.end()) {
    *is_new = false;
    return files_.mutable_shmems(static_cast<int>(it->second));
  }
  *is_new = true;
  shmems_[id] = static_cast<size_t>(files_.shmems_size());
  auto* s = files_.add_shmems();
  s->set_id(id);
  return s;
}

Result<image::SysvShm*> FilesDump::add_sysv_shm(int shmid, const std::string& what, bool* is_new) {
  if (ipc_shms_) {
    *is_new = false;
    for (auto& s : *ipc_shms_)
      if (s.id() == shmid) return &s;
    return Error(what + ": System V segment " + std::to_string(shmid) + " is not in the tree's IPC namespace");
  }
  if (auto it = sysv_shms_.find(shmid); it != sysv_shms_.end()) {
    *is_new = false;
    return files_.mutable_sysv_shms(static_cast<int>(it->second));
  }
  CRYO_ASSIGN(std::string text, read_file("/proc/sysvipc/shm"));
  CRYO_ASSIGN(auto segments, proc::parse_sysv_shm(text));
  for (const auto& s : segments) {
    if (s.id != shmid) continue;
    constexpr uint32_t kDest = 01000, kLocked = 02000;
    if (s.perms & kLocked) return Error(what + ": System V segment " + std::to_string(shmid) + " is locked in memory (SHM_LOCK, not supported)");
    *is_new = true;
    sysv_shms_[shmid] = static_cast<size_t>(files_.sysv_shms_size());
    auto* out = files_.add_sysv_shms();
    out->set_id(s.id);
    out->set_key(s.key);
    out->set_size(s.size);
    out->set_mode(s.perms & 0777);
    out->set_uid(s.uid);
    out->set_gid(s.gid);
    out->set_removed((s.perms & kDest) != 0);
    return out;
  }
  return Error(what + ": System V segment " + std::to_string(shmid) + " is not in this IPC namespace");
}

Result<pid_t> FilesDump::outside_pipe_holder(uint64_t inode, const tree::FrozenTree& tree) {
  if (!outside_pipes_) {  // one walk over /proc per dump, however many pipes the tree has
    std::map<uint64_t, pid_t> index;
    DIR* proc_dir = opendir("/proc");
    if (!proc_dir) return errno_error("opendir /proc");
    while (struct dirent* d = readdir(proc_dir)) {
      char* end;
      long pid = strtol(d->d_name, &end, 10);
      if (*end != '\0' || pid <= 0 || tree.contains(static_cast<pid_t>(pid)) || pid == getpid()) continue;
      auto fds = proc::list_fds(static_cast<pid_t>(pid));
      if (!fds.ok()) continue;  // gone, or a kernel thread
      for (int fd : *fds) {
        auto link = read_link(fd_path(static_cast<pid_t>(pid), fd));
        if (!link.ok() || !link->starts_with("pipe:[")) continue;
        index.emplace(std::strtoull(link->c_str() + 6, nullptr, 10), static_cast<pid_t>(pid));
      }
    }
    closedir(proc_dir);
    outside_pipes_ = std::move(index);
  }
  auto it = outside_pipes_->find(inode);
  return it == outside_pipes_->end() ? 0 : it->second;
}

// An external pipe is saved like any other, with its queued bytes; the
// restore makes it without the outside holder's end (so the tree reads its
// end of file, or its writes fail with EPIPE), unless the caller hands over a
// pipe of its own for it (--inherit-fd fd[N]:pipe:[INODE]).
void FilesDump::note_external_pipe(const std::string& what, const std::string& link, pid_t holder, uint32_t pipe_id) {
  auto* pipe = files_.mutable_pipes(static_cast<int>(pipe_id - 1));
  if (pipe->outside_holder() != 0) return;
  pipe->set_outside_holder(holder);
  log::info(what + ": " + link + " is also held by pid " + std::to_string(holder) +
            ", outside the tree: it comes back without that end, unless restore --inherit-fd fd[N]:" +
            pipe_key(pipe->inode()) + " hands over another");
}

Status FilesDump::dump_pipe(const FdRef& ref, uint32_t* pipe_id) {
  uint64_t inode = ref.st.st_ino;
  if (auto it = pipes_.find(inode); it != pipes_.end()) {
    *pipe_id = it->second;
    return {};
  }
  // A read end of our own onto the same pipe, and tee(2) to copy what is
  // buffered without taking it away.
  CRYO_ASSIGN(UniqueFd reader, open_file(fd_path(ref.pid, ref.fd), O_RDONLY | O_NONBLOCK));
  int capacity = ::fcntl(reader.get(), F_GETPIPE_SZ);
  if (capacity < 0) return errno_error("F_GETPIPE_SZ");
  int tmp[2];
  if (::pipe2(tmp, O_NONBLOCK | O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd tmp_read(tmp[0]), tmp_write(tmp[1]);
  if (::fcntl(tmp_write.get(), F_SETPIPE_SZ, capacity) < 0) return errno_error("F_SETPIPE_SZ");
  ssize_t n = ::tee(reader.get(), tmp_write.get(), static_cast<size_t>(capacity), SPLICE_F_NONBLOCK);
  if (n < 0 && errno != EAGAIN) return errno_error("tee");
  std::string data(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t r = ::read(tmp_read.get(), data.data() + got, data.size() - got);
    if (r <= 0) return errno_error("read pipe copy");
    got += static_cast<size_t>(r);
  }
  auto* p = files_.add_pipes();
  p->set_id(static_cast<uint32_t>(files_.pipes_size()));
  p->set_inode(inode);
  p->set_capacity(static_cast<uint32_t>(capacity));
  p->set_data(std::move(data));
  pipes_[inode] = p->id();
  *pipe_id = p->id();
  return {};
}

Status FilesDump::describe_anon(const FdRef& ref, const std::string& kind, image::FileDesc* f,
                                const tree::FrozenTree& tree) {
  if (kind == "pidfd") {
    auto it = ref.info.fields.find("Pid");
    int target = 0;
    if (it == ref.info.fields.end() || (target = std::atoi(it->second.c_str())) <= 0)
      return Error("pidfd of a process that has exited and been reaped (not supported)");
    bool thread = (ref.info.flags & O_EXCL) != 0;  // PIDFD_THREAD
    bool inside = false;
    for (const auto& p : tree.processes())
      inside = inside || p.pid == target || (thread && std::find(p.tids.begin(), p.tids.end(), target) != p.tids.end());
    if (!inside) return Error("pidfd of pid " + std::to_string(target) + ", outside the tree (not supported)");
    f->set_kind(image::FileDesc::PIDFD);
    f->set_pidfd_target(target);
    return {};
  }
  if (kind == "eventfd") {
    CRYO_ASSIGN(proc::EventFdInfo ev, proc::parse_eventfd(ref.info));
    f->set_kind(image::FileDesc::EVENTFD);
    f->mutable_eventfd()->set_count(ev.count);
    f->mutable_eventfd()->set_semaphore(ev.semaphore);
  } else if (kind == "signalfd") {
    CRYO_ASSIGN(uint64_t mask, proc::parse_signalfd_mask(ref.info));
    f->set_kind(image::FileDesc::SIGNALFD);
    f->mutable_signalfd()->set_mask(mask);
  } else if (kind == "timerfd") {
    CRYO_ASSIGN(proc::TimerFdInfo t, proc::parse_timerfd(ref.info));
    f->set_kind(image::FileDesc::TIMERFD);
    auto* out = f->mutable_timerfd();
    out->set_clockid(t.clockid);
    out->set_ticks(t.ticks);
    out->set_settime_flags(t.settime_flags);
    out->set_value_ns(t.value_ns);
    out->set_interval_ns(t.interval_ns);
    bool wall_clock = t.clockid == CLOCK_REALTIME || t.clockid == CLOCK_REALTIME_ALARM;
    if ((t.settime_flags & TFD_TIMER_ABSTIME) && wall_clock && t.value_ns != 0) {
      struct timespec now;
      ::clock_gettime(CLOCK_REALTIME, &now);
      out->set_deadline_ns(static_cast<uint64_t>(now.tv_sec) * 1000000000 + static_cast<uint64_t>(now.tv_nsec) +
                           t.value_ns);
    }
  } else if (kind.starts_with("bpf")) {
    CRYO_ASSIGN(UniqueFd copy, copy_fd(ref.pid, ref.fd));
    if (kind != "bpf-map") return refuse_bpf_object(copy.get(), kind);
    CRYO_ASSIGN(uint32_t id, bpf_map_id(copy.get()));
    if (!bpf_maps_.insert(id).second)
      return Error("BPF map (id " + std::to_string(id) + ") is held through two open files (not supported)");
    f->set_kind(image::FileDesc::BPF_MAP);
    CRYO_TRY(dump_bpf_map(copy.get(), ref.info_text, ref.flags, f->mutable_bpf_map()));
  } else if (kind == "fanotify") {
    CRYO_ASSIGN(UniqueFd copy, copy_fd(ref.pid, ref.fd));
    f->set_kind(image::FileDesc::FANOTIFY);
    CRYO_TRY(dump_fanotify(ref.pid, copy.get(), ref.info_text, options_.tree_root, f->mutable_fanotify()));
  } else if (kind == "inotify") {
    // Unread events cannot be saved without taking them from the process.
    CRYO_ASSIGN(UniqueFd dup, copy_fd(ref.pid, ref.fd));
    int queued = 0;
    if (::ioctl(dup.get(), FIONREAD, &queued) < 0) return errno_error("FIONREAD");
    if (queued > 0)
      return Error("inotify has " + std::to_string(queued) + " bytes of events not yet read (not supported: dump again "
                   "once it has read them)");
    CRYO_ASSIGN(auto watches, proc::parse_inotify_watches(ref.info_text));
    f->set_kind(image::FileDesc::INOTIFY);
    for (const auto& w : watches) {
      if (w.ignored_mask != 0) return Error("inotify watch " + std::to_string(w.wd) + " has an ignored mask");
      CRYO_ASSIGN(WatchedFile file, watched_file(w, options_.tree_root));
      auto* out = f->mutable_inotify()->add_watches();
      out->set_wd(w.wd);
      out->set_path(file.path);
      out->set_mask(w.mask);
      out->set_ino(file.st.st_ino);
      out->set_dev(file.st.st_dev);
      out->set_mode(file.st.st_mode);
      out->set_made_again(file.made_again);
    }
  } else {  // eventpoll
    CRYO_ASSIGN(auto targets, proc::parse_epoll_targets(ref.info_text));
    f->set_kind(image::FileDesc::EPOLL);
    auto* out = f->mutable_epoll();
    out->set_owner(ref.pid);
    // A registration names a file and the fd it was added through: the
    // restore adds it again through that fd, so the fd must still be that file.
    std::map<int, uint32_t> seen;  // fd -> registrations so far with that number
    for (const auto& t : targets) {
      struct kcmp_epoll_slot slot = {static_cast<uint32_t>(ref.fd), static_cast<uint32_t>(t.fd), seen[t.fd]++};
      if (::syscall(SYS_kcmp, ref.pid, ref.pid, KCMP_EPOLL_TFD, t.fd, &slot) != 0)
        return Error("epoll watches a file through fd " + std::to_string(t.fd) +
                     ", which is now closed or another file (not supported)");
      auto* target = out->add_targets();
      target->set_fd(t.fd);
      target->set_events(t.events);
      target->set_data(t.data);
    }
  }
  return {};
}

Status FilesDump::describe_owner(const FdRef& ref, image::FileDesc* f) {
  auto& pidfd = pidfds_[ref.pid];
  if (pidfd.get() < 0) {
    pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, ref.pid, 0)));
    if (pidfd.get() < 0) return errno_error("pidfd_open");
  }
  UniqueFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), ref.fd, 0)));
  if (copy.get() < 0) return errno_error("pidfd_getfd");
  struct f_owner_ex owner{};
  if (::fcntl(copy.get(), F_GETOWN_EX, &owner) < 0) return errno_error("F_GETOWN_EX");
  int signum = ::fcntl(copy.get(), F_GETSIG);
  if (signum < 0) return errno_error("F_GETSIG");
  if (owner.pid == 0 && signum == 0) return {};
  f->mutable_owner()->set_type(owner.type);
  f->mutable_owner()->set_pid(owner.pid);
  f->mutable_owner()->set_signum(signum);
  return {};
}

Result<uint32_t> FilesDump::describe(const FdRef& ref, const tree::FrozenTree& tree) {
  for (const auto& [rep, id] : descriptions_)
    if (rep.st.st_dev == ref.st.st_dev && rep.st.st_ino == ref.st.st_ino &&
        same_description(rep.pid, rep.fd, ref.pid, ref.fd))
      return id;

  const std::string& what = ref.reached.what;
  image::FileDesc f;
  f.set_id(static_cast<uint32_t>(files_.files_size() + 1));
  if (!(ref.flags & O_PATH)) CRYO_TRY(describe_owner(ref, &f).wrap(what));  // an O_PATH fd has no owner
  f.set_flags(ref.flags);
  f.set_pos(ref.pos);
  f.set_mode(ref.st.st_mode);
  f.set_path(ref.link);
  f.set_size(static_cast<uint64_t>(ref.st.st_size));
  f.set_rdev(ref.st.st_rdev);
  const std::string& link = ref.link;
  pid_t root = tree.processes().front().pid;

  if (link.starts_with("socket:")) {
    // Its place and its description first: the files in flight in its queue
    // are described meanwhile and take the ids after it, and the socket
    // itself, found in flight in its own queue or deeper, is this one.
    image::FileDesc* sock = files_.add_files();
    *sock = f;
    sock->mutable_socket()->set_inode(ref.st.st_ino);
    descriptions_.emplace_back(ref, f.id());
    if (ref.reached.depth > 0)
      CRYO_TRY(sockets_.describe_in_flight(ref.reached, ref.fd, sock));
    else
      CRYO_TRY(sockets_.describe(ref.pid, ref.fd, sock));
    return f.id();
  }
  if (link.starts_with("anon_inode:")) {
    std::string kind = anon_kind(link);
    if (kind != "eventfd" && kind != "eventpoll" && kind != "signalfd" && kind != "timerfd" && kind != "inotify" &&
        kind != "pidfd" && kind != "fanotify" && !kind.starts_with("bpf"))
      return Error(what + ": " + kind + " is not supported");
    CRYO_TRY(describe_anon(ref, kind, &f, tree).wrap(what));
    *files_.add_files() = f;
    descriptions_.emplace_back(ref, f.id());
    return f.id();
  }
  if (struct statfs fs; !(ref.flags & O_PATH) && ::statfs(fd_path(ref.pid, ref.fd).c_str(), &fs) == 0) {
    if (fs.f_type == kMqueueMagic)
      return Error(what + ": POSIX message queue " + link + " (an mq_open descriptor, not supported)");
    if (fs.f_type == SECRETMEM_MAGIC)
      return Error(what + ": memfd_secret memory is not supported (no other process can read its pages)");
  }
  CRYO_ASSIGN(bool in_proc, describe_proc_file(ref.pid, ref.fd, ref.st, link, tree, &f));
  if (in_proc) {  // a namespace, or a file of a process of the tree: see proc_files.h
    *files_.add_files() = f;
    descriptions_.emplace_back(ref, f.id());
    return f.id();
  }
  if (ref.flags & O_PATH) {
    // An O_PATH fd opened nothing: whatever it names (a symlink taken with
    // O_NOFOLLOW, a FIFO, a device, a socket file) is reopened by its path
    // with the same flags.
    f.set_kind(S_ISDIR(ref.st.st_mode) ? image::FileDesc::DIRECTORY : image::FileDesc::REGULAR);
    if (ref.st.st_nlink == 0 && S_ISREG(ref.st.st_mode)) {
      CRYO_ASSIGN(uint64_t content, add_content(fd_path(ref.pid, ref.fd), ref.st, link, what));
      f.set_content_id(content);
    }
  } else if (S_ISFIFO(ref.st.st_mode)) {
    bool anonymous = link.starts_with("pipe:");
    CRYO_ASSIGN(pid_t holder, outside_pipe_holder(ref.st.st_ino, tree));
    if (anonymous && holder != 0 && options_.shell_job && ref.pid == root && ref.fd <= 2) {
      // A shell job's stdio: cryo restore's own stdio takes its place.
      f.set_kind(image::FileDesc::INHERITED);
      f.set_inherit_fd(ref.fd);
      f.set_inherit_key(pipe_key(ref.st.st_ino));
    } else {
      f.set_kind(anonymous ? image::FileDesc::PIPE : image::FileDesc::FIFO);
      uint32_t pipe_id = 0;
      CRYO_TRY(dump_pipe(ref, &pipe_id).wrap(what));
      f.set_pipe_id(pipe_id);
      if (anonymous && holder != 0) note_external_pipe(what, link, holder, pipe_id);
    }
  } else if (S_ISCHR(ref.st.st_mode)) {
    auto own_tty = ttys_.describe(ref.pid, ref.fd, ref.st, link, &f, &files_);
    if (!own_tty.ok()) return std::move(own_tty).error().wrap(what);
    if (*own_tty) {
      // a terminal of the tree's own
    } else if (is_terminal(ref.st.st_rdev)) {
      bool console = major(ref.st.st_rdev) == 4 || (major(ref.st.st_rdev) == 5 && minor(ref.st.st_rdev) == 1);
      std::string key = tty_key(ref.st.st_rdev, ref.st.st_dev);
      // Named by --external, it is the caller's to hand over on restore (--inherit-fd).
      bool external = std::find(options_.external_ttys.begin(), options_.external_ttys.end(), key) !=
                      options_.external_ttys.end();
      if (!options_.shell_job && !external && console)
        return Error(what + ": " + link + " is a console of the machine, not a terminal of the tree (not supported; "
                     "dump with --shell-job if it is the shell's terminal)");
      if (!options_.shell_job && !external)
        return Error(what + ": terminal " + link + " belongs to the shell (dump with --shell-job, or with --external " +
                     key + " to hand another over on restore with --inherit-fd fd[N]:" + key + ")");
      f.set_kind(image::FileDesc::INHERITED);
      f.set_inherit_fd(options_.shell_job ? (ref.fd <= 2 ? ref.fd : 0) : -1);
      f.set_inherit_key(key);
    } else if (std::string why = device_refusal(ref.st.st_mode, ref.st.st_rdev, static_cast<int>(ref.flags));
               !why.empty()) {
      // Reopened, a device such as /dev/net/tun, /dev/fuse or /dev/kvm would
      // not be the one the process had set up.
      return Error(what + ": character device " + link + " (" + std::to_string(major(ref.st.st_rdev)) + ":" +
                   std::to_string(minor(ref.st.st_rdev)) + ") " + why + " (not supported)");
    } else {
      f.set_kind(image::FileDesc::CHAR_DEVICE);
    }
  } else if (S_ISBLK(ref.st.st_mode)) {
    f.set_kind(image::FileDesc::CHAR_DEVICE);  // reopened by its path like a character device; mode tells
  } else if (S_ISDIR(ref.st.st_mode)) {
    f.set_kind(image::FileDesc::DIRECTORY);
  } else if (S_ISREG(ref.st.st_mode)) {
    f.set_kind(image::FileDesc::REGULAR);
    if (ref.st.st_nlink == 0) {  // a memfd or a deleted file: its data goes into the image
      CRYO_ASSIGN(uint64_t content, add_content(fd_path(ref.pid, ref.fd), ref.st, link, what));
      f.set_content_id(content);
    }
  } else if (S_ISSOCK(ref.st.st_mode)) {
    return Error(what + ": sockets (" + link + ") are not supported yet");
  } else {
    return Error(what + ": " + link + " is a kind of file cryo cannot dump");
  }
  bool by_path = f.kind() == image::FileDesc::REGULAR || f.kind() == image::FileDesc::DIRECTORY ||
                 f.kind() == image::FileDesc::CHAR_DEVICE || f.kind() == image::FileDesc::FIFO;
  if (by_path && f.content_id() == 0 && ref.st.st_nlink == 0 && !S_ISREG(ref.st.st_mode)) {
    // A directory, FIFO or device node removed while open: made again at
    // its path on restore (mkdir, mknod), opened and removed again.
    CRYO_ASSIGN(uint64_t content, add_content(fd_path(ref.pid, ref.fd), ref.st, link, what));
    f.set_content_id(content);
  }
  if (by_path && f.content_id() == 0) {
    struct stat on_disk;
    auto stat_path = S_ISLNK(ref.st.st_mode) ? ::lstat : ::stat;  // an O_PATH|O_NOFOLLOW fd of a symlink
    bool found = !link.empty() && link[0] == '/' && stat_path((options_.tree_root + link).c_str(), &on_disk) == 0;
    // A device is the same through any node of it: a container's /dev/null
    // (a node of its own /dev, or a bind of the host's) for the host's that
    // its runtime gave it as stdin.
    bool same_device = found && f.kind() == image::FileDesc::CHAR_DEVICE && S_ISCHR(on_disk.st_mode) &&
                       on_disk.st_rdev == ref.st.st_rdev;
    if (!found || (!same_device && (on_disk.st_dev != ref.st.st_dev || on_disk.st_ino != ref.st.st_ino)))
      return Error(what + ": " + link + " cannot be reopened by its path (moved or replaced)");
  }
  *files_.add_files() = f;
  descriptions_.emplace_back(ref, f.id());
  return f.id();
}

Status FilesDump::describe_removed_cwd(pid_t pid, image::Process& core) {
  std::string source = "/proc/" + std::to_string(pid) + "/cwd";
  struct stat st;
  if (::stat(source.c_str(), &st) < 0) return errno_error("stat " + source);
  if (st.st_nlink != 0) return {};
  std::string what = "pid " + std::to_string(pid) + ": working directory " + core.cwd();
  CRYO_ASSIGN(uint64_t content, add_content(source, st, core.cwd(), what));
  for (const auto& f : files_.files())  // processes in one removed directory share its description
    if (f.kind() == image::FileDesc::DIRECTORY && f.content_id() == content && f.flags() == (O_RDONLY | O_DIRECTORY)) {
      core.set_cwd_file_id(f.id());
      return {};
    }
  auto* f = files_.add_files();
  f->set_id(static_cast<uint32_t>(files_.files_size()));
  f->set_kind(image::FileDesc::DIRECTORY);
  f->set_path(core.cwd());
  f->set_flags(O_RDONLY | O_DIRECTORY);
  f->set_mode(st.st_mode);
  f->set_content_id(content);
  core.set_cwd_file_id(f->id());
  return {};
}

Result<FilesDump::FdRef> FilesDump::fd_ref(pid_t pid, int fd) {
  FdRef ref;
  ref.pid = pid;
  ref.fd = fd;
  ref.reached = {name_fd(pid, fd), pid, 0, name_fd(pid, fd), name_fd(pid, fd)};
  std::string path = fd_path(pid, fd);
  CRYO_ASSIGN(ref.link, read_link(path));
  if (::stat(path.c_str(), &ref.st) < 0) return errno_error("stat " + path);
  CRYO_ASSIGN(std::string info_text, read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd)));
  CRYO_ASSIGN(ref.info, proc::parse_fdinfo(info_text));
  ref.flags = ref.info.flags & ~static_cast<uint32_t>(O_CLOEXEC);
  ref.pos = ref.info.pos;
  ref.info_text = std::move(info_text);
  saw_locks_ = saw_locks_ || ref.info.fields.count("lock") > 0;
  return ref;
}

// A file in flight, described through cryo's copy, which stays open for the
// rest of the dump: shared descriptions are found by kcmp against it, and
// the contents of a deleted file are read through it. A socket in flight is
// saved whole (its queue may carry more files in flight, sockets too), down
// to a bounded depth; one already met (in flight in its own queue, or in a
// cycle of them) is the description already made.
Result<uint32_t> FilesDump::describe_passed(UniqueFd file, const net::Carrier& carrier,
                                            const tree::FrozenTree& tree) {
  CRYO_ASSIGN(FdRef ref, fd_ref(::getpid(), file.get()));
  std::string queue = carrier.depth == 0 ? carrier.root
                     : carrier.depth == 1 ? carrier.name + ", itself in flight in the queue of " + carrier.root
                                          : carrier.name + ", itself in flight " + std::to_string(carrier.depth) +
                                                " queues below " + carrier.root;
  ref.reached = {ref.link + " in flight (SCM_RIGHTS) in the queue of " + queue, carrier.pid, carrier.depth + 1,
                 ref.link, carrier.root};
  if (S_ISSOCK(ref.st.st_mode) && ref.reached.depth > kMaxInFlightDepth) {
    bool known = false;
    for (const auto& [rep, id] : descriptions_)
      known = known || (rep.st.st_dev == ref.st.st_dev && rep.st.st_ino == ref.st.st_ino);
    if (!known)
      return Error(ref.reached.what + ": sockets in flight nested more than " + std::to_string(kMaxInFlightDepth) +
                   " deep, each in the queue of the one before (not supported)");
  }
  CRYO_ASSIGN(uint32_t id, describe(ref, tree));
  passed_.push_back(std::move(file));
  return id;
}

Status FilesDump::dump_fds(const tree::FrozenTree& tree, std::map<pid_t, image::Process>& cores) {
  CRYO_TRY(ttys_.find_ptys(tree, options_.tree_root));
  sockets_.describe_passed_files_with([this, &tree](UniqueFd file, const net::Carrier& carrier) {
    return describe_passed(std::move(file), carrier, tree);
  });
  for (const auto& proc : tree.processes()) {
    if (proc.zombie) continue;
    pid_t pid = proc.pid;
    auto& core = cores.at(pid);
    CRYO_TRY(describe_removed_cwd(pid, core));
    CRYO_ASSIGN(auto fds, proc::list_fds(pid));
    for (int fd : fds) {
      CRYO_ASSIGN(FdRef ref, fd_ref(pid, fd));
      CRYO_ASSIGN(uint32_t id, describe(ref, tree));
      auto* out = core.add_fds();
      out->set_fd(fd);
      out->set_file_id(id);
      out->set_cloexec((ref.info.flags & O_CLOEXEC) != 0);
    }
  }
  CRYO_TRY(ttys_.check_sessions(tree, &files_));
  return sockets_.check_connections(&files_);
}

}  // namespace cryo::files
