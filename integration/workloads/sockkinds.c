// sockkinds: socket kinds and options beyond TCP, UDP, unix and netlink.
//
//   sockkinds READY REPORT CASE
//
// CASE picks what the process builds:
//   ping        ICMP "ping" sockets (IPv4 and IPv6, connected or not); after restore
//               each gets an echo reply from loopback with its own ident.
//   ping_unread the same, with an echo reply not yet read (its dump is refused).
//   raw         raw sockets: ICMP with an ICMP_FILTER, IPPROTO_RAW (IP_HDRINCL), ICMPv6
//               with an ICMPV6_FILTER; after restore an echo request built by hand goes
//               out of the IPPROTO_RAW socket and its reply comes back to the ICMP one.
//   udplite     UDP-lite sockets with checksum coverage and three datagrams queued.
//   packet      packet sockets on lo (SOCK_RAW and SOCK_DGRAM) bound to an experimental
//               ethertype, with PACKET_AUXDATA, a classic BPF filter (locked), multicast
//               and promiscuous memberships, and a fanout group; after restore each sees
//               a frame sent on lo.
//   options     socket options: SO_BINDTODEVICE (UDP and a TCP listener), TCP_CONGESTION,
//               TCP_NOTSENT_LOWAT, IP_TOS, IP_TTL, IP_RECVERR, IP_PKTINFO,
//               IPV6_TCLASS, IPV6_UNICAST_HOPS, IPV6_RECVPKTINFO, SO_BUF_LOCK (set and
//               unset), a filter read back with SO_GET_FILTER and SO_LOCK_FILTER,
//               IP_FREEBIND binds to absent addresses (UDP and a TCP listener), UDP
//               shut down for reading and for writing, UDP_CORK with nothing pending.
//   udp_corked  a UDP socket holding a corked datagram (its dump is refused).
//
// READY carries pid=PID and, for the refused cases, fd=FD of the socket to be named.
#include "workload.h"

#include <net/if.h>  // before the linux/ headers, which define the same flags otherwise

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#ifndef UDPLITE_SEND_CSCOV
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11
#endif
#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#ifndef SOL_UDPLITE
#define SOL_UDPLITE 136
#endif

#define ETHERTYPE_TEST 0x88b5   // IEEE local experimental ethertype 1
#define ETHERTYPE_FANOUT 0x88b6 // the fanout group's, so it gets none of the test frames
#define FANOUT_ID 0x4242
static const unsigned char kMcastMac[6] = {0x01, 0x00, 0x5e, 0x00, 0x42, 0x42};

static int geti(int s, int level, int name) {
  int v = -12345;
  socklen_t len = sizeof v;
  if (getsockopt(s, level, name, &v, &len) < 0) return -12345;
  return v;
}

static void seti(int s, int level, int name, int v) { WL_MUST(setsockopt(s, level, name, &v, sizeof v) == 0); }

// Waits up to 5 s for s to be readable.
static int readable(int s) {
  struct pollfd p = {s, POLLIN, 0};
  return poll(&p, 1, 5000) == 1;
}

// Drops whatever is queued on s (the dump refuses packets not yet read).
static void drain(int s) {
  char buf[2048];
  wl_sleep_ms(50);
  while (recv(s, buf, sizeof buf, MSG_DONTWAIT) >= 0) {
  }
}

static unsigned short ip_checksum(const void *data, size_t len) {
  const unsigned char *p = data;
  unsigned long sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (unsigned)(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += (unsigned)p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((unsigned short)~sum);
}

// ---- ping -------------------------------------------------------------------------

// The ident the kernel gave a ping socket (its "port").
static int ping_ident(int s) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(s, (struct sockaddr *)&ss, &len) < 0) return -1;
  return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

