// What the caller says about the tree's network namespace (CRIU's options).
#pragma once

#include <map>
#include <string>

namespace cryo::ns {

namespace net {
// --external veth[INNER]:OUTER[@BRIDGE] on restore: the peer of INNER.
struct VethPeer {
  std::string name;
  std::string bridge;
};
using VethPeers = std::map<std::string, VethPeer>;  // by the inner end's name
}  // namespace net

struct NetNsDumpOptions {
  bool empty = false;  // --empty-ns net: its configuration is not saved
  std::map<std::string, std::string> externals;  // --external net[INODE]:KEY, by inode
};

struct NetNsRestoreOptions {
  bool empty = false;  // --empty-ns net: a namespace with lo alone, for the caller to set up
  std::string join;    // --join-ns net:PATH (or PID)
  net::VethPeers veths;  // --external veth[INNER]:OUTER[@BRIDGE], --veth-pair INNER=OUTER
  bool weak_sysctls = false;  // --weak-sysctls: a sysctl this kernel lacks is skipped
  // An empty namespace made already, in the tree's user namespace (which
  // must own it): set up instead of a new one (-1: none).
  int made = -1;
};

}  // namespace cryo::ns
