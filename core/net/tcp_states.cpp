#include "core/net/tcp_states.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <cstring>
#include <sstream>

#include "core/net/netlock.h"
#include "core/sys/io.h"

namespace cryo::net {
namespace {

// Which FINs a state holds (RFC 793's diagram): ours sent first (FIN_WAIT1,
// FIN_WAIT2, CLOSING) or after the peer's (LAST_ACK); the peer's received
// (CLOSE_WAIT, LAST_ACK, CLOSING); ours acknowledged (FIN_WAIT2).
bool our_fin_first(int state) { return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING; }
bool our_fin(int state) { return our_fin_first(state) || state == TCP_LAST_ACK; }
bool peer_fin(int state) { return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING; }
bool our_fin_acked(int state) { return state == TCP_FIN_WAIT2; }

template <typename T>
Status set_opt(int s, int level, int name, const T& value, const char* what) {
  if (::setsockopt(s, level, name, &value, sizeof value) < 0) return errno_error(std::string("setsockopt ") + what);
  return {};
}

Result<int> current_state(int s) {
  struct tcp_info info {};
  socklen_t len = sizeof info;
  if (::getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return errno_error("TCP_INFO");
  return static_cast<int>(info.tcpi_state);
}

// Waits (briefly: the segment is looped back by a softirq) for the socket to
// reach `want`.
Status wait_state(int s, int want, const char* what) {
  int state = 0;
  for (int i = 0; i < 500; i++) {
    CRYO_ASSIGN(state, current_state(s));
    if (state == want) return {};
    struct timespec pause = {0, 2000000};
    ::nanosleep(&pause, nullptr);
  }
  return Error(EIO, std::string(what) + ": the socket is in state " + tcp_state_name(state) + ", want " +
                        tcp_state_name(want) + " (is something else dropping looped-back packets?)");
}

uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint32_t add_words(const void* data, size_t len, uint32_t sum = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += static_cast<uint32_t>(p[len - 1] << 8);
  return sum;
}

bool v4_mapped(const std::string& a) {
  static const char kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\xff', '\xff'};
  return a.size() == 16 && std::memcmp(a.data(), kPrefix, 12) == 0;
}

// A segment from the peer to our socket: what the peer had sent before the
// dump and the restored socket must have seen (its FIN, its ACK of ours).
// It is built whole and sent through a raw socket marked kRepairMark, which
// the network lock lets through; the route to a local address loops it back.
Status send_as_peer(const image::Socket& sock, uint32_t seq, uint32_t ack, bool fin) {
  const auto& t = sock.tcp();
  std::string src = sock.peer().addr(), dst = sock.local().addr();
  bool v6 = sock.local().family() == AF_INET6 && !(v4_mapped(src) && v4_mapped(dst));
  if (!v6 && src.size() == 16) src = src.substr(12), dst = dst.substr(12);
  if (src.size() != (v6 ? 16u : 4u) || dst.size() != src.size()) return Error(EINVAL, "bad connection address in the image");

  struct tcphdr tcp {};
  tcp.source = htons(static_cast<uint16_t>(sock.peer().port()));
  tcp.dest = htons(static_cast<uint16_t>(sock.local().port()));
  tcp.seq = htonl(seq);
  tcp.ack_seq = htonl(ack);
  tcp.doff = sizeof tcp / 4;
  tcp.ack = 1;
  tcp.fin = fin ? 1 : 0;
  uint32_t window = t.wscale() ? t.snd_wnd() >> std::min<uint32_t>(t.snd_wscale(), 14) : t.snd_wnd();
  tcp.window = htons(static_cast<uint16_t>(std::min<uint32_t>(window, 0xffff)));
  // The checksum covers a pseudo header: both addresses, the protocol, the length.
  uint32_t sum = add_words(src.data(), src.size());
  sum = add_words(dst.data(), dst.size(), sum);
  sum += IPPROTO_TCP + sizeof tcp;
  tcp.check = htons(fold(add_words(&tcp, sizeof tcp, sum)));

  char packet[sizeof(struct ip6_hdr) + sizeof tcp] = {};
  size_t len;
  sockaddr_storage to{};
  socklen_t to_len;
  if (v6) {
    struct ip6_hdr ip {};
    ip.ip6_flow = htonl(6u << 28);
    ip.ip6_plen = htons(sizeof tcp);
    ip.ip6_nxt = IPPROTO_TCP;
    ip.ip6_hlim = 64;
    std::memcpy(&ip.ip6_src, src.data(), 16);
    std::memcpy(&ip.ip6_dst, dst.data(), 16);
    std::memcpy(packet, &ip, sizeof ip);
    std::memcpy(packet + sizeof ip, &tcp, sizeof tcp);
    len = sizeof ip + sizeof tcp;
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&to);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, dst.data(), 16);
    in6->sin6_scope_id = sock.local().scope_id();
    to_len = sizeof *in6;
  } else {
    struct iphdr ip {};
    ip.version = 4;
    ip.ihl = sizeof ip / 4;
    ip.tot_len = htons(sizeof ip + sizeof tcp);
    ip.frag_off = htons(IP_DF);
    ip.ttl = 64;
    ip.protocol = IPPROTO_TCP;
    std::memcpy(&ip.saddr, src.data(), 4);
    std::memcpy(&ip.daddr, dst.data(), 4);
    std::memcpy(packet, &ip, sizeof ip);  // the kernel fills in the header's checksum
    std::memcpy(packet + sizeof ip, &tcp, sizeof tcp);
    len = sizeof ip + sizeof tcp;
    auto* in = reinterpret_cast<sockaddr_in*>(&to);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, dst.data(), 4);
    to_len = sizeof *in;
  }
  // IPPROTO_RAW: the header is ours (IP_HDRINCL), source address included.
  UniqueFd raw(::socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw.valid()) return errno_error("raw socket (needs CAP_NET_RAW)");
  CRYO_TRY(set_opt(raw.get(), SOL_SOCKET, SO_MARK, static_cast<int>(kRepairMark), "SO_MARK"));
  if (::sendto(raw.get(), packet, len, 0, reinterpret_cast<sockaddr*>(&to), to_len) != static_cast<ssize_t>(len))
    return errno_error("sending the peer's segment");
  return {};
}

