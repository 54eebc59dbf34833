#include "core/files/tty.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <cstring>

#include "core/files/external.h"
#include "core/files/files_restore.h"
#include "core/sys/fdpass.h"
#include "core/sys/io.h"
#include "core/sys/proc.h"
#include "core/sys/util.h"

namespace cryo::files {
namespace {

constexpr size_t kKernelNcc = 19;         // the c_cc of the kernel's struct termios
constexpr size_t kMaxQueued = 1u << 20;   // more than a pty can hold either way
constexpr unsigned kPtsFirstMajor = 136;  // UNIX98_PTY_SLAVE_MAJOR, 8 majors of 256
constexpr unsigned kPtsMajors = 8;

std::string pts_path(int index) { return "/dev/pts/" + std::to_string(index); }

// The devpts instance /dev/ptmx allocates from.
dev_t host_devpts() {
  struct stat st;
  return ::stat("/dev/pts/ptmx", &st) == 0 ? st.st_dev : 0;
}

int index_of_rdev(dev_t rdev) {
  unsigned major_nr = major(rdev);
  if (major_nr < kPtsFirstMajor || major_nr >= kPtsFirstMajor + kPtsMajors) return -1;
  return static_cast<int>((major_nr - kPtsFirstMajor) * 256 + minor(rdev));
}

image::Termios to_image(const struct termios& t) {
  image::Termios out;
  out.set_iflag(t.c_iflag);
  out.set_oflag(t.c_oflag);
  out.set_cflag(t.c_cflag);
  out.set_lflag(t.c_lflag);
  out.set_line(t.c_line);
  out.set_cc(std::string(reinterpret_cast<const char*>(t.c_cc), kKernelNcc));
  return out;
}

Result<struct termios> from_image(const image::Termios& in) {
  struct termios t;
  std::memset(&t, 0, sizeof t);
  if (in.cc().size() > kKernelNcc) return Error(EINVAL, "termios with " + std::to_string(in.cc().size()) + " control characters");
  t.c_iflag = in.iflag();
  t.c_oflag = in.oflag();
  t.c_cflag = in.cflag();
  t.c_lflag = in.lflag();
  t.c_line = static_cast<cc_t>(in.line());
  std::memcpy(t.c_cc, in.cc().data(), in.cc().size());
  return t;
}

// TCGETS and friends take the kernel's struct termios, a prefix of glibc's.
Status get_termios(int fd, unsigned long request, struct termios* t, const char* what) {
  std::memset(t, 0, sizeof *t);
  if (::ioctl(fd, request, t) < 0) return errno_error(what);
  return {};
}

Status set_termios(int fd, const struct termios& t) {
  if (::ioctl(fd, TCSETS, &t) < 0) return errno_error("TCSETS");
  return {};
}

bool canonical(const struct termios& t) { return (t.c_lflag & ICANON) != 0; }

// Settings under which bytes pushed in with TIOCSTI are stored as they come:
// no echo, no signals, no input mapping. Flow control stays as it was, since
// a change of it would show on a master in packet mode.
struct termios quiet(const struct termios& saved) {
  struct termios t = saved;
  t.c_iflag &= IXON | IXOFF | IUTF8;
  t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOPRT | ECHOKE | ISIG | IEXTEN);
  return t;
}

// Byte values the queued input does not hold, to stand in for the editing
// characters (erase, kill, end of file, end of line) while it is pushed back.
Result<std::vector<char>> spare_bytes(const image::Pty& pty, const struct termios& saved, size_t count) {
  bool used[256] = {};
  used[0] = used['\n'] = true;
  used[saved.c_cc[VSTART]] = used[saved.c_cc[VSTOP]] = true;
  for (const auto& line : pty.lines())
    for (unsigned char c : line) used[c] = true;
  for (unsigned char c : pty.partial()) used[c] = true;
  std::vector<char> out;
  for (int c = 255; c > 0 && out.size() < count; c--)
    if (!used[c]) out.push_back(static_cast<char>(c));
  if (out.size() < count) return Error(EINVAL, "the queued input holds every byte value: its lines cannot be told apart");
  return out;
}

// Pushes bytes into the slave's input queue as if typed (needs CAP_SYS_ADMIN).
Status push_input(int slave, std::string_view bytes) {
  for (char c : bytes)
    if (::ioctl(slave, TIOCSTI, &c) < 0) return errno_error("TIOCSTI");
  return {};
}

// Fills the slave's input queue with what pty.lines and pty.partial hold, each
// line ending as it did: its own end char, or an end of file.
Status feed_input(int slave, const image::Pty& pty, const struct termios& saved) {
  if (pty.lines().empty() && pty.partial().empty()) return {};
  struct termios t = quiet(saved);
  if (canonical(saved)) {
    CRYO_ASSIGN(auto spare, spare_bytes(pty, saved, 4));
    t.c_cc[VERASE] = static_cast<cc_t>(spare[0]);
    t.c_cc[VKILL] = static_cast<cc_t>(spare[1]);
    t.c_cc[VEOF] = static_cast<cc_t>(spare[2]);
    for (const auto& line : pty.lines()) {
      unsigned char last = line.empty() ? 0 : static_cast<unsigned char>(line.back());
      bool newline = last == '\n';
      bool eol = last != 0 && !newline &&
                 (last == saved.c_cc[VEOL] || ((saved.c_lflag & IEXTEN) && last == saved.c_cc[VEOL2]));
      t.c_cc[VEOL] = eol ? last : static_cast<cc_t>(spare[3]);
      CRYO_TRY(set_termios(slave, t));
      CRYO_TRY(push_input(slave, line));
      if (!newline && !eol) CRYO_TRY(push_input(slave, std::string_view(&spare[2], 1)));
    }
    t.c_cc[VEOL] = static_cast<cc_t>(spare[3]);
  }
  CRYO_TRY(set_termios(slave, t));
  return push_input(slave, pty.partial());
}

// Puts output back in the master's queue: written on the slave without output
// processing, since it was processed once already.
Status feed_output(int slave, const std::string& bytes, const struct termios& saved) {
  if (bytes.empty()) return {};
  struct termios t = saved;
  t.c_oflag &= ~static_cast<tcflag_t>(OPOST);
  CRYO_TRY(set_termios(slave, t));
  size_t done = 0;
  for (int waits = 0; done < bytes.size();) {
    ssize_t n = ::write(slave, bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0 || errno == EAGAIN) {
      if (++waits > 200) return Error(EAGAIN, "the master's queue has no room (output stopped with ^S?)");
      struct pollfd p = {slave, POLLOUT, 0};
      ::poll(&p, 1, 10);
    } else if (errno != EINTR) {
      return errno_error("write to the slave");
    }
  }
  return {};
}

// Both queues back, and the settings as they were.
Status put_back(int slave, const image::Pty& pty, const struct termios& saved) {
  Status out = feed_output(slave, pty.to_master(), saved);
  Status in = feed_input(slave, pty, saved);
  Status settings = set_termios(slave, saved);
  if (!out.ok()) return out;
  if (!in.ok()) return in;
  return settings;
}

// The input the slave has not read: complete lines one read(2) each, then
// (with the line discipline made non-canonical) the rest.
Status read_input(int slave, const struct termios& saved, image::Pty* pty) {
  std::string buf(8192, '\0');
  size_t total = 0;
  auto take = [&](ssize_t n) -> Status {
    total += static_cast<size_t>(n) + 1;
    if (total > kMaxQueued) return Error(EFBIG, "more input queued on the slave than a terminal holds");
    return {};
  };
  if (canonical(saved)) {
    for (;;) {
      ssize_t n = ::read(slave, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0) return errno_error("read the slave's input");
      pty->add_lines(buf.data(), static_cast<size_t>(n));  // 0: an end of file alone
      CRYO_TRY(take(n));
    }
  }
  struct termios t = saved;
  t.c_lflag &= ~static_cast<tcflag_t>(ICANON);
  t.c_cc[VMIN] = 0;
  t.c_cc[VTIME] = 0;
  CRYO_TRY(set_termios(slave, t));
  for (;;) {
    ssize_t n = ::read(slave, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (n < 0 && errno == EAGAIN)) break;
    if (n < 0) return errno_error("read the slave's input");
    pty->mutable_partial()->append(buf.data(), static_cast<size_t>(n));
    CRYO_TRY(take(n));
  }
  return {};
}

// The output the master has not read, through the task's own description
// (a master has only one): read only what poll says is there.
Status read_output(int master, bool packet, image::Pty* pty) {
  char buf[4097];
  for (;;) {
    struct pollfd p = {master, POLLIN, 0};
    int r = ::poll(&p, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll the master");
    if (!(p.revents & POLLIN)) break;
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (n < 0 && (errno == EAGAIN || errno == EIO))) break;
    if (n < 0) return errno_error("read the master's queue");
    size_t skip = 0;
    if (packet) {  // each read starts with a status byte, TIOCPKT_DATA for data
      if (buf[0] != TIOCPKT_DATA) return Error("a packet-mode status came up while the master was read");
      skip = 1;
    }
    pty->mutable_to_master()->append(buf + skip, static_cast<size_t>(n) - skip);
    if (pty->to_master().size() > kMaxQueued) return Error(EFBIG, "more output queued on the master than a terminal holds");
  }
  return {};
}

// Everything of one pair, through the master (a copy of the task's fd) and a
// slave description of our own, opened at path.
Status save_pty(int master, int index, bool slave_in_tree, const std::string& path, image::Pty* out) {
  struct stat node;
  if (::stat(path.c_str(), &node) < 0) return errno_error("stat " + path);
  out->set_index(index);
  out->set_mode(node.st_mode & 07777);
  out->set_uid(node.st_uid);
  out->set_gid(node.st_gid);

  struct pollfd p = {master, POLLIN | POLLPRI, 0};
  if (::poll(&p, 1, 0) < 0) return errno_error("poll the master");
  bool slave_closed = (p.revents & POLLHUP) != 0;
  if (!slave_closed && !slave_in_tree)
    return Error("its slave " + path + " has never been opened: what is queued for it cannot be read without "
                 "opening it (not supported: dump again once the slave is open)");
  out->set_slave_closed(slave_closed);
  int value = 0;
  if (::ioctl(master, TIOCGPKT, &value) < 0) return errno_error("TIOCGPKT");
  out->set_packet(value != 0);
  if (value && (p.revents & POLLPRI))
    return Error("a packet-mode status the master has not read (not supported: dump again once it has read it)");
  if (::ioctl(master, TIOCGPTLCK, &value) < 0) return errno_error("TIOCGPTLCK");
  out->set_locked_pty(value != 0);
  pid_t sid = 0, pgrp = 0;
  if (::ioctl(master, TIOCGSID, &sid) < 0) {
    if (errno != ENOTTY) return errno_error("TIOCGSID");
    sid = 0;  // the controlling terminal of no session
  }
  if (sid != 0 && ::ioctl(master, TIOCGPGRP, &pgrp) < 0) return errno_error("TIOCGPGRP");
  out->set_sid(sid);
  out->set_pgrp(pgrp);

  // A slave of our own, to read and refill the input queue (a locked pair is
  // unlocked for as long as it takes to open it).
  int unlock = 0, lock = 1;
  if (out->locked_pty() && ::ioctl(master, TIOCSPTLCK, &unlock) < 0) return errno_error("TIOCSPTLCK");
  auto opened = open_file(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (out->locked_pty()) ::ioctl(master, TIOCSPTLCK, &lock);
  CRYO_ASSIGN(UniqueFd slave, std::move(opened));
  struct stat st;
  if (::fstat(slave.get(), &st) < 0 || st.st_rdev != node.st_rdev) return Error(path + " is not the master's slave");
  int ldisc = 0;
  if (::ioctl(slave.get(), TIOCGETD, &ldisc) < 0) return errno_error("TIOCGETD");
  if (ldisc != N_TTY) return Error("line discipline " + std::to_string(ldisc) + " (only N_TTY is supported)");
  struct termios saved, locked, none;
  CRYO_TRY(get_termios(slave.get(), TCGETS, &saved, "TCGETS"));
  if (saved.c_lflag & EXTPROC) return Error("external line editing (EXTPROC) is not supported");
  CRYO_TRY(get_termios(slave.get(), TIOCGLCKTRMIOS, &locked, "TIOCGLCKTRMIOS"));
  struct winsize ws{};
  if (::ioctl(slave.get(), TIOCGWINSZ, &ws) < 0) return errno_error("TIOCGWINSZ");
  if (::ioctl(slave.get(), TIOCGEXCL, &value) < 0) return errno_error("TIOCGEXCL");
  out->set_exclusive(value != 0);
  *out->mutable_termios() = to_image(saved);
  *out->mutable_locked() = to_image(locked);
  out->set_rows(ws.ws_row);
  out->set_cols(ws.ws_col);
  out->set_xpixel(ws.ws_xpixel);
  out->set_ypixel(ws.ws_ypixel);

  // The queued bytes: read both ways, then put back at once, so that the
  // tree (running on after -R or a failed dump) finds them as they were.
  // Locked settings would keep the temporary ones from applying.
  std::memset(&none, 0, sizeof none);
  if (::ioctl(slave.get(), TIOCSLCKTRMIOS, &none) < 0) return errno_error("TIOCSLCKTRMIOS");
  Status read = read_input(slave.get(), saved, out);
  if (read.ok()) read = read_output(master, out->packet(), out);
  Status back = put_back(slave.get(), *out, saved);
  if (::ioctl(slave.get(), TIOCSLCKTRMIOS, &locked) < 0 && back.ok()) back = errno_error("TIOCSLCKTRMIOS");
  if (!read.ok()) return read;
  if (!back.ok()) return std::move(back).error().wrap("putting the queued bytes back");
  return {};
}

// The device number /proc/PID/stat gives as tty_nr.
dev_t decode_tty_nr(uint32_t nr) { return makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00)); }

}  // namespace