// Sends an echo request with this sequence number and waits for its reply.
// With a negative seq, sends sequence 1000 and returns without its reply.
static int ping_once(int s, int v6, int connected, int seq, const char *what) {
  int send_only = seq < 0, sent_seq = send_only ? 1000 : seq;
  struct icmphdr h;
  memset(&h, 0, sizeof h);
  h.type = v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO;
  h.un.echo.sequence = htons((unsigned short)sent_seq);
  char packet[64] = {0};  // all of it is compared with the reply, which may be read by another call
  memcpy(packet, &h, sizeof h);
  snprintf(packet + sizeof h, sizeof packet - sizeof h, "cryo-ping-%d", sent_seq);
  if (seq == 1000) goto receive;  // sent before the dump
  struct sockaddr_in to4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  ssize_t n = connected ? send(s, packet, sizeof packet, 0)
                        : sendto(s, packet, sizeof packet, 0, v6 ? (struct sockaddr *)&to6 : (struct sockaddr *)&to4,
                                 v6 ? sizeof to6 : sizeof to4);
  if (n != (ssize_t)sizeof packet) {
    wl_fail("%s: send an echo request: %s", what, strerror(errno));
    return -1;
  }
  if (send_only) {
    wl_sleep_ms(100);  // the reply is in the queue
    return 0;
  }
receive:
  for (;;) {
    if (!readable(s)) {
      wl_fail("%s: no echo reply for sequence %d", what, seq);
      return -1;
    }
    char reply[128];
    n = recv(s, reply, sizeof reply, MSG_DONTWAIT);
    if (n < (ssize_t)sizeof h) continue;
    struct icmphdr r;
    memcpy(&r, reply, sizeof r);
    if (r.type != (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY) || ntohs(r.un.echo.sequence) != seq) continue;
    WL_CHECK(ntohs(r.un.echo.id) == ping_ident(s), "%s: reply for ident %d, socket has %d", what,
             ntohs(r.un.echo.id), ping_ident(s));
    WL_CHECK(n == (ssize_t)sizeof packet && memcmp(reply + sizeof h, packet + sizeof h, sizeof packet - sizeof h) == 0,
             "%s: the echo reply does not carry the request's data", what);
    return 0;
  }
}

static int run_ping(const char *ready, int unread) {
  int p4 = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  WL_MUST(p4 >= 0);
  int p6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
  WL_MUST(p6 >= 0);
  int pc = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  WL_MUST(pc >= 0);
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  WL_MUST(connect(pc, (struct sockaddr *)&lo, sizeof lo) == 0);
  int pc6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
  WL_MUST(pc6 >= 0);
  struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  WL_MUST(connect(pc6, (struct sockaddr *)&lo6, sizeof lo6) == 0);
  ping_once(p4, 0, 0, 1, "IPv4 ping socket before the dump");
  ping_once(p6, 1, 0, 1, "IPv6 ping socket before the dump");
  ping_once(pc, 0, 1, 1, "connected ping socket before the dump");
  ping_once(pc6, 1, 1, 1, "connected IPv6 ping socket before the dump");
  int idents[4] = {ping_ident(p4), ping_ident(p6), ping_ident(pc), ping_ident(pc6)};
  // With unread: one more echo whose reply waits (the dump is refused).
  if (unread) ping_once(pc, 0, 1, -1, "the unread echo");
  wl_ready(ready, "pid=%d fd=%d", (int)getpid(), pc);
  while (!wl_triggered) pause();
  WL_CHECK(ping_ident(p4) == idents[0] && ping_ident(p6) == idents[1] && ping_ident(pc) == idents[2] &&
               ping_ident(pc6) == idents[3],
           "ping idents %d %d %d %d, were %d %d %d %d", ping_ident(p4), ping_ident(p6), ping_ident(pc),
           ping_ident(pc6), idents[0], idents[1], idents[2], idents[3]);
  if (unread) ping_once(pc, 0, 1, 1000, "the connected ping socket with a reply unread");
  ping_once(p4, 0, 0, 2, "IPv4 ping socket");
  ping_once(p6, 1, 0, 2, "IPv6 ping socket");
  ping_once(pc, 0, 1, 2, "connected ping socket");
  ping_once(pc6, 1, 1, 2, "connected IPv6 ping socket");
  return 0;
}

// ---- raw --------------------------------------------------------------------------

#ifndef ICMP_FILTER
#define ICMP_FILTER 1
struct icmp_filter {
  uint32_t data;
};
#endif

