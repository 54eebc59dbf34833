// Dumping sockets. The dump works on copies of the task's socket fds
// (pidfd_getfd). TCP connections are read in repair mode after the network
// lock is in place, and stay in repair mode when the tree is killed, so that
// closing them sends nothing to the peer. The guard that undoes both if cryo
// dies is the orchestrator's (core/guard/guard.h): it is started, with
// tcp_sockets() and the lock's name, before lock_and_read().
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/net/netlock.h"
#include "core/net/sock_diag.h"
#include "core/net/sock_kinds.h"
#include "core/net/sock_opts.h"
#include "core/net/tcp_md5.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::net {

struct SocketDumpOptions {
  bool tcp_established = false;
  bool ext_unix_sk = false;  // unix sockets may be connected to peers outside the tree
  bool leave_running = false;
  // --tcp-close: connections are saved without their state and come back
  // closed; nothing is locked for them.
  bool tcp_close = false;
  // --skip-in-flight: a connection waiting in a listener's queue whose client
  // is outside the tree is left out of the image instead of failing the dump.
  bool skip_in_flight = false;
  std::string network_lock = "nftables";
  // The tree's own network namespace (an fd, not owned), where the lock is
  // put; -1: the tree shares cryo's.
  int net_ns = -1;
  // Where the tree's root is seen from cryo (/proc/PID/root) when it has a
  // mount namespace of its own: unix names are looked for there. "" if not.
  std::string tree_root;
};

// A socket as the dump reaches it: held by a process of the tree, or in
// flight (SCM_RIGHTS) in the receive queue of another socket.
struct Carrier {
  std::string what;  // how errors name it: "pid 12 fd 3", or "socket:[...] in flight in the queue of ..."
  pid_t pid;         // the process of the tree it was reached from
  int depth;         // 0 when a process holds it; in flight in a queue at depth n: n + 1
  std::string name;  // itself alone: "pid 12 fd 3" or "socket:[...]"
  std::string root;  // the socket held by pid that the chain of queues starts from: "pid 12 fd 3"
};

// Describes a file found in flight in a receive queue, given as a copy cryo
// holds: its id in the image.
using PassedFileDescriber = std::function<Result<uint32_t>(UniqueFd file, const Carrier& carrier)>;

class SocketDump {
 public:
  explicit SocketDump(SocketDumpOptions options) : options_(std::move(options)) {}
  // Without one, a queue holding files in flight is refused.
  void describe_passed_files_with(PassedFileDescriber describer) { describe_passed_ = std::move(describer); }
  SocketDump(const SocketDump&) = delete;
  ~SocketDump();

  // Describes the socket behind fd of pid into f (kind SOCKET).
  Status describe(pid_t pid, int fd, image::FileDesc* f);
  // The same for a socket in flight, through cryo's own copy `fd`: its
  // queue, its peer and the files in flight it carries in turn are saved
  // like those of a socket a process holds.
  Status describe_in_flight(const Carrier& self, int fd, image::FileDesc* f);
  // After every fd is described: checks that unix peers are in the tree and
  // takes the connections waiting in listeners' queues.
  Status check_connections(image::Files* files);
  // Copies of the TCP connections' sockets (for the guard); empty if none.
  std::vector<int> tcp_sockets() const;
  // Locks the network with a table of that name (net::new_lock_table()) and
  // reads the TCP state of each connection in repair mode.
  Status lock_and_read(image::Files* files, const std::string& table);
  // The dump committed and the tree was killed: keep the lock (the restore
  // removes it) and leave the sockets in repair mode.
  void committed_and_killed() { keep_ = true; }
  // The tree runs on (a failed dump, or --leave-running): sockets leave
  // repair mode and the lock goes. Call before the tree is thawed.
  void resume();

 private:
  struct Tcp {
    std::string who;
    UniqueFd copy;
    uint32_t file_id;
    Connection conn;
    bool repairing = false;
    int reuseaddr = 0;  // leaving repair mode clears it: given back on resume()
  };
  struct Listener {
    std::string who;
    UniqueFd copy;
    image::SockAddr local;
    uint32_t pending;
  };
  // s is a copy of the socket `self` names.
  Status describe_socket(const Carrier& self, UniqueFd s, image::FileDesc* f);
  Status describe_kind(const Carrier& self, UniqueFd s, image::FileDesc* f);
  Status take_pending(image::Files* files);
  std::vector<Listener> listeners_;
  std::vector<UniqueFd> accepted_;
  struct Unix {
    std::string who;
    uint64_t inode, peer;
    std::string peer_name;
  };
  // A connection a listener of the tree has not accepted yet, by its client
  // (the socket in the listener's queue has no inode and no fd reaches it):
  // the client connects to the listener again on restore.
  struct Embryo {
    std::string listener;  // who holds the listener, and its name
    uint64_t client;
  };
  std::vector<Embryo> embryos_;
  std::set<uint64_t> pending_clients_;  // clients of embryos_ found in the tree
  bool is_pending_client(uint64_t inode) const;
  Status describe_unix(const Carrier& self, int s, uint64_t inode, image::Socket* sock);
  Status describe_netlink(const std::string& who, int s, uint64_t inode, image::Socket* sock);
  Status describe_udp(const Carrier& self, int s, image::Socket* sock);
  Status describe_connection(const std::string& who, pid_t pid, int state, UniqueFd s, image::FileDesc* f);

  SocketDumpOptions options_;
  std::vector<Tcp> tcp_;
  std::vector<Unix> unix_;
  std::optional<std::map<uint64_t, UnixInfo>> unix_table_;
  std::optional<std::map<uint64_t, NetlinkInfo>> netlink_table_;
  DatagramState datagram_state_;
  TcpMd5Keys md5_keys_;
  OptionDefaults option_defaults_;
  std::string lock_table_;
  PassedFileDescriber describe_passed_;
  bool keep_ = false;
};

}  // namespace cryo::net
