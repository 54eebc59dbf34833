#include "core/net/packet_ring.h"

#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <tuple>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/log.h"

namespace cryo::net {
namespace {

// The frames the restore sends on lo to walk the kernel to its next frame
// carry this ethertype; once there, the socket waits bound to the other
// until it is bound as recorded. Nothing else should send either.
constexpr uint16_t kAdvanceProtocol = 0xc0de;
constexpr uint16_t kParkProtocol = 0xc0df;
// The most bytes of frames not yet read a dump keeps (files.img holds them).
constexpr uint64_t kMaxSaved = 64u << 20;
// A V3 block starts with its descriptor, then the private area (8-aligned).
constexpr uint64_t kBlockHeader = (sizeof(tpacket_block_desc) + 7) & ~7ULL;

std::string str(uint64_t v) { return std::to_string(v); }

// The ring mapped into cryo itself: the kernel's memory, as the process sees it.
class RingMap {
 public:
  static Result<RingMap> map(int s, uint64_t bytes, int prot) {
    void* at = ::mmap(nullptr, bytes, prot, MAP_SHARED, s, 0);
    if (at == MAP_FAILED) return errno_error("mmap of the packet ring");
    return RingMap(static_cast<uint8_t*>(at), bytes);
  }
  RingMap(RingMap&& o) noexcept : at_(std::exchange(o.at_, nullptr)), bytes_(o.bytes_) {}
  ~RingMap() {
    if (at_) ::munmap(at_, bytes_);
  }
  uint8_t* at(uint64_t offset) const { return at_ + offset; }
  uint64_t bytes() const { return bytes_; }

