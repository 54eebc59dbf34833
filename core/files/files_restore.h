// Restoring open files. The restorer opens every file description, pipe and
// shared memory object once, at fd numbers of its zone (fd_zone.h), before
// it forks the process tree; each process inherits them all and installs the
// ones its fd table names (install_fds), so shared descriptions stay shared.
#pragma once

#include <map>
#include <vector>

#include "core/files/external.h"
#include "core/files/fd_zone.h"
#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/net/socket_restore.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

// Unix sockets that one process of the tree makes itself (before it forks
// its children): a socketpair, or a listener with the connections made
// through it, so that SO_PEERCRED names that process as it did.
struct StubGroup {
  pid_t creator = 0;
  std::vector<uint32_t> ids;  // file ids
};

// A unix listener and connections made through it by other processes: the
// listener's maker listens (clients see it in SO_PEERCRED), each connector
// connects (the accepted end sees it), then the maker accepts.
struct ListenerGroup {
  pid_t creator = 0;
  uint32_t listener = 0;
  struct Connection {
    pid_t connector = 0;
    uint32_t client = 0, server = 0;  // file ids
  };
  std::vector<Connection> connections;
};

class FileObjects {
 public:
  // The caller's fds that stand in for files of the image (--inherit-fd),
  // matched by open_all; closed by close_all, as given to the tree.
  void set_inherit_fds(std::vector<InheritFd> fds) { inherit_fds_ = std::move(fds); }
  // The root of the tree's own mount namespace (an O_PATH fd): files opened
  // by path are looked up there, as the tree sees them.
  void set_tree_root(int fd) { tree_root_ = fd; }
  // Opens everything files.img describes, at fds of the zone; for the stub
  // groups only placeholders are opened, at the fds the creator fills.
  Status open_all(const image::Files& files, const image::ImageDirReader& images, const FdZone& zone,
                  std::vector<StubGroup> stub_groups, std::vector<ListenerGroup> listener_groups = {});
  // Run in stub `pid`, before it forks its children: its listeners, then
  // its connections to listeners (of its own or an ancestor's).
  Status make_listeners_and_connections(pid_t pid, const image::Files& files) const;
  // Run in stub `pid` after it forked its children: accepts the connections
  // made to its listeners, at the server ends' fds.
  Status accept_connections(pid_t pid, const image::Files& files) const;
  // Runs in stub `pid`: makes the groups it creates, at their reserved fds.
  Status make_stub_groups(pid_t pid, const image::Files& files) const;

  // Runs in stub `pid` once its fds are installed: the registrations of the
  // epolls it owns, added through its own fd numbers as they were.
  Status watch_epoll_targets(pid_t pid, const image::Files& files) const;

  int fd_of(uint32_t file_id) const;  // -1 if unknown
  // fd_of as a function, for the files in flight in sockets' queues.
  net::FileFds file_fds() const {
    return [this](uint32_t id) { return fd_of(id); };
  }

  // Runs in stub `pid` right after its setsid(): takes the restored
  // pseudo-terminal its session had as controlling terminal (tty.cpp).
  Status take_controlling_tty(pid_t pid) const;
  // The foreground group of each restored controlling terminal: `leader`
  // runs ioctl(fd, TIOCSPGRP, pgrp_addr) once every group exists; pgrp_addr
  // holds pgrp in every stub (they inherited the restorer's memory).
  struct Foreground {
    pid_t leader;
    int fd;
    uint64_t pgrp_addr;
    pid_t pgrp;
    int index;
  };
  std::vector<Foreground> foreground_groups() const;
  // Locks the pairs that were locked (TIOCSPTLCK), once every stub is up: a
  // locked slave cannot be opened, not even as /dev/tty.
  Status lock_ptys() const;

  // The established TCP connections, still in repair mode (for the guard).
  std::vector<int> repaired_sockets(const image::Files& files) const;
  // Takes them out of repair mode: the last step before the tree is let go.
  Status leave_repair(const image::Files& files) const;
  int shmem_fd(uint64_t shmem_id) const;
  // Closes the restorer's own copies once the tree is let go: a copy kept while
  // cryo waits for the root would keep a pipe from its end of file and a file
  // written at dump time from being executed (ETXTBSY).
  void close_all();

  // Runs in a freshly forked process: makes its fd table the recorded one
  // from the inherited objects, and closes every other fd outside the zone.
  // Async-signal-safe apart from errors.
  static Status install_fds(const image::Process& core, const FileObjects& objects, const FdZone& zone);

 private:
  Result<int> place(UniqueFd fd);  // moves fd into the zone
  Status open_pipe(const image::Files& files, const image::Pipe& pipe);
  Status open_fifo(const image::Files& files, const image::Pipe& pipe);
  Status open_shmem(const image::Shmem& shmem, const image::ImageDirReader& images);
  Result<UniqueFd> open_desc(const image::FileDesc& f);
  Result<UniqueFd> open_in_tree(const std::string& path, int flags) const;
  Result<UniqueFd> open_anon(const image::FileDesc& f);
  Result<UniqueFd> open_inotify(const image::FileDesc& f);
  Status make_content(const image::Content& content, const image::ImageDirReader& images);
  Status open_ptys(const image::Files& files);
  Status open_pty(const image::Files& files, const image::Pty& pty);

  struct PtyHandle {
    pid_t sid = 0, pgrp = 0;
    int control = -1;  // a slave fd of the restorer's (in the zone), for TIOCSCTTY
    std::vector<std::pair<int, int>> currents;  // /dev/tty placeholders: (fd, open flags)
    int master = -1;
    bool lock = false;  // TIOCSPTLCK once the stubs have opened /dev/tty
  };
  std::map<int, PtyHandle> ptys_;  // by pts number

  FdZone zone_;
  std::vector<InheritFd> inherit_fds_;
  int tree_root_ = -1;
  std::map<uint32_t, int> inherited_;  // file id -> the caller's fd standing in for it
  std::map<pid_t, int> external_cttys_;  // session -> its controlling terminal handed over (a placed fd)
  std::vector<StubGroup> stub_groups_;
  std::vector<ListenerGroup> listener_groups_;
  std::vector<UniqueFd> owned_;
  std::map<uint32_t, int> by_file_;
  std::map<uint64_t, int> by_shmem_;
  std::map<uint64_t, UniqueFd> contents_;  // Content id -> the file made from it
};


}  // namespace cryo::files