// Our FIN, after the bytes before it. One that had been sent goes into the
// send queue as sent (retransmitted if the peer never acknowledges it); one
// that had not is sent for real, after the unsent bytes, with repair mode off
// for the while (the lock holds both back until the restore ends).
Status put_back_our_fin(int s, const image::TcpConnection& t) {
  if (!t.fin_unsent()) {
    CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_SEND_QUEUE), "TCP_REPAIR_QUEUE"));
    if (::shutdown(s, SHUT_WR) < 0) return errno_error("shutdown in repair mode");
    return set_opt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, static_cast<int>(TCP_NO_QUEUE), "TCP_REPAIR_QUEUE");
  }
  if (t.unsent_bytes() > t.send_queue().size()) return Error(EINVAL, "bad unsent byte count");
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off"));
  std::string unsent = t.send_queue().substr(t.send_queue().size() - t.unsent_bytes());
  size_t done = 0;
  while (done < unsent.size()) {
    ssize_t n = ::send(s, unsent.data() + done, unsent.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("sending the unsent bytes before the FIN");
    done += static_cast<size_t>(n);
  }
  if (::shutdown(s, SHUT_WR) < 0) return errno_error("shutdown");
  return set_opt(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
}

// Reads "ADDR:PORT" of /proc/net/tcp{,6}: each 32-bit word of the address
// printed in hex as the host reads it, the port in hex.
bool parse_proc_addr(const std::string& text, int family, image::SockAddr* out) {
  size_t colon = text.find(':');
  if (colon == std::string::npos) return false;
  std::string hex = text.substr(0, colon);
  size_t words = family == AF_INET6 ? 4 : 1;
  if (hex.size() != words * 8) return false;
  std::string addr(words * 4, '\0');
  for (size_t w = 0; w < words; w++) {
    uint32_t v = static_cast<uint32_t>(std::stoul(hex.substr(w * 8, 8), nullptr, 16));
    std::memcpy(addr.data() + w * 4, &v, 4);
  }
  out->set_family(static_cast<uint32_t>(family));
  out->set_addr(addr);
  out->set_port(static_cast<uint32_t>(std::stoul(text.substr(colon + 1), nullptr, 16)));
  return true;
}

}  // namespace