// An echo request with its IP header, built by hand, out of the IP_HDRINCL
// socket; its reply must reach the raw ICMP socket.
static void raw_echo(int hdrincl, int icmp, unsigned short id, const char *what) {
  unsigned char packet[sizeof(struct iphdr) + sizeof(struct icmphdr) + 16];
  memset(packet, 0, sizeof packet);
  struct iphdr *ip = (struct iphdr *)packet;
  ip->version = 4;
  ip->ihl = 5;
  ip->ttl = 64;
  ip->protocol = IPPROTO_ICMP;
  ip->tot_len = htons(sizeof packet);
  ip->saddr = ip->daddr = htonl(INADDR_LOOPBACK);
  struct icmphdr *icmph = (struct icmphdr *)(packet + sizeof *ip);
  icmph->type = ICMP_ECHO;
  icmph->un.echo.id = htons(id);
  icmph->un.echo.sequence = htons(7);
  memcpy(packet + sizeof *ip + sizeof *icmph, "cryo-raw-echo!!", 16);
  icmph->checksum = ip_checksum(icmph, sizeof packet - sizeof *ip);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (sendto(hdrincl, packet, sizeof packet, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)sizeof packet) {
    wl_fail("%s: send through IP_HDRINCL: %s", what, strerror(errno));
    return;
  }
  for (;;) {
    if (!readable(icmp)) {
      wl_fail("%s: no echo reply on the raw ICMP socket", what);
      return;
    }
    unsigned char reply[256];
    ssize_t n = recv(icmp, reply, sizeof reply, MSG_DONTWAIT);
    if (n < (ssize_t)(sizeof(struct iphdr) + sizeof(struct icmphdr))) continue;
    struct icmphdr *r = (struct icmphdr *)(reply + ((struct iphdr *)reply)->ihl * 4);
    WL_CHECK(r->type == ICMP_ECHOREPLY, "%s: the ICMP filter let type %d through", what, r->type);
    if (r->type == ICMP_ECHOREPLY && ntohs(r->un.echo.id) == id) return;
  }
}

static int run_raw(const char *ready) {
  int icmp = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  WL_MUST(icmp >= 0);
  struct icmp_filter filter = {~(1u << ICMP_ECHOREPLY)};  // a set bit blocks that type
  WL_MUST(setsockopt(icmp, SOL_RAW, ICMP_FILTER, &filter, sizeof filter) == 0);
  int hdrincl = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  WL_MUST(hdrincl >= 0);
  int icmp6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  WL_MUST(icmp6 >= 0);
  struct icmp6_filter f6;
  memset(&f6, 0xff, sizeof f6);
  f6.data[ICMPV6_ECHO_REPLY >> 5] &= ~(1u << (ICMPV6_ECHO_REPLY & 31));
  WL_MUST(setsockopt(icmp6, IPPROTO_ICMPV6, ICMPV6_FILTER, &f6, sizeof f6) == 0);
  int udp6raw = socket(AF_INET6, SOCK_RAW, IPPROTO_UDP);
  WL_MUST(udp6raw >= 0);
  seti(udp6raw, IPPROTO_IPV6, IPV6_CHECKSUM, 6);
  unsigned short id = (unsigned short)(getpid() & 0xffff);
  raw_echo(hdrincl, icmp, id, "before the dump");
  drain(icmp);
  drain(icmp6);
  drain(udp6raw);
  wl_ready(ready, "pid=%d", (int)getpid());
  while (!wl_triggered) pause();
  WL_CHECK(geti(hdrincl, IPPROTO_IP, IP_HDRINCL) == 1, "IP_HDRINCL is %d", geti(hdrincl, IPPROTO_IP, IP_HDRINCL));
  struct icmp_filter got = {0};
  socklen_t len = sizeof got;
  WL_CHECK(getsockopt(icmp, SOL_RAW, ICMP_FILTER, &got, &len) == 0 && got.data == filter.data,
           "ICMP_FILTER is %#x, was %#x", got.data, filter.data);
  struct icmp6_filter got6;
  len = sizeof got6;
  WL_CHECK(getsockopt(icmp6, IPPROTO_ICMPV6, ICMPV6_FILTER, &got6, &len) == 0 && memcmp(&got6, &f6, sizeof f6) == 0,
           "ICMPV6_FILTER changed");
  WL_CHECK(geti(udp6raw, IPPROTO_IPV6, IPV6_CHECKSUM) == 6, "IPV6_CHECKSUM is %d",
           geti(udp6raw, IPPROTO_IPV6, IPV6_CHECKSUM));
  WL_CHECK(geti(icmp, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_ICMP && geti(hdrincl, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_RAW,
           "raw socket protocols changed");
  raw_echo(hdrincl, icmp, (unsigned short)(id + 1), "after the restore");
  return 0;
}

// ---- UDP-lite ------------------------------------------------------------------------

static int run_udplite(const char *ready) {
  int a = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  WL_MUST(a >= 0);
  int b = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  WL_MUST(b >= 0);
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  WL_MUST(bind(a, (struct sockaddr *)&lo, sizeof lo) == 0);
  WL_MUST(bind(b, (struct sockaddr *)&lo, sizeof lo) == 0);
  seti(b, SOL_UDPLITE, UDPLITE_SEND_CSCOV, 20);
  seti(a, SOL_UDPLITE, UDPLITE_RECV_CSCOV, 20);
  struct sockaddr_in addr_a, addr_b;
  socklen_t len = sizeof addr_a;
  WL_MUST(getsockname(a, (struct sockaddr *)&addr_a, &len) == 0);
  len = sizeof addr_b;
  WL_MUST(getsockname(b, (struct sockaddr *)&addr_b, &len) == 0);
  for (int i = 0; i < 3; i++) {
    char msg[64];
    snprintf(msg, sizeof msg, "udplite-datagram-%d-with-some-bytes", i);
    WL_MUST(sendto(b, msg, strlen(msg), 0, (struct sockaddr *)&addr_a, sizeof addr_a) == (ssize_t)strlen(msg));
  }
  wl_ready(ready, "pid=%d", (int)getpid());
  while (!wl_triggered) pause();
  WL_CHECK(geti(a, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDPLITE, "protocol is %d", geti(a, SOL_SOCKET, SO_PROTOCOL));
  WL_CHECK(geti(b, SOL_UDPLITE, UDPLITE_SEND_CSCOV) == 20, "send coverage is %d",
           geti(b, SOL_UDPLITE, UDPLITE_SEND_CSCOV));
  WL_CHECK(geti(a, SOL_UDPLITE, UDPLITE_RECV_CSCOV) == 20, "receive coverage is %d",
           geti(a, SOL_UDPLITE, UDPLITE_RECV_CSCOV));
  for (int i = 0; i < 4; i++) {
    char want[64], got[128];
    snprintf(want, sizeof want, "udplite-datagram-%d-with-some-bytes", i);
    if (i == 3) WL_MUST(sendto(b, want, strlen(want), 0, (struct sockaddr *)&addr_a, sizeof addr_a) > 0);
    struct sockaddr_in from;
    len = sizeof from;
    if (!readable(a)) {
      wl_fail("UDP-lite datagram %d missing", i);
      break;
    }
    ssize_t n = recvfrom(a, got, sizeof got, MSG_DONTWAIT, (struct sockaddr *)&from, &len);
    WL_CHECK(n == (ssize_t)strlen(want) && memcmp(got, want, (size_t)n) == 0, "UDP-lite datagram %d is %.*s", i,
             (int)(n > 0 ? n : 0), got);
    WL_CHECK(from.sin_port == addr_b.sin_port, "UDP-lite datagram %d from port %d, want %d", i, ntohs(from.sin_port),
             ntohs(addr_b.sin_port));
  }
  return 0;
}

// ---- packet -------------------------------------------------------------------------

// Accepts the test frames (ethertype ETHERTYPE_TEST, first payload byte 0xab) only.
static struct sock_filter kFrameFilter[] = {
    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETHERTYPE_TEST, 0, 3),
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 14),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xab, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0xffff),
    BPF_STMT(BPF_RET | BPF_K, 0),
};