Result<PtyPair> open_pty_pair() {
  PtyPair pair;
  pair.master = UniqueFd(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pair.master.valid()) return errno_error("open /dev/ptmx");
  if (::unlockpt(pair.master.get()) < 0) return errno_error("unlockpt");
  char name[64];
  if (::ptsname_r(pair.master.get(), name, sizeof name) != 0) return errno_error("ptsname");
  pair.slave_path = name;
  pair.slave = UniqueFd(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pair.slave.valid()) return errno_error("open " + pair.slave_path);
  return pair;
}

std::string stdio_terminal_key(pid_t pid) {
  for (int fd = 0; fd < 3; fd++) {
    struct stat st;
    std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
    if (::stat(link.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 &&
        major(st.st_rdev) <= 143)
      return tty_key(st.st_rdev, st.st_dev);
  }
  return "";
}

bool is_pty_master(const struct stat& st) {
  return S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2;
}

int TtyDump::slave_index(const struct stat& st) const {
  if (!S_ISCHR(st.st_mode) || st.st_dev != devpts_) return -1;
  return index_of_rdev(st.st_rdev);
}

std::string TtyDump::slave_path(int index) const {
  return devpts_dir_.empty() ? pts_path(index) : tree_root_ + devpts_dir_ + "/" + std::to_string(index);
}

namespace {

// The devpts instance of a master, and where its holder sees it mounted:
// through an O_PATH description of its slave, which opens no terminal.
Result<std::pair<dev_t, std::string>> devpts_of(int master) {
  UniqueFd peer(::ioctl(master, TIOCGPTPEER, O_PATH | O_CLOEXEC));
  if (!peer.valid()) return errno_error("TIOCGPTPEER");
  struct stat st;
  if (::fstat(peer.get(), &st) < 0) return errno_error("fstat of the slave");
  CRYO_ASSIGN(std::string path, read_link("/proc/self/fd/" + std::to_string(peer.get())));
  size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == 0 || slash == std::string::npos || path.ends_with(" (deleted)"))
    return Error("its slave is at " + path + ", not in a devpts the tree sees");
  return std::make_pair(st.st_dev, path.substr(0, slash));
}

}  // namespace