 private:
  RingMap(uint8_t* at, uint64_t bytes) : at_(at), bytes_(bytes) {}
  uint8_t* at_;
  uint64_t bytes_;
};

uint64_t frame_offset(const image::PacketRing& ring, uint32_t i) {
  uint32_t per_block = ring.block_size() / ring.frame_size();
  return static_cast<uint64_t>(i / per_block) * ring.block_size() + static_cast<uint64_t>(i % per_block) * ring.frame_size();
}

uint64_t header_size(uint32_t version) {
  return version == TPACKET_V1 ? sizeof(tpacket_hdr) : sizeof(tpacket2_hdr);
}

RingFrame read_frame(const RingMap& m, const image::PacketRing& ring, uint32_t i) {
  const uint8_t* p = m.at(frame_offset(ring, i));
  RingFrame f;
  if (ring.version() == TPACKET_V1) {
    tpacket_hdr h;
    std::memcpy(&h, p, sizeof h);
    f.status = static_cast<uint32_t>(h.tp_status);
    f.filled = h.tp_len != 0 || h.tp_sec != 0;
    f.time = {h.tp_sec, static_cast<uint64_t>(h.tp_usec) * 1000};
  } else {
    tpacket2_hdr h;
    std::memcpy(&h, p, sizeof h);
    f.status = h.tp_status;
    f.filled = h.tp_len != 0 || h.tp_sec != 0;
    f.time = {h.tp_sec, h.tp_nsec};
  }
  return f;
}

void set_frame_status(const RingMap& m, const image::PacketRing& ring, uint32_t i, uint32_t status) {
  uint8_t* p = m.at(frame_offset(ring, i));
  if (ring.version() == TPACKET_V1) {
    unsigned long s = status;
    std::memcpy(p + offsetof(tpacket_hdr, tp_status), &s, sizeof s);
  } else {
    std::memcpy(p + offsetof(tpacket2_hdr, tp_status), &status, sizeof status);
  }
}

tpacket_hdr_v1 read_block(const RingMap& m, const image::PacketRing& ring, uint32_t b) {
  tpacket_block_desc d;
  std::memcpy(&d, m.at(static_cast<uint64_t>(b) * ring.block_size()), sizeof d);
  return d.hdr.bh1;
}

void write_block(const RingMap& m, const image::PacketRing& ring, uint32_t b, const tpacket_hdr_v1& h) {
  std::memcpy(m.at(static_cast<uint64_t>(b) * ring.block_size() + offsetof(tpacket_block_desc, hdr)), &h, sizeof h);
}

void save(const RingMap& m, uint64_t offset, uint64_t size, image::PacketRing* out) {
  auto* piece = out->add_saved();
  piece->set_offset(offset);
  piece->set_data(reinterpret_cast<const char*>(m.at(offset)), size);
}

Status check_geometry(const image::PacketRing& ring) {
  bool v3 = ring.version() == TPACKET_V3;
  if (ring.version() > TPACKET_V3 || ring.block_size() == 0 || ring.block_size() % 4096 || ring.block_nr() == 0 ||
      ring.frame_size() == 0 || ring.block_size() / ring.frame_size() == 0 ||
      ring_bytes(ring) > (1ULL << 40) || (!v3 && ring.head() >= ring.frame_nr()) || (v3 && ring.head() >= ring.block_nr()) ||
      (!v3 && static_cast<uint64_t>(ring.block_size() / ring.frame_size()) * ring.block_nr() != ring.frame_nr()))
    return Error(EINVAL, "bad packet ring in the image");
  for (const auto& piece : ring.saved())
    if (piece.offset() > ring_bytes(ring) || piece.data().size() > ring_bytes(ring) - piece.offset())
      return Error(EINVAL, "packet ring bytes outside the ring in the image");
  return {};
}

// Waits until done() (the frames sent on lo have arrived).
template <typename F>
Status wait_for(F done, const std::string& what) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return Error(ETIMEDOUT, what);
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return {};
}

// Sends frames of kAdvanceProtocol on lo, bypassing the qdisc (so that
// sockets watching what lo sends do not see them; those watching what it
// receives do).
class Advancer {
 public:
  static Result<Advancer> open(int s) {
    Advancer a;
    a.lo_ = static_cast<int>(::if_nametoindex("lo"));
    if (a.lo_ == 0) return errno_error("interface lo");
    sockaddr_ll here{};
    here.sll_family = AF_PACKET;
    here.sll_protocol = htons(kAdvanceProtocol);
    here.sll_ifindex = a.lo_;
    if (::bind(s, reinterpret_cast<sockaddr*>(&here), sizeof here) < 0) return errno_error("bind the ring's socket to lo");
    a.sender_ = UniqueFd(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!a.sender_.valid()) return errno_error("socket(AF_PACKET) to send on lo");
    int one = 1;
    ::setsockopt(a.sender_.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    ifreq req{};
    std::strncpy(req.ifr_name, "lo", sizeof req.ifr_name - 1);
    a.mtu_ = ::ioctl(a.sender_.get(), SIOCGIFMTU, &req) == 0 ? static_cast<size_t>(req.ifr_mtu) : 1500;
    return a;
  }
  Status send(size_t bytes) {
    std::vector<char> frame(std::clamp<size_t>(bytes, 46, std::min<size_t>(mtu_, 65000)), 0);
    std::memcpy(frame.data(), "cryo ring", 9);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(kAdvanceProtocol);
    to.sll_ifindex = lo_;
    to.sll_halen = 6;
    if (::sendto(sender_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
      return errno_error("send a frame on lo");
    return {};
  }
  size_t mtu() const { return mtu_; }
  Status park(int s) {
    sockaddr_ll here{};
    here.sll_family = AF_PACKET;
    here.sll_protocol = htons(kParkProtocol);
    here.sll_ifindex = lo_;
    if (::bind(s, reinterpret_cast<sockaddr*>(&here), sizeof here) < 0) return errno_error("bind the ring's socket to lo");
    return {};
  }

 private:
  int lo_ = 0;
  size_t mtu_ = 1500;
  UniqueFd sender_;
};

// V1/V2: frames 0..head-1 filled by frames of cryo's, then handed back.
Status advance_frames(int s, const RingMap& m, const image::PacketRing& ring) {
  CRYO_ASSIGN(Advancer a, Advancer::open(s));
  for (uint32_t i = 0; i < ring.head(); i++) CRYO_TRY(a.send(46));
  CRYO_TRY(wait_for([&] { return read_frame(m, ring, ring.head() - 1).status & TP_STATUS_USER; },
                    "the frames cryo sent on lo did not reach the ring"));
  if (read_frame(m, ring, ring.head()).status & TP_STATUS_USER)
    return Error(EAGAIN, "a frame of protocol 0xc0de that cryo did not send reached the ring (restore again)");
  for (uint32_t i = 0; i < ring.head(); i++) set_frame_status(m, ring, i, TP_STATUS_KERNEL);
  return a.park(s);
}

// V3: blocks 0..head-1 filled and closed, block head opened, with the
// frames of cryo's in it hidden (they start where the block's first frame
// will be, and do not count).
Status advance_blocks(int s, const RingMap& m, const image::PacketRing& ring) {
  CRYO_ASSIGN(Advancer a, Advancer::open(s));
  auto landed = [&] {
    uint64_t n = 0;
    for (uint32_t b = 0; b <= ring.head(); b++) n += read_block(m, ring, b).num_pkts;
    return n;
  };
  uint64_t sent = 0, limit = static_cast<uint64_t>(ring.head()) * (ring.block_size() / 1024 + 2);
  while (read_block(m, ring, ring.head()).seq_num == 0) {
    if (sent++ > limit) return Error(EIO, "the ring's blocks do not fill with the frames cryo sends on lo");
    CRYO_TRY(a.send(a.mtu()));
    CRYO_TRY(wait_for([&] { return landed() >= sent; }, "the frames cryo sent on lo did not reach the ring"));
  }
  tpacket_hdr_v1 open = read_block(m, ring, ring.head());
  open.offset_to_first_pkt = open.blk_len;
  open.num_pkts = 0;
  write_block(m, ring, ring.head(), open);
  if (read_block(m, ring, ring.head()).block_status != TP_STATUS_KERNEL)
    return Error(EAGAIN, "the ring's retire timer closed the block cryo opened (restore again)");
  if (read_block(m, ring, ring.head()).num_pkts != 0)
    return Error(EAGAIN, "a frame of protocol 0xc0de that cryo did not send reached the ring (restore again)");
  for (uint32_t b = 0; b < ring.head(); b++) {
    tpacket_hdr_v1 h = read_block(m, ring, b);
    h.block_status = TP_STATUS_KERNEL;
    h.num_pkts = 0;
    write_block(m, ring, b, h);
  }
  return a.park(s);
}

}  // namespace

uint32_t next_frame(const std::vector<RingFrame>& frames) {
  uint32_t n = static_cast<uint32_t>(frames.size());
  uint32_t users = 0, runs = 0, run_end = 0;
  for (uint32_t i = 0; i < n; i++) {
    bool user = frames[i].status & TP_STATUS_USER;
    users += user;
    if (user && !(frames[(i + 1) % n].status & TP_STATUS_USER)) {
      runs++;
      run_end = (i + 1) % n;
    }
  }
  if (users > 0 && users < n && runs == 1) return run_end;
  int newest = -1;
  for (uint32_t i = 0; i < n; i++)
    if (frames[i].filled && (newest < 0 || frames[i].time > frames[static_cast<uint32_t>(newest)].time))
      newest = static_cast<int>(i);
  return newest < 0 ? 0 : (static_cast<uint32_t>(newest) + 1) % n;
}

uint64_t ring_bytes(const image::PacketRing& ring) {
  return static_cast<uint64_t>(ring.block_size()) * ring.block_nr();
}

Status describe_rx_ring(const std::string& what, int s, const packet_diag_ring& diag, bool running,
                        image::PacketRing* out) {
  int version = 0;
  socklen_t len = sizeof version;
  if (::getsockopt(s, SOL_PACKET, PACKET_VERSION, &version, &len) < 0) return errno_error(what + ": PACKET_VERSION");
  out->set_version(static_cast<uint32_t>(version));
  out->set_block_size(diag.pdr_block_size);
  out->set_block_nr(diag.pdr_block_nr);
  out->set_frame_size(diag.pdr_frame_size);
  out->set_frame_nr(diag.pdr_frame_nr);
  if (version == TPACKET_V3) {
    out->set_retire_tmo(diag.pdr_retire_tmo);
    out->set_sizeof_priv(diag.pdr_sizeof_priv);
    out->set_features(diag.pdr_features);
  }
  CRYO_TRY(check_geometry(*out).wrap(what + ": packet ring"));
  CRYO_ASSIGN(RingMap m, RingMap::map(s, ring_bytes(*out), PROT_READ).wrap(what));
  uint64_t saved = 0;
  if (version != TPACKET_V3) {
    std::vector<RingFrame> frames;
    for (uint32_t i = 0; i < out->frame_nr(); i++) frames.push_back(read_frame(m, *out, i));
    out->set_head(next_frame(frames));
    // Frames not handed back, whole; the others' headers, for their
    // timestamps (the next dump finds the kernel's next frame by them).
    for (uint32_t i = 0; i < out->frame_nr(); i++) {
      bool user = frames[i].status & TP_STATUS_USER;
      if (!user && !frames[i].filled) continue;
      uint64_t size = user ? out->frame_size() : header_size(out->version());
      save(m, frame_offset(*out, i), size, out);
      saved += size;
    }
  } else {
    uint32_t open = 0;
    uint64_t newest = 0;
    for (uint32_t b = 0; b < out->block_nr(); b++)
      if (uint64_t seq = read_block(m, *out, b).seq_num; seq > newest) {
        newest = seq;
        open = b;
      }
    tpacket_hdr_v1 h = read_block(m, *out, open);
    if (h.block_status & TP_STATUS_USER)
      return Error(what + ": packet socket's TPACKET_V3 ring is full, every block waiting to be read (not supported: "
                   "the kernel holds the frames it drops meanwhile; dump again once the process read some)");
    out->set_head(open);
    if (h.num_pkts)
      log::warn(what + ": " + str(h.num_pkts) + " packets in the ring's block the kernel was still filling are lost in "
                "flight (the process had not been handed them yet)");
    for (uint32_t b = 0; b < out->block_nr(); b++) {
      uint64_t at = static_cast<uint64_t>(b) * out->block_size();
      if (b != open && (read_block(m, *out, b).block_status & TP_STATUS_USER)) {
        save(m, at, out->block_size(), out);
        saved += out->block_size();
      } else if (out->sizeof_priv()) {
        save(m, at + kBlockHeader, std::min<uint64_t>(out->sizeof_priv(), out->block_size() - kBlockHeader), out);
      }
    }
  }
  if (saved > kMaxSaved)
    return Error(what + ": packet socket's ring holds " + str(saved >> 20) + " MiB not yet read (more than " +
                 str(kMaxSaved >> 20) + " MiB: dump again once the process read them)");
  if (out->head() != 0 && !running)
    return Error(what + ": packet socket receives nothing now, yet its ring's next frame is " + str(out->head()) +
                 " (not supported: the restore moves it there with frames it receives)");
  return {};
}

Status restore_rx_ring(int s, const image::PacketRing& ring) {
  CRYO_TRY(check_geometry(ring));
  tpacket_req3 req{};
  req.tp_block_size = ring.block_size();
  req.tp_block_nr = ring.block_nr();
  req.tp_frame_size = ring.frame_size();
  req.tp_frame_nr = ring.frame_nr();
  req.tp_retire_blk_tov = ring.retire_tmo();
  req.tp_sizeof_priv = ring.sizeof_priv();
  req.tp_feature_req_word = ring.features();
  socklen_t len = ring.version() == TPACKET_V3 ? sizeof req : sizeof(tpacket_req);
  if (::setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, len) < 0) return errno_error("PACKET_RX_RING");
  CRYO_ASSIGN(RingMap m, RingMap::map(s, ring_bytes(ring), PROT_READ | PROT_WRITE));
  if (ring.head() != 0) {
    if (ring.version() == TPACKET_V3)
      CRYO_TRY(advance_blocks(s, m, ring));
    else
      CRYO_TRY(advance_frames(s, m, ring));
    tpacket_stats_v3 stats;  // reading them sets them to zero: cryo's frames do not count
    socklen_t slen = sizeof stats;
    ::getsockopt(s, SOL_PACKET, PACKET_STATISTICS, &stats, &slen);
  }
  for (const auto& piece : ring.saved()) std::memcpy(m.at(piece.offset()), piece.data().data(), piece.data().size());
  if (ring.version() == TPACKET_V3) {
    // Blocks are numbered again from 1 as the kernel opened them here (the
    // next dump finds the open block as the highest); those after it come
    // from before the kernel wrapped round, and older.
    for (uint32_t b = 0; b < ring.block_nr(); b++) {
      if (b == ring.head()) continue;
      tpacket_hdr_v1 h = read_block(m, ring, b);
      h.seq_num = b < ring.head() ? b + 1 : 0;
      write_block(m, ring, b, h);
    }
  }
  return {};
}

}  // namespace cryo::net