bool is_connection_state(int state) {
  return state == TCP_ESTABLISHED || state == TCP_SYN_SENT || our_fin(state) || peer_fin(state);
}

std::string tcp_state_name(int state) {
  static const char* const kNames[] = {"?",        "ESTABLISHED", "SYN_SENT",   "SYN_RECV", "FIN_WAIT1",
                                       "FIN_WAIT2", "TIME_WAIT",  "CLOSE",      "CLOSE_WAIT", "LAST_ACK",
                                       "LISTEN",   "CLOSING",     "NEW_SYN_RECV"};
  if (state > 0 && state < static_cast<int>(sizeof kNames / sizeof kNames[0])) return kNames[state];
  return std::to_string(state);
}

Result<image::SockAddr> connecting_peer(pid_t pid, int socket) {
  struct stat st;
  if (::fstat(socket, &st) < 0) return errno_error("fstat socket");
  for (int family : {AF_INET, AF_INET6}) {
    std::string path = "/proc/" + std::to_string(pid) + "/net/" + (family == AF_INET ? "tcp" : "tcp6");
    CRYO_ASSIGN(std::string table, read_file(path));
    std::istringstream lines(table);
    std::string line;
    std::getline(lines, line);  // the header
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      if (inode != std::to_string(st.st_ino)) continue;
      image::SockAddr peer;
      if (!parse_proc_addr(remote, family, &peer)) return Error(EINVAL, "cannot read " + path + ": " + line);
      return peer;
    }
  }
  return Error(ENOENT, "the connecting socket is not in /proc/" + std::to_string(pid) + "/net/tcp");
}

void leave_out_fins(TcpCounts* c) {
  if (our_fin(c->state)) {
    c->send_seq -= 1;
    // Until acknowledged the FIN counts in SIOCOUTQ, and in SIOCOUTQNSD until sent.
    if (!our_fin_acked(c->state) && c->outq > 0) c->outq -= 1;
    c->fin_unsent = !our_fin_acked(c->state) && c->unsent > 0;
    if (c->fin_unsent) c->unsent -= 1;
  }
  if (peer_fin(c->state)) c->recv_seq -= 1;
}

Result<int> recorded_state(const image::TcpConnection& t) {
  int state = t.state() == 0 ? TCP_ESTABLISHED : static_cast<int>(t.state());
  if (!is_connection_state(state)) return Error(EINVAL, "bad TCP state " + std::to_string(t.state()) + " in the image");
  if (t.fin_unsent() && !our_fin(state)) return Error(EINVAL, "a FIN to send in TCP state " + tcp_state_name(state));
  return state;
}

void window_before_fin(const image::TcpConnection& t, uint32_t* rcv_wup, uint32_t* rcv_wnd) {
  *rcv_wup = t.rcv_wup();
  *rcv_wnd = t.rcv_wnd();
  int state = t.state() == 0 ? TCP_ESTABLISHED : static_cast<int>(t.state());
  // Our ACK of the peer's FIN moved the window's left edge past it.
  int32_t past = static_cast<int32_t>(t.rcv_wup() - t.recv_seq());
  if (peer_fin(state) && past > 0) {
    *rcv_wup -= static_cast<uint32_t>(past);
    *rcv_wnd += static_cast<uint32_t>(past);
  }
}