Status TtyDump::find_ptys(const tree::FrozenTree& tree, const std::string& tree_root) {
  tree_root_ = tree_root;
  devpts_ = host_devpts();
  struct Held {
    pid_t pid;
    int fd;
    struct stat st;
  };
  std::vector<Held> held;  // the character devices the tree holds
  for (const auto& p : tree.processes()) {
    if (p.zombie) continue;
    CRYO_ASSIGN(auto fds, proc::list_fds(p.pid));
    for (int fd : fds) {
      Held h{p.pid, fd, {}};
      std::string path = "/proc/" + std::to_string(p.pid) + "/fd/" + std::to_string(fd);
      if (::stat(path.c_str(), &h.st) == 0 && S_ISCHR(h.st.st_mode)) held.push_back(h);
    }
  }
  // The masters first: they tell which devpts instance the slaves are of.
  std::string first;  // a master of that instance
  for (const auto& h : held) {
    if (!is_pty_master(h.st)) continue;
    CRYO_ASSIGN(UniqueFd master, copy_fd(h.pid, h.fd));
    int index = -1;
    if (::ioctl(master.get(), TIOCGPTN, &index) < 0) continue;  // refused by describe_master
    std::string what = pid_str(h.pid) + " fd " + std::to_string(h.fd);
    CRYO_ASSIGN(auto instance, devpts_of(master.get()).wrap(what));
    if (!first.empty() && instance.first != devpts_)
      return Error(what + ": a pseudo-terminal master of another devpts instance than " + first +
                   "'s (not supported: the tree's ptys must be of one devpts)");
    if (first.empty() && instance.first != devpts_) {
      if (tree_root.empty())
        return Error(what + ": a pseudo-terminal master of a devpts instance at " + instance.second +
                     " that is not the host's, in cryo's mount namespace (not supported)");
      devpts_dir_ = instance.second;
    }
    devpts_ = instance.first;
    first = what;
    masters_.emplace(index, std::make_pair(h.pid, h.fd));
  }
  for (const auto& h : held)
    if (int index = slave_index(h.st); index >= 0) slaves_.emplace(index, std::make_pair(h.pid, h.fd));
  if (masters_.empty()) return {};
  // Who outside the tree holds a slave of them.
  outside_.emplace();
  DIR* dir = ::opendir("/proc");
  if (!dir) return errno_error("opendir /proc");
  while (struct dirent* d = ::readdir(dir)) {
    char* end;
    long pid = std::strtol(d->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || tree.contains(static_cast<pid_t>(pid)) || pid == ::getpid()) continue;
    auto fds = proc::list_fds(static_cast<pid_t>(pid));
    if (!fds.ok()) continue;
    for (int fd : *fds) {
      struct stat st;
      std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
      int index = ::stat(path.c_str(), &st) == 0 ? slave_index(st) : -1;
      if (index >= 0 && masters_.count(index)) outside_->emplace(index, static_cast<pid_t>(pid));
    }
  }
  ::closedir(dir);
  return {};
}