static int lo_index(void) { return (int)if_nametoindex("lo"); }

static int packet_bound(int type, int protocol) {
  int s = socket(AF_PACKET, type, 0);
  WL_MUST(s >= 0);
  struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(protocol), .sll_ifindex = lo_index()};
  WL_MUST(bind(s, (struct sockaddr *)&ll, sizeof ll) == 0);
  return s;
}

// A frame on lo with the test ethertype; the payload starts with `first`.
static void send_frame(int sender, unsigned char first, int seq) {
  unsigned char frame[ETH_HLEN + 32];
  memset(frame, 0, sizeof frame);
  frame[12] = ETHERTYPE_TEST >> 8;
  frame[13] = ETHERTYPE_TEST & 0xff;
  frame[ETH_HLEN] = first;
  snprintf((char *)frame + ETH_HLEN + 1, 31, "cryo-frame-%d", seq);
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = lo_index(), .sll_halen = ETH_ALEN};
  WL_MUST(sendto(sender, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof frame);
}

// Receives frames until the one of this sequence number (at payload offset
// `at`); with auxdata, checks a PACKET_AUXDATA message comes along; when
// filtered, that no frame the filter drops comes first.
static void expect_frame(int s, size_t at, int seq, int auxdata, int filtered, const char *what) {
  char want[32];
  snprintf(want, sizeof want, "cryo-frame-%d", seq);
  for (;;) {
    if (!readable(s)) {
      wl_fail("%s: no frame %d", what, seq);
      return;
    }
    unsigned char frame[256];
    char control[256];
    struct iovec iov = {frame, sizeof frame};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    ssize_t n = recvmsg(s, &msg, MSG_DONTWAIT);
    if (n < (ssize_t)(at + 1 + strlen(want))) continue;
    WL_CHECK(!filtered || frame[at] == 0xab, "%s: the filter let a frame starting with %#x through", what, frame[at]);
    if (memcmp(frame + at + 1, want, strlen(want)) != 0) continue;
    int aux = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
      aux |= c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA;
    WL_CHECK(aux == auxdata, "%s: PACKET_AUXDATA %s", what, auxdata ? "missing" : "unexpected");
    return;
  }
}

