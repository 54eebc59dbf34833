#include "core/net/packet.h"

#include <linux/if_packet.h>
#include <linux/packet_diag.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "core/net/packet_ring.h"
#include "core/net/sock_diag.h"

namespace cryo::net {
namespace {

constexpr int kPacketIgnoreOutgoing = 23;

// The options a program sets with setsockopt(SOL_PACKET) and reads back the
// same way; each is kept when it differs from a new socket's. PACKET_VERSION
// comes first, as the kernel wants it before anything that depends on it.
constexpr int kOptions[] = {PACKET_VERSION, PACKET_RESERVE,    PACKET_AUXDATA,     PACKET_ORIGDEV,
                            PACKET_VNET_HDR, PACKET_LOSS,      PACKET_TIMESTAMP,   PACKET_TX_HAS_OFF,
                            PACKET_QDISC_BYPASS, kPacketIgnoreOutgoing};

struct DiagInfo {
  bool found = false;
  packet_diag_info info{};
  std::vector<packet_diag_mclist> memberships;
  std::optional<packet_diag_ring> rx_ring;
  bool tx_ring = false;
  std::optional<uint32_t> fanout;
};

Result<DiagInfo> packet_diag(uint64_t inode) {
  packet_diag_req req{};
  req.sdiag_family = AF_PACKET;
  req.pdiag_show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT;
  DiagInfo out;
  CRYO_TRY(diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
    const auto* m = static_cast<const packet_diag_msg*>(NLMSG_DATA(h));
    if (m->pdiag_ino != inode) return;
    out.found = true;
    for_each_attr<packet_diag_msg>(h, [&](int type, const char* data, size_t size) {
      switch (type) {
        case PACKET_DIAG_INFO:
          if (size >= sizeof out.info) std::memcpy(&out.info, data, sizeof out.info);
          break;
        case PACKET_DIAG_MCLIST:
          for (size_t at = 0; at + sizeof(packet_diag_mclist) <= size; at += sizeof(packet_diag_mclist)) {
            packet_diag_mclist mc;
            std::memcpy(&mc, data + at, sizeof mc);
            out.memberships.push_back(mc);
          }
          break;
        case PACKET_DIAG_RX_RING:
          if (size >= sizeof(packet_diag_ring)) {
            packet_diag_ring ring;
            std::memcpy(&ring, data, sizeof ring);
            out.rx_ring = ring;
          }
          break;
        case PACKET_DIAG_TX_RING:
          out.tx_ring = true;
          break;
        case PACKET_DIAG_FANOUT:
          if (size >= 4) {
            uint32_t f;
            std::memcpy(&f, data, 4);
            out.fanout = f;
          }
          break;
      }
    });
  }).wrap("listing the packet sockets"));
  return out;
}

std::optional<std::string> packet_option(int s, int name) {
  char buf[16];
  socklen_t len = sizeof buf;
  if (::getsockopt(s, SOL_PACKET, name, buf, &len) < 0) return std::nullopt;
  return std::string(buf, len);
}

std::string interface_name(uint32_t ifindex) {
  char name[IF_NAMESIZE] = {};
  if (ifindex == 0 || !::if_indextoname(ifindex, name)) return "";
  return name;
}

// The index on this host of an interface recorded by index and name: the
// name decides (indexes differ between hosts), and it must exist.
Result<uint32_t> interface_index(uint32_t ifindex, const std::string& name) {
  if (ifindex == 0) return 0u;
  if (name.empty()) return Error(EINVAL, "interface " + std::to_string(ifindex) + " without a name in the image");
  unsigned index = ::if_nametoindex(name.c_str());
  if (index == 0) return errno_error("interface " + name);
  return static_cast<uint32_t>(index);
}

}  // namespace