Status TtyDump::describe_master(pid_t pid, int fd, const std::string& link, image::FileDesc* f, image::Files* files) {
  if (link != "/dev/ptmx" && link != "/dev/pts/ptmx")
    return Error("pseudo-terminal master " + link + " of another devpts instance (not supported)");
  CRYO_ASSIGN(UniqueFd master, copy_fd(pid, fd));
  int index = -1;
  if (::ioctl(master.get(), TIOCGPTN, &index) < 0) return errno_error("TIOCGPTN of " + link);
  std::string what = "pseudo-terminal master of " + pts_path(index);
  if (outside_)
    if (auto it = outside_->find(index); it != outside_->end())
      return Error(what + ": its slave is open in pid " + std::to_string(it->second) +
                   ", outside the tree (not supported: dump the tree that holds both)");
  f->set_kind(image::FileDesc::PTY_MASTER);
  f->set_pty_index(index);
  image::Pty* pty = files->add_ptys();
  pty->set_devpts(devpts_dir_);
  return save_pty(master.get(), index, slaves_.count(index) > 0, slave_path(index), pty).wrap(what);
}

Result<bool> TtyDump::describe(pid_t pid, int fd, const struct stat& st, const std::string& link, image::FileDesc* f,
                               image::Files* files) {
  if (is_pty_master(st)) {
    CRYO_TRY(describe_master(pid, fd, link, f, files));
    return true;
  }
  int index = slave_index(st);
  if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 0) {
    // /dev/tty stands for the terminal that was the opener's controlling
    // one; TIOCGDEV tells which.
    CRYO_ASSIGN(UniqueFd copy, copy_fd(pid, fd));
    unsigned int dev = 0;
    if (::ioctl(copy.get(), TIOCGDEV, &dev) < 0) return errno_error("TIOCGDEV of /dev/tty");
    index = index_of_rdev(makedev((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00)));
    if (index < 0 || !has_master(index)) return false;  // the shell's terminal
    f->set_kind(image::FileDesc::TTY_CURRENT);
    f->set_pty_index(index);
    current_.emplace_back(pid, index);
    return true;
  }
  if (index < 0 || !has_master(index)) return false;
  f->set_kind(image::FileDesc::PTY_SLAVE);
  f->set_pty_index(index);
  return true;
}