// Whether lo is promiscuous and holds the test multicast address.
static int lo_promisc(void) {
  char text[64] = "";
  if (wl_read_file("/sys/class/net/lo/flags", text, sizeof text - 1) < 0) return -1;
  return (int)(strtol(text, NULL, 0) & IFF_PROMISC) != 0;
}

static int lo_has_mcast(void) {
  char text[16384] = "", want[16];
  ssize_t n = wl_read_file("/proc/net/dev_mcast", text, sizeof text - 1);
  if (n < 0) return -1;
  text[n] = 0;
  snprintf(want, sizeof want, "%02x%02x%02x%02x%02x%02x", kMcastMac[0], kMcastMac[1], kMcastMac[2], kMcastMac[3],
           kMcastMac[4], kMcastMac[5]);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (strstr(line, " lo ") && strstr(line, want)) return 1;
  return 0;
}

static int filter_is(int s, const struct sock_filter *want, size_t count) {
  struct sock_filter got[64];
  socklen_t len = 64;  // SO_GET_FILTER counts instructions, not bytes
  if (getsockopt(s, SOL_SOCKET, SO_GET_FILTER, got, &len) < 0) return 0;
  return len == count && memcmp(got, want, count * sizeof *want) == 0;
}

static void attach_filter(int s, struct sock_filter *insns, size_t count, int lock) {
  struct sock_fprog prog = {(unsigned short)count, insns};
  WL_MUST(setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0);
  if (lock) seti(s, SOL_SOCKET, SO_LOCK_FILTER, 1);
}

static int run_packet(const char *ready) {
  size_t nfilter = sizeof kFrameFilter / sizeof kFrameFilter[0];
  int rawp = socket(AF_PACKET, SOCK_RAW, 0);  // filter first, then bind: nothing unfiltered gets in
  WL_MUST(rawp >= 0);
  attach_filter(rawp, kFrameFilter, nfilter, 1);
  seti(rawp, SOL_PACKET, PACKET_AUXDATA, 1);
  struct packet_mreq mreq = {.mr_ifindex = lo_index(), .mr_type = PACKET_MR_MULTICAST, .mr_alen = 6};
  memcpy(mreq.mr_address, kMcastMac, 6);
  WL_MUST(setsockopt(rawp, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) == 0);
  struct packet_mreq promisc = {.mr_ifindex = lo_index(), .mr_type = PACKET_MR_PROMISC};
  WL_MUST(setsockopt(rawp, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &promisc, sizeof promisc) == 0);
  struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE_TEST), .sll_ifindex = lo_index()};
  WL_MUST(bind(rawp, (struct sockaddr *)&ll, sizeof ll) == 0);
  int dgram = packet_bound(SOCK_DGRAM, ETHERTYPE_TEST);
  seti(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);  // the looped-back copy only
  int fan1 = packet_bound(SOCK_RAW, ETHERTYPE_FANOUT), fan2 = packet_bound(SOCK_RAW, ETHERTYPE_FANOUT);
  int fanout = FANOUT_ID | (PACKET_FANOUT_HASH << 16);
  seti(fan1, SOL_PACKET, PACKET_FANOUT, fanout);
  seti(fan2, SOL_PACKET, PACKET_FANOUT, fanout);
  int sender = socket(AF_PACKET, SOCK_RAW, 0);  // never bound: receives nothing
  WL_MUST(sender >= 0);
  send_frame(sender, 0xab, 1);
  expect_frame(rawp, ETH_HLEN, 1, 1, 1, "SOCK_RAW packet socket before the dump");
  expect_frame(dgram, 0, 1, 0, 0, "SOCK_DGRAM packet socket before the dump");
  drain(rawp);
  drain(dgram);
  int promisc_before = lo_promisc(), mcast_before = lo_has_mcast();
  WL_CHECK(promisc_before == 1 && mcast_before == 1, "memberships not in place before the dump");
  wl_ready(ready, "pid=%d", (int)getpid());
  while (!wl_triggered) pause();
  WL_CHECK(lo_promisc() == 1, "lo is no longer promiscuous");
  WL_CHECK(lo_has_mcast() == 1, "lo lost the multicast address");
  WL_CHECK(filter_is(rawp, kFrameFilter, nfilter), "the filter read back with SO_GET_FILTER differs");
  WL_CHECK(geti(rawp, SOL_SOCKET, SO_LOCK_FILTER) == 1, "SO_LOCK_FILTER is %d", geti(rawp, SOL_SOCKET, SO_LOCK_FILTER));
  WL_CHECK(geti(rawp, SOL_PACKET, PACKET_AUXDATA) == 1, "PACKET_AUXDATA is off");
  WL_CHECK(geti(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING) == 1, "PACKET_IGNORE_OUTGOING is off");
  WL_CHECK(geti(fan1, SOL_PACKET, PACKET_FANOUT) == fanout && geti(fan2, SOL_PACKET, PACKET_FANOUT) == fanout,
           "fanout %#x %#x, want %#x", geti(fan1, SOL_PACKET, PACKET_FANOUT), geti(fan2, SOL_PACKET, PACKET_FANOUT),
           fanout);
  struct sockaddr_ll got;
  socklen_t len = sizeof got;
  WL_CHECK(getsockname(rawp, (struct sockaddr *)&got, &len) == 0 && got.sll_ifindex == lo_index() &&
               got.sll_protocol == htons(ETHERTYPE_TEST),
           "the packet socket is bound to interface %d protocol %#x", got.sll_ifindex, ntohs(got.sll_protocol));
  WL_CHECK(geti(rawp, SOL_SOCKET, SO_TYPE) == SOCK_RAW && geti(dgram, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM,
           "packet socket types changed");
  send_frame(sender, 0xcd, 2);  // the filter drops it
  send_frame(sender, 0xab, 3);
  expect_frame(rawp, ETH_HLEN, 3, 1, 1, "SOCK_RAW packet socket");
  expect_frame(dgram, 0, 3, 0, 0, "SOCK_DGRAM packet socket");
  return 0;
}