Status describe_packet(const std::string& what, int s, image::Socket* sock) {
  sockaddr_ll local{};
  socklen_t len = sizeof local;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&local), &len) < 0) return errno_error(what + ": getsockname");
  CRYO_ASSIGN(DiagInfo diag, packet_diag(sock->inode()));
  if (!diag.found) return Error(what + ": packet socket " + std::to_string(sock->inode()) + " is not in sock_diag");
  if (diag.tx_ring)
    return Error(what + ": packet socket with a PACKET_TX_RING mmap ring (not supported: the frame the kernel "
                 "sends next is not shown anywhere once every frame was sent)");
  int queued = 0;
  if (::ioctl(s, FIONREAD, &queued) < 0) return errno_error(what + ": FIONREAD");
  if (queued > 0)
    return Error(what + ": packet socket has frames not yet read (" + std::to_string(queued) +
                 " bytes; they cannot be made again: dump again once they are read)");

  auto* p = sock->mutable_packet();
  p->set_ifindex(static_cast<uint32_t>(local.sll_ifindex));
  p->set_ifname(interface_name(p->ifindex()));
  if (p->ifindex() != 0 && p->ifname().empty())
    return Error(what + ": packet socket bound to interface " + std::to_string(p->ifindex()) + ", which has no name");
  p->set_bound_protocol(local.sll_protocol);
  p->set_running(diag.info.pdi_flags & PDI_RUNNING);
  if (diag.rx_ring) CRYO_TRY(describe_rx_ring(what, s, *diag.rx_ring, p->running(), p->mutable_rx_ring()));

  UniqueFd fresh(::socket(AF_PACKET, static_cast<int>(sock->type()) | SOCK_CLOEXEC, 0));
  for (int name : kOptions) {
    auto value = packet_option(s, name);
    if (!value) continue;
    if (fresh.valid() && packet_option(fresh.get(), name) == value) continue;
    auto* o = p->add_options();
    o->set_level(SOL_PACKET);
    o->set_name(name);
    o->set_value(*value);
  }
  if (diag.info.pdi_copy_thresh) {  // set-only: sock_diag alone shows it
    auto* o = p->add_options();
    o->set_level(SOL_PACKET);
    o->set_name(PACKET_COPY_THRESH);
    int thresh = static_cast<int>(diag.info.pdi_copy_thresh);
    o->set_value(std::string(reinterpret_cast<const char*>(&thresh), sizeof thresh));
  }

  for (const auto& mc : diag.memberships) {
    auto* m = p->add_memberships();
    m->set_ifindex(mc.pdmc_index);
    m->set_ifname(interface_name(mc.pdmc_index));
    if (m->ifname().empty())
      return Error(what + ": packet socket membership on interface " + std::to_string(mc.pdmc_index) +
                   ", which has no name");
    m->set_type(mc.pdmc_type);
    m->set_count(mc.pdmc_count);
    m->set_address(std::string(reinterpret_cast<const char*>(mc.pdmc_addr), std::min<size_t>(mc.pdmc_alen, 32)));
  }

  if (diag.fanout) {
    uint32_t type = (*diag.fanout >> 16) & 0xff;
    if (type == PACKET_FANOUT_CBPF || type == PACKET_FANOUT_EBPF)
      return Error(what + ": packet socket in a fanout group steered by a BPF program (not supported: the "
                   "program cannot be read back)");
    p->set_has_fanout(true);
    p->set_fanout(*diag.fanout);
  }
  sock->set_state(p->running() || p->ifindex() ? image::Socket::BOUND : image::Socket::UNBOUND);
  return {};
}

Result<UniqueFd> new_packet_socket(const image::Socket& sock) {
  if (sock.type() != SOCK_RAW && sock.type() != SOCK_DGRAM) return Error(EINVAL, "bad packet socket type");
  UniqueFd s(::socket(AF_PACKET, static_cast<int>(sock.type()) | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket(AF_PACKET)");
  for (const auto& o : sock.packet().options()) {
    if (o.level() != SOL_PACKET || o.value().size() > 16) return Error(EINVAL, "bad packet socket option");
    if (::setsockopt(s.get(), SOL_PACKET, static_cast<int>(o.name()), o.value().data(),
                     static_cast<socklen_t>(o.value().size())) < 0)
      return errno_error("setsockopt SOL_PACKET/" + std::to_string(o.name()));
  }
  // After PACKET_VERSION, PACKET_RESERVE and the others a ring refuses to follow.
  if (sock.packet().has_rx_ring()) CRYO_TRY(restore_rx_ring(s.get(), sock.packet().rx_ring()).wrap("packet ring"));
  return s;
}

Status start_packet_socket(int s, const image::Socket& sock) {
  const auto& p = sock.packet();
  // Memberships first: they take an interface, not a binding.
  for (const auto& m : p.memberships()) {
    packet_mreq mreq{};
    CRYO_ASSIGN(uint32_t index, interface_index(m.ifindex(), m.ifname()));
    mreq.mr_ifindex = static_cast<int>(index);
    mreq.mr_type = static_cast<unsigned short>(m.type());
    if (m.address().size() > sizeof mreq.mr_address) return Error(EINVAL, "bad membership address in the image");
    mreq.mr_alen = static_cast<unsigned short>(m.address().size());
    std::memcpy(mreq.mr_address, m.address().data(), m.address().size());
    if (m.count() > 1024) return Error(EINVAL, "bad membership count in the image");
    for (uint32_t i = 0; i < m.count(); i++)
      if (::setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0)
        return errno_error("PACKET_ADD_MEMBERSHIP on " + m.ifname());
  }
  // A socket that never bound, or bound with protocol 0, receives nothing;
  // binding with the recorded protocol makes it run again.
  if (p.running() || p.ifindex() != 0) {
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = static_cast<uint16_t>(p.running() ? p.bound_protocol() : 0);
    CRYO_ASSIGN(uint32_t index, interface_index(p.ifindex(), p.ifname()));
    addr.sll_ifindex = static_cast<int>(index);
    if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
      return errno_error("bind packet socket" + (p.ifname().empty() ? std::string() : " to " + p.ifname()));
  }
  if (p.has_fanout()) {
    // A unique id the kernel chose is asked for again by its number.
    uint32_t fanout = p.fanout() & ~(static_cast<uint32_t>(PACKET_FANOUT_FLAG_UNIQUEID) << 16);
    if (::setsockopt(s, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof fanout) < 0)
      return errno_error("joining fanout group " + std::to_string(fanout & 0xffff));
  }
  return {};
}

}  // namespace cryo::net