namespace {

// The files of an external terminal of device rdev (named by --external, not
// a shell job's): a container's console, whose master its runtime holds.
std::vector<image::FileDesc*> external_terminal(image::Files* files, dev_t rdev) {
  char prefix[40];
  snprintf(prefix, sizeof prefix, "tty[%llx:", static_cast<unsigned long long>(rdev));
  std::vector<image::FileDesc*> out;
  for (auto& f : *files->mutable_files())
    if (f.kind() == image::FileDesc::INHERITED && f.inherit_fd() == -1 && f.inherit_key().starts_with(prefix))
      out.push_back(&f);
  return out;
}

}  // namespace

Status TtyDump::check_sessions(const tree::FrozenTree& tree, image::Files* files_out) const {
  const image::Files& files = *files_out;
  std::map<int, const image::Pty*> by_index;
  for (const auto& pty : files.ptys()) by_index[pty.index()] = &pty;
  auto alive_in_tree = [&](pid_t pid) {
    const auto* p = tree.find(pid);
    return p && !p->zombie;
  };
  for (const auto& p : tree.processes()) {
    if (p.zombie || p.stat.tty_nr == 0) continue;
    dev_t rdev = decode_tty_nr(p.stat.tty_nr);
    auto it = by_index.find(index_of_rdev(rdev));
    if (it != by_index.end()) continue;  // checked with its pty below
    // A session made in the tree cannot get back a terminal the tree does not
    // hold, but for one it is handed over (--external, then --inherit-fd).
    if (!tree.contains(p.stat.sid)) continue;
    auto external = external_terminal(files_out, rdev);
    if (external.empty())
      return Error(pid_str(p.pid) + ": its controlling terminal (device " + std::to_string(major(rdev)) + ":" +
                   std::to_string(minor(rdev)) + ") is not a pseudo-terminal whose master is in the tree (not "
                   "supported: only a shell job's terminal may lie outside, or one the tree holds that is named by "
                   "--external tty[RDEV:DEV])");
    const auto* leader = tree.find(p.stat.sid);
    if (p.stat.tpgid != p.stat.sid || !leader || leader->zombie)
      return Error(pid_str(p.pid) + ": its controlling terminal " + external.front()->inherit_key() +
                   " is external and its foreground group " + std::to_string(p.stat.tpgid) +
                   " is not its session's leader's (not supported yet)");
    for (auto* f : external) {
      if (f->ctty_sid() != 0 && f->ctty_sid() != p.stat.sid)
        return Error(pid_str(p.pid) + ": " + f->inherit_key() + " is the controlling terminal of two sessions");
      f->set_ctty_sid(p.stat.sid);
    }
  }
  for (const auto& [index, pty] : by_index) {
    std::string what = pts_path(index);
    if (pty->sid() == 0) continue;
    if (!alive_in_tree(pty->sid()))
      return Error(what + " is the controlling terminal of session " + std::to_string(pty->sid()) +
                   ", whose leader is not in the tree (not supported)");
    bool group_seen = pty->pgrp() == 0;
    for (const auto& p : tree.processes()) {
      if (p.zombie || p.stat.sid != pty->sid()) continue;
      group_seen = group_seen || p.stat.pgid == pty->pgrp();
      if (index_of_rdev(decode_tty_nr(p.stat.tty_nr)) != index)
        return Error(pid_str(p.pid) + " is in session " + std::to_string(pty->sid()) + " but has not its controlling terminal " +
                     what + " (not supported)");
    }
    if (!group_seen)
      return Error("the foreground process group " + std::to_string(pty->pgrp()) + " of " + what +
                   " has no process in the tree (not supported)");
  }
  // /dev/tty is opened again by the session leader once it has its terminal
  // back: its holders must be of that session (they descend from the leader).
  for (const auto& [pid, index] : current_) {
    auto it = by_index.find(index);
    const auto* p = tree.find(pid);
    if (it == by_index.end() || it->second->sid() == 0 || !p || p->stat.sid != it->second->sid())
      return Error(pid_str(pid) + " holds /dev/tty opened on " + pts_path(index) +
                   ", which is not the controlling terminal of its session (not supported)");
  }
  return {};
}