// ---- options ------------------------------------------------------------------------

// Drops datagrams whose first byte is 'X' (a UDP socket's filter sees the UDP header first).
static struct sock_filter kDatagramFilter[] = {
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, sizeof(struct udphdr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 'X', 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0),
    BPF_STMT(BPF_RET | BPF_K, 0xffff),
};

static int rdhup(int s) {
  struct pollfd p = {s, POLLRDHUP, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP);
}

static int run_options(const char *ready) {
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  // A UDP socket with IP options, bound to lo, filtered.
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(u >= 0);
  WL_MUST(setsockopt(u, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) == 0);
  seti(u, IPPROTO_IP, IP_TOS, 0x10);
  seti(u, IPPROTO_IP, IP_TTL, 33);
  seti(u, IPPROTO_IP, IP_RECVERR, 1);
  seti(u, IPPROTO_IP, IP_PKTINFO, 1);
  seti(u, SOL_SOCKET, SO_PRIORITY, 5);
  seti(u, SOL_SOCKET, SO_BUF_LOCK, 1);  // SOCK_SNDBUF_LOCK
  size_t nfilter = sizeof kDatagramFilter / sizeof kDatagramFilter[0];
  attach_filter(u, kDatagramFilter, nfilter, 1);
  WL_MUST(bind(u, (struct sockaddr *)&lo, sizeof lo) == 0);
  struct sockaddr_in u_addr;
  socklen_t len = sizeof u_addr;
  WL_MUST(getsockname(u, (struct sockaddr *)&u_addr, &len) == 0);
  // Its sender, whose buffers are left alone: after restore they must not be locked.
  int plain = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(plain >= 0);
  // IPv6 options.
  int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
  WL_MUST(u6 >= 0);
  seti(u6, IPPROTO_IPV6, IPV6_TCLASS, 0x28);
  seti(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 17);
  seti(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  // IP_FREEBIND: bound to addresses this host does not have.
  struct sockaddr_in absent = {.sin_family = AF_INET, .sin_port = htons(40777)};
  inet_pton(AF_INET, "192.0.2.77", &absent.sin_addr);
  int fu = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(fu >= 0);
  seti(fu, IPPROTO_IP, IP_FREEBIND, 1);
  WL_MUST(bind(fu, (struct sockaddr *)&absent, sizeof absent) == 0);
  int ft = socket(AF_INET, SOCK_STREAM, 0);
  WL_MUST(ft >= 0);
  seti(ft, IPPROTO_IP, IP_FREEBIND, 1);
  WL_MUST(setsockopt(ft, IPPROTO_TCP, TCP_CONGESTION, "reno", 4) == 0);
  seti(ft, IPPROTO_TCP, TCP_NOTSENT_LOWAT, 12345);
  WL_MUST(setsockopt(ft, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) == 0);
  absent.sin_port = htons(40778);
  WL_MUST(bind(ft, (struct sockaddr *)&absent, sizeof absent) == 0);
  WL_MUST(listen(ft, 4) == 0);
  // UDP shut down: for reading (unconnected), for writing (connected).
  int shut_rd = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(shut_rd >= 0);
  WL_MUST(bind(shut_rd, (struct sockaddr *)&lo, sizeof lo) == 0);
  shutdown(shut_rd, SHUT_RD);  // ENOTCONN, and shut down all the same
  int shut_wr = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(shut_wr >= 0);
  WL_MUST(connect(shut_wr, (struct sockaddr *)&u_addr, sizeof u_addr) == 0);
  WL_MUST(shutdown(shut_wr, SHUT_WR) == 0);
  int shut_both = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(shut_both >= 0);
  WL_MUST(connect(shut_both, (struct sockaddr *)&u_addr, sizeof u_addr) == 0);
  WL_MUST(shutdown(shut_both, SHUT_RDWR) == 0);
  // Corked, nothing pending yet.
  int cork = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(cork >= 0);
  seti(cork, IPPROTO_UDP, UDP_CORK, 1);
  WL_CHECK(rdhup(shut_rd) && !rdhup(shut_wr), "shutdown states before the dump");

  wl_ready(ready, "pid=%d", (int)getpid());
  while (!wl_triggered) pause();

  char dev[IFNAMSIZ] = "";
  len = sizeof dev;
  WL_CHECK(getsockopt(u, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) == 0 && strcmp(dev, "lo") == 0,
           "SO_BINDTODEVICE is \"%s\"", dev);
  WL_CHECK(geti(u, IPPROTO_IP, IP_TOS) == 0x10, "IP_TOS is %#x", geti(u, IPPROTO_IP, IP_TOS));
  WL_CHECK(geti(u, IPPROTO_IP, IP_TTL) == 33, "IP_TTL is %d", geti(u, IPPROTO_IP, IP_TTL));
  WL_CHECK(geti(u, IPPROTO_IP, IP_RECVERR) == 1, "IP_RECVERR is off");
  WL_CHECK(geti(u, IPPROTO_IP, IP_PKTINFO) == 1, "IP_PKTINFO is off");
  WL_CHECK(geti(u, SOL_SOCKET, SO_PRIORITY) == 5, "SO_PRIORITY is %d", geti(u, SOL_SOCKET, SO_PRIORITY));
  WL_CHECK(geti(u, SOL_SOCKET, SO_BUF_LOCK) == 1, "SO_BUF_LOCK is %d", geti(u, SOL_SOCKET, SO_BUF_LOCK));
  WL_CHECK(geti(plain, SOL_SOCKET, SO_BUF_LOCK) == 0, "SO_BUF_LOCK of a socket that never set it is %d",
           geti(plain, SOL_SOCKET, SO_BUF_LOCK));
  WL_CHECK(filter_is(u, kDatagramFilter, nfilter), "the filter read back with SO_GET_FILTER differs");
  WL_CHECK(geti(u, SOL_SOCKET, SO_LOCK_FILTER) == 1, "SO_LOCK_FILTER is %d", geti(u, SOL_SOCKET, SO_LOCK_FILTER));
  struct sock_fprog none = {0, NULL};
  WL_CHECK(setsockopt(u, SOL_SOCKET, SO_DETACH_FILTER, &none, sizeof none) < 0 && errno == EPERM,
           "a locked filter could be detached");
  WL_CHECK(geti(u6, IPPROTO_IPV6, IPV6_TCLASS) == 0x28, "IPV6_TCLASS is %#x", geti(u6, IPPROTO_IPV6, IPV6_TCLASS));
  WL_CHECK(geti(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS) == 17, "IPV6_UNICAST_HOPS is %d",
           geti(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS));
  WL_CHECK(geti(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO) == 1, "IPV6_RECVPKTINFO is off");
  struct sockaddr_in got;
  len = sizeof got;
  WL_CHECK(getsockname(fu, (struct sockaddr *)&got, &len) == 0 && got.sin_addr.s_addr == absent.sin_addr.s_addr &&
               got.sin_port == htons(40777),
           "the freebind UDP socket is bound to %s:%d", inet_ntoa(got.sin_addr), ntohs(got.sin_port));
  len = sizeof got;
  WL_CHECK(getsockname(ft, (struct sockaddr *)&got, &len) == 0 && got.sin_addr.s_addr == absent.sin_addr.s_addr &&
               got.sin_port == htons(40778),
           "the freebind TCP listener is bound to %s:%d", inet_ntoa(got.sin_addr), ntohs(got.sin_port));
  WL_CHECK(geti(fu, IPPROTO_IP, IP_FREEBIND) == 1 && geti(ft, IPPROTO_IP, IP_FREEBIND) == 1, "IP_FREEBIND is off");
  char cc[16] = "";
  len = sizeof cc;
  WL_CHECK(getsockopt(ft, IPPROTO_TCP, TCP_CONGESTION, cc, &len) == 0 && strcmp(cc, "reno") == 0,
           "TCP_CONGESTION is %s", cc);
  WL_CHECK(geti(ft, IPPROTO_TCP, TCP_NOTSENT_LOWAT) == 12345, "TCP_NOTSENT_LOWAT is %d",
           geti(ft, IPPROTO_TCP, TCP_NOTSENT_LOWAT));
  memset(dev, 0, sizeof dev);
  len = sizeof dev;
  WL_CHECK(getsockopt(ft, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) == 0 && strcmp(dev, "lo") == 0,
           "the listener's SO_BINDTODEVICE is \"%s\"", dev);
  WL_CHECK(rdhup(shut_rd), "the UDP socket shut down for reading is open again");
  WL_CHECK(!rdhup(shut_wr), "the UDP socket shut down for writing is shut for reading");
  struct pollfd both = {shut_both, 0, 0};
  WL_CHECK(poll(&both, 1, 0) == 1 && (both.revents & POLLHUP), "the UDP socket shut down both ways is not (POLLHUP)");
  WL_CHECK(geti(cork, IPPROTO_UDP, UDP_CORK) == 1, "UDP_CORK is off");
  // The filter still drops; a corked datagram goes out as one once uncorked.
  WL_MUST(sendto(plain, "Xdropped", 8, 0, (struct sockaddr *)&u_addr, sizeof u_addr) == 8);
  WL_MUST(sendto(cork, "corked-", 7, 0, (struct sockaddr *)&u_addr, sizeof u_addr) == 7);
  WL_MUST(sendto(cork, "together", 8, 0, (struct sockaddr *)&u_addr, sizeof u_addr) == 8);
  seti(cork, IPPROTO_UDP, UDP_CORK, 0);
  char buf[64] = "";
  ssize_t n = readable(u) ? recv(u, buf, sizeof buf - 1, MSG_DONTWAIT) : -1;
  WL_CHECK(n == 15 && memcmp(buf, "corked-together", 15) == 0, "received %zd bytes \"%.*s\"", n, (int)(n > 0 ? n : 0),
           buf);
  return 0;
}

static int run_udp_corked(const char *ready) {
  int r = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(r >= 0);
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  WL_MUST(bind(r, (struct sockaddr *)&lo, sizeof lo) == 0);
  socklen_t len = sizeof lo;
  WL_MUST(getsockname(r, (struct sockaddr *)&lo, &len) == 0);
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  WL_MUST(s >= 0);
  WL_MUST(sendto(s, "first-half-", 11, MSG_MORE, (struct sockaddr *)&lo, sizeof lo) == 11);
  wl_ready(ready, "pid=%d fd=%d", (int)getpid(), s);
  while (!wl_triggered) pause();
  WL_MUST(sendto(s, "second", 6, 0, (struct sockaddr *)&lo, sizeof lo) == 6);
  char buf[64] = "";
  ssize_t n = readable(r) ? recv(r, buf, sizeof buf, MSG_DONTWAIT) : -1;
  WL_CHECK(n == 17 && memcmp(buf, "first-half-second", 17) == 0, "the corked datagram came out as \"%.*s\"",
           (int)(n > 0 ? n : 0), buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s READY REPORT CASE\n", argv[0]);
    return 2;
  }
  wl_install_trigger();
  const char *which = argv[3];
  int rc = 2;
  if (strcmp(which, "ping") == 0) rc = run_ping(argv[1], 0);
  else if (strcmp(which, "ping_unread") == 0) rc = run_ping(argv[1], 1);
  else if (strcmp(which, "raw") == 0) rc = run_raw(argv[1]);
  else if (strcmp(which, "udplite") == 0) rc = run_udplite(argv[1]);
  else if (strcmp(which, "packet") == 0) rc = run_packet(argv[1]);
  else if (strcmp(which, "options") == 0) rc = run_options(argv[1]);
  else if (strcmp(which, "udp_corked") == 0) rc = run_udp_corked(argv[1]);
  else {
    fprintf(stderr, "unknown case %s\n", which);
    return 2;
  }
  (void)rc;
  return wl_finish(argv[2]);
}
