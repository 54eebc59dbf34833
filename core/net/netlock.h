// The network lock: from the freeze until the restore completes, packets of
// the dumped TCP connections are dropped (never answered with RST), so their
// peers only see a pause. One nftables table per dump, named in the image.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/image/proto/net.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

// Packets with this mark pass the lock: the segments a restore makes to put
// a connection's FINs back (core/net/tcp_states.cpp). CRIU uses the same.
constexpr uint32_t kRepairMark = 0xC114;

struct Connection {
  image::SockAddr local, peer;
};

// A fresh name for a lock, chosen before the lock exists so that the guard
// can be told it first.
std::string new_lock_table();
// Installs the rules under that name; returns it (empty: nothing locked,
// for no connection or method "skip"). net_ns: the network namespace the
// connections live in (an fd; -1: cryo's own).
Result<std::string> lock_connections(const std::vector<Connection>& connections, const std::string& method,
                                     const std::string& table, int net_ns = -1);
// A lock cryo made that is still in place (an nftables table or iptables
// rule mark), and whether the cryo that made it still runs: a dump leaves
// its lock for the restore, so one whose maker is gone waits for a restore
// or for `cryo network-unlock`.
struct LockInfo {
  std::string name;
  pid_t maker = 0;
  bool maker_running = false;
};
Result<std::vector<LockInfo>> list_locks();
// Removes a table made by lock_connections; a missing one is fine.
Status unlock_connections(const std::string& table, const std::string& method, int net_ns = -1);

// Every nft, iptables or ip6tables process cryo runs from now on holds fd
// open (it inherits it), so that whoever holds the other end of that pipe
// sees its end of file only once no such tool runs any more: the guard waits
// for it before it removes a lock that a tool of a killed cryo may still be
// putting in place.
void lock_tools_hold(int fd);

// The nftables script of a lock (exposed for unit tests).
std::string lock_script(const std::string& table, const std::vector<Connection>& connections);

}  // namespace cryo::net