// ---- restore ----------------------------------------------------------------

namespace {

// devpts hands out the lowest free number: open masters until one gets `index`.
Result<UniqueFd> allocate_master(int index, const std::function<Result<UniqueFd>()>& open_ptmx) {
  std::vector<UniqueFd> lower;
  for (int i = 0; i <= index; i++) {
    CRYO_ASSIGN(UniqueFd fd, open_ptmx());
    int got = -1;
    if (::ioctl(fd.get(), TIOCGPTN, &got) < 0) return errno_error("TIOCGPTN");
    if (got == index) return fd;
    if (got > index) break;
    lower.push_back(std::move(fd));
  }
  return Error(EEXIST, pts_path(index) + " is in use by another terminal");
}

}  // namespace

Status FileObjects::open_pty(const image::Files& files, const image::Pty& pty) {
  int index = pty.index();
  if (index < 0 || index >= static_cast<int>(kPtsMajors * 256 * 256)) return Error(EINVAL, "bad pts number");
  if (ptys_.count(index)) return Error(EINVAL, "the image holds the pair twice");
  const image::FileDesc* master_desc = nullptr;
  std::vector<const image::FileDesc*> slaves, currents;
  for (const auto& f : files.files()) {
    if (f.pty_index() != index) continue;
    if (f.kind() == image::FileDesc::PTY_MASTER) {
      if (master_desc) return Error(EINVAL, "the image gives it two masters");
      master_desc = &f;
    } else if (f.kind() == image::FileDesc::PTY_SLAVE) {
      slaves.push_back(&f);
    } else if (f.kind() == image::FileDesc::TTY_CURRENT) {
      currents.push_back(&f);
    }
  }
  if (!master_desc) return Error(EINVAL, "the image holds no master for it");
  CRYO_ASSIGN(struct termios saved, from_image(pty.termios()));
  CRYO_ASSIGN(struct termios locked, from_image(pty.locked()));

  // A pair of the tree's own devpts is made in the one its mount namespace
  // has now, through the tree's root.
  const std::string& devpts = pty.devpts();
  if (!devpts.empty() && (tree_root_ < 0 || devpts[0] != '/'))
    return Error(EINVAL, "its devpts at " + devpts + " is not one of the tree's mount namespace");
  auto open_slave = [&](const std::string& path, int flags) {
    return devpts.empty() ? open_file(path, flags) : open_in_tree(path, flags);
  };
  CRYO_ASSIGN(UniqueFd master, allocate_master(index, [&] {
                return devpts.empty() ? open_file("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
                                      : open_in_tree(devpts + "/ptmx", O_RDWR | O_NOCTTY);
              }));
  int unlock = 0, one = 1;
  if (::ioctl(master.get(), TIOCSPTLCK, &unlock) < 0) return errno_error("TIOCSPTLCK");
  std::string path = devpts.empty() ? pts_path(index) : devpts + "/" + std::to_string(index);
  CRYO_ASSIGN(UniqueFd control, open_slave(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  CRYO_TRY(put_back(control.get(), pty, saved).wrap("its queued bytes"));
  struct winsize ws{};
  ws.ws_row = static_cast<unsigned short>(pty.rows());
  ws.ws_col = static_cast<unsigned short>(pty.cols());
  ws.ws_xpixel = static_cast<unsigned short>(pty.xpixel());
  ws.ws_ypixel = static_cast<unsigned short>(pty.ypixel());
  if (::ioctl(control.get(), TIOCSWINSZ, &ws) < 0) return errno_error("TIOCSWINSZ");
  if (::ioctl(control.get(), TIOCSLCKTRMIOS, &locked) < 0) return errno_error("TIOCSLCKTRMIOS");
  if (::fchown(control.get(), pty.uid(), pty.gid()) < 0) return errno_error("chown " + path);
  if (::fchmod(control.get(), pty.mode() & 07777) < 0) return errno_error("chmod " + path);
  constexpr uint32_t kOpenOnly = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY;
  PtyHandle& handle = ptys_[index];
  for (const auto* f : currents) {  // opened by the session leader (take_controlling_tty)
    if (pty.sid() == 0) return Error(EINVAL, "/dev/tty names it, but it is the controlling terminal of no session");
    CRYO_ASSIGN(UniqueFd placeholder, open_file("/dev/null", O_RDONLY | O_CLOEXEC));
    CRYO_ASSIGN(by_file_[f->id()], place(std::move(placeholder)));
    handle.currents.emplace_back(by_file_[f->id()], static_cast<int>(f->flags() & ~kOpenOnly));
  }
  for (const auto* f : slaves) {
    CRYO_ASSIGN(UniqueFd fd, open_slave(path, static_cast<int>((f->flags() & ~kOpenOnly) | O_NOCTTY)));
    CRYO_ASSIGN(by_file_[f->id()], place(std::move(fd)));
  }
  if (pty.exclusive() && ::ioctl(control.get(), TIOCEXCL) < 0) return errno_error("TIOCEXCL");
  if (pty.packet() && ::ioctl(master.get(), TIOCPKT, &one) < 0) return errno_error("TIOCPKT");
  if (::fcntl(master.get(), F_SETFL, master_desc->flags() & ~kOpenOnly) < 0) return errno_error("F_SETFL master");
  CRYO_ASSIGN(by_file_[master_desc->id()], place(std::move(master)));
  handle.sid = pty.sid();
  handle.pgrp = pty.pgrp();
  handle.master = by_file_[master_desc->id()];
  handle.lock = pty.locked_pty();
  // Kept for the session leader to take it as its controlling terminal;
  // otherwise closed here, so that a slave closed at dump time is closed
  // again (the master reads EIO once its queue is empty).
  if (pty.sid() != 0) {
    CRYO_ASSIGN(handle.control, place(std::move(control)));
  }
  return {};
}

Status FileObjects::open_ptys(const image::Files& files) {
  for (const auto& pty : files.ptys()) CRYO_TRY(open_pty(files, pty).wrap("pseudo-terminal " + pts_path(pty.index())));
  return {};
}

Status FileObjects::take_controlling_tty(pid_t pid) const {
  if (auto given = external_cttys_.find(pid); given != external_cttys_.end() && ::ioctl(given->second, TIOCSCTTY, 0) < 0)
    return errno_error("TIOCSCTTY on the terminal handed over by --inherit-fd");
  for (const auto& [index, handle] : ptys_) {
    if (handle.sid != pid || handle.control < 0) continue;
    if (::ioctl(handle.control, TIOCSCTTY, 0) < 0) return errno_error("TIOCSCTTY " + pts_path(index));
    // /dev/tty descriptions, opened now that it names this terminal, in
    // place of their placeholders before any child inherits them.
    for (const auto& [fd, flags] : handle.currents) {
      int opened = ::open("/dev/tty", flags | O_NOCTTY | O_CLOEXEC);
      if (opened < 0) return errno_error("open /dev/tty");
      int placed = ::dup3(opened, fd, O_CLOEXEC);
      ::close(opened);
      if (placed < 0) return errno_error("dup3 /dev/tty");
    }
  }
  return {};
}

Status FileObjects::lock_ptys() const {
  int one = 1;
  for (const auto& [index, handle] : ptys_)
    if (handle.lock && ::ioctl(handle.master, TIOCSPTLCK, &one) < 0) return errno_error("TIOCSPTLCK " + pts_path(index));
  return {};
}

std::vector<FileObjects::Foreground> FileObjects::foreground_groups() const {
  std::vector<Foreground> out;
  for (const auto& [index, handle] : ptys_)
    if (handle.sid != 0 && handle.control >= 0 && handle.pgrp != 0 && handle.pgrp != handle.sid)
      out.push_back({handle.sid, handle.control, reinterpret_cast<uint64_t>(&handle.pgrp), handle.pgrp, index});
  return out;
}

}  // namespace cryo::files
