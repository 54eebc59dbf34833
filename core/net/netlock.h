// The network lock: from the freeze until the restore completes, packets of
// the dumped TCP connections are dropped (never answered with RST), so their
// peers only see a pause. One nftables table per dump, named in the image.
#pragma once

#include <string>
#include <vector>

#include "core/image/proto/net.pb.h"
#include "core/sys/result.h"

namespace cryo::net {

struct Connection {
  image::SockAddr local, peer;
};

// Installs the rules; returns the table's name.
Result<std::string> lock_connections(const std::vector<Connection>& connections, const std::string& method);
// Removes a table made by lock_connections; a missing one is fine.
Status unlock_connections(const std::string& table, const std::string& method);

// The nftables script of a lock (exposed for unit tests).
std::string lock_script(const std::string& table, const std::vector<Connection>& connections);

}  // namespace cryo::net
