// Dumping open files: every fd of every process of the tree, one FileDesc per
// open file description (shared ones found with kcmp), pipes with the bytes
// buffered in them, and the files that mappings and /proc/PID/exe name.
#pragma once

#include <sys/stat.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/files/tty.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/net/socket_dump.h"
#include "core/sys/proc.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::image {
class PageWriter;
}
namespace cryo::mm {
struct DumpStats;
}

namespace cryo::files {

struct DumpOptions {
  bool shell_job = false;
  std::vector<std::string> external_ttys;  // --external tty[RDEV:DEV]: terminals outside the tree, handed over on restore
  uint64_t ghost_limit = 256ULL << 20;  // the largest deleted file whose data the image takes
  net::SocketDumpOptions sockets;
  // "/proc/ROOT/root" when the tree has a mount namespace of its own: the
  // paths of its files are the tree's, reached through its root.
  std::string tree_root;
};

class FilesDump {
 public:
  explicit FilesDump(DumpOptions options) : options_(options), sockets_(options.sockets) {}

  // A file a mapping or /proc/PID/exe uses, reached through `source` (a
  // /proc/PID/map_files/... or /proc/PID/exe link); `what` names it in errors.
  Result<uint32_t> add_mapped_file(const std::string& source, bool writable, const std::string& what);
  // The contents of a shared anonymous object; false if already dumped.
  image::Shmem* add_shmem(uint64_t id, bool* is_new);
  // A System V segment a mapping attaches, described from /proc/sysvipc/shm.
  Result<image::SysvShm*> add_sysv_shm(int shmid, const std::string& what, bool* is_new);
  // The tree has an IPC namespace of its own, whose segments (all, with
  // their data) are these: add_sysv_shm finds them there, never new.
  void use_ipc_namespace(google::protobuf::RepeatedPtrField<image::SysvShm>* shms) { ipc_shms_ = shms; }

  // Fills every process's fd table (Process.fds) and the file descriptions.
  Status dump_fds(const tree::FrozenTree& tree, std::map<pid_t, image::Process>& cores);
  // The data of the memfds and deleted files the fds and mappings use; last,
  // once every user of them is known.
  Status dump_contents(image::PageWriter& pages, mm::DumpStats* stats);

  image::Files& files() { return files_; }
  // Whether the fdinfo of any fd showed a lock on its file ("lock:" lines).
  bool saw_locks() const { return saw_locks_; }
  net::SocketDump& sockets() { return sockets_; }

 private:
  struct FdRef {
    pid_t pid = 0;
    int fd = -1;
    struct stat st {};
    std::string link;
    uint32_t flags = 0;
    uint64_t pos = 0;
    proc::FdInfo info;
    std::string info_text;
    // How errors name it and where it was reached from: the fd of a process
    // of the tree (depth 0), or a file in flight through cryo's own copy
    // (pid is cryo's) and the socket whose queue holds it.
    net::Carrier reached{};
  };
  Result<FdRef> fd_ref(pid_t pid, int fd);
  Result<uint32_t> describe(const FdRef& ref, const tree::FrozenTree& tree);
  Result<uint32_t> describe_passed(UniqueFd file, const net::Carrier& carrier, const tree::FrozenTree& tree);
  Status dump_pipe(const FdRef& ref, uint32_t* pipe_id);
  // Marks pipe `pipe_id` as also held by `holder`, outside the tree.
  void note_external_pipe(const std::string& what, const std::string& link, pid_t holder, uint32_t pipe_id);
  // eventfd, epoll, signalfd and timerfd: what the fdinfo says of them.
  Status describe_anon(const FdRef& ref, const std::string& kind, image::FileDesc* f, const tree::FrozenTree& tree);
  // A MAPPED description of path, known by key in mapped_.
  image::FileDesc* add_mapped_desc(const std::string& key, const std::string& path, bool writable,
                                   const struct stat& st);
  // A memfd or deleted file (at `source`, a /proc link to it): its Content id.
  Result<uint64_t> add_content(const std::string& source, const struct stat& st, const std::string& link,
                               const std::string& what);
  // A working directory removed while in use: a DIRECTORY description of
  // its ghost, which the process's stub enters (Process.cwd_file_id).
  Status describe_removed_cwd(pid_t pid, image::Process& core);
  // Who gets the description's SIGIO/SIGURG, read through a copy of the fd.
  Status describe_owner(const FdRef& ref, image::FileDesc* f);
  // A process outside the tree holding the pipe `inode` open, or 0.
  Result<pid_t> outside_pipe_holder(uint64_t inode, const tree::FrozenTree& tree);

  DumpOptions options_;
  bool saw_locks_ = false;
  std::map<pid_t, UniqueFd> pidfds_;  // for pidfd_getfd
  net::SocketDump sockets_;
  TtyDump ttys_;
  image::Files files_;
  std::map<std::string, uint32_t> mapped_;  // "path\0w" -> id
  std::map<uint64_t, size_t> shmems_;       // id -> index in files_.shmems
  std::map<int, size_t> sysv_shms_;         // shmid -> index in files_.sysv_shms
  google::protobuf::RepeatedPtrField<image::SysvShm>* ipc_shms_ = nullptr;
  std::map<uint64_t, uint32_t> pipes_;      // inode -> pipe id
  std::optional<std::map<uint64_t, pid_t>> outside_pipes_;  // pipe inode -> a holder outside the tree
  std::map<std::pair<dev_t, ino_t>, size_t> contents_;  // inode -> index in files_.contents
  std::vector<std::string> content_sources_;           // a /proc link to each content
  std::vector<std::pair<FdRef, uint32_t>> descriptions_;  // a representative fd of each description
  std::vector<UniqueFd> passed_;  // cryo's copies of the files in flight
  std::set<uint32_t> bpf_maps_;  // ids of the BPF maps dumped
};

}  // namespace cryo::files