Status restore_syn_sent(int s, const image::Socket& sock) {
  sockaddr_storage peer{};
  socklen_t len;
  const auto& a = sock.peer();
  if (a.family() == AF_INET && a.addr().size() == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&peer);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, a.addr().data(), 4);
    in->sin_port = htons(static_cast<uint16_t>(a.port()));
    len = sizeof *in;
  } else if (a.family() == AF_INET6 && a.addr().size() == 16) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&peer);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, a.addr().data(), 16);
    in6->sin6_port = htons(static_cast<uint16_t>(a.port()));
    in6->sin6_scope_id = a.scope_id();
    len = sizeof *in6;
  } else {
    return Error(EINVAL, "bad peer address in the image");
  }
  // A real connect (repair mode would make it established at once), from
  // the recorded initial sequence number; then back into repair mode, so
  // that a restore that fails closes it without a word.
  CRYO_TRY(set_opt(s, IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off"));
  if (::fcntl(s, F_SETFL, O_NONBLOCK) < 0) return errno_error("F_SETFL");
  if (::connect(s, reinterpret_cast<sockaddr*>(&peer), len) < 0 && errno != EINPROGRESS)
    return errno_error("connect (SYN_SENT)");
  return set_opt(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
}

Status restore_fins(int s, const image::Socket& sock) {
  const auto& t = sock.tcp();
  CRYO_ASSIGN(int state, recorded_state(t));
  if (state == TCP_ESTABLISHED || state == TCP_SYN_SENT) return {};
  // Our FIN first (FIN_WAIT1, FIN_WAIT2, CLOSING); the peer's (CLOSE_WAIT,
  // CLOSING, LAST_ACK): it acknowledges our data but not our FIN; our FIN
  // after it (LAST_ACK); the peer's ACK of our FIN (FIN_WAIT2).
  uint32_t snd_una = t.send_seq() - static_cast<uint32_t>(t.send_queue().size());
  if (our_fin_first(state)) {
    CRYO_TRY(put_back_our_fin(s, t).wrap("our FIN"));
    CRYO_TRY(wait_state(s, TCP_FIN_WAIT1, "our FIN"));
  }
  if (peer_fin(state)) {
    CRYO_TRY(send_as_peer(sock, t.recv_seq(), snd_una, true).wrap("the peer's FIN"));
    CRYO_TRY(wait_state(s, state == TCP_CLOSING ? TCP_CLOSING : TCP_CLOSE_WAIT, "the peer's FIN"));
  }
  if (state == TCP_LAST_ACK) CRYO_TRY(put_back_our_fin(s, t).wrap("our FIN"));
  if (our_fin_acked(state)) CRYO_TRY(send_as_peer(sock, t.recv_seq(), t.send_seq() + 1, false).wrap("the peer's ACK"));
  return wait_state(s, state, "restoring the TCP state");
}

bool unsent_sent_by_fins(const image::TcpConnection& t) {
  int state = t.state() == 0 ? TCP_ESTABLISHED : static_cast<int>(t.state());
  return our_fin(state) && t.fin_unsent();
}

Result<UniqueFd> closed_connection(const image::Socket& sock) {
  UniqueFd s(::socket(static_cast<int>(sock.family()), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!s.valid()) return errno_error("socket");
  // On a socket that never connected shutdown() answers ENOTCONN, but marks
  // both directions shut all the same: read() returns 0, write() EPIPE.
  if (::shutdown(s.get(), SHUT_RDWR) < 0 && errno != ENOTCONN) return errno_error("shutdown");
  return s;
}

void close_connections(image::Files* files) {
  for (auto& f : *files->mutable_files()) {
    if (f.kind() != image::FileDesc::SOCKET) continue;
    auto* sock = f.mutable_socket();
    if ((sock->family() != AF_INET && sock->family() != AF_INET6) || sock->type() != SOCK_STREAM ||
        sock->state() != image::Socket::CONNECTED)
      continue;
    sock->set_tcp_closed(true);
    sock->set_reconnect(false);
  }
}

}  // namespace cryo::net
