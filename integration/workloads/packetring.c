// packetring: a packet socket on lo reading through an mmap receive ring
// (PACKET_RX_RING), the way capture programs do: it walks the ring in order,
// waiting at its next frame (V2) or block (V3) for TP_STATUS_USER, reads it
// and hands it back.
//
//   packetring READY REPORT CASE
//
// CASE:
//   v2       TPACKET_V2, 8 frames: 11 frames sent on lo, 9 read (the reader has
//            gone round once), the last 2 left unread. After restore: the 2 unread come first,
//            then 20 frames sent one by one are read in order, each where the reader
//            waits for it.
//   v3       TPACKET_V3, 4 blocks closed by the retire timer: 5 blocks read, one
//            closed and left unread. After restore: that one, then 10 frames sent one
//            by one, each in the next block.
//   tx       a PACKET_TX_RING (its dump is refused).
//
// Frames carry the ethertype 0x88b5 and "cryo-ring-SEQ"; the reader skips any
// other frame (other programs may use the ethertype on lo). After restore the ring
// must be mapped at the same address, from the same socket.
// READY carries pid=PID fd=FD ring=ADDRESS.
#include "workload.h"

#include <net/if.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define ETHERTYPE_RING 0x88b5
#define MAGIC "cryo-ring-"

static int lo_index(void) { return (int)if_nametoindex("lo"); }

static void send_frame(int sender, int seq) {
  unsigned char frame[ETH_HLEN + 32];
  memset(frame, 0, sizeof frame);
  frame[12] = ETHERTYPE_RING >> 8;
  frame[13] = ETHERTYPE_RING & 0xff;
  snprintf((char *)frame + ETH_HLEN, 32, MAGIC "%d", seq);
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = lo_index(), .sll_halen = ETH_ALEN};
  WL_MUST(sendto(sender, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof frame);
}

// The sequence number of a frame of ours (mac: its Ethernet header), or -1.
static int frame_seq(const unsigned char *mac, unsigned len) {
  if (len < ETH_HLEN + sizeof MAGIC || mac[12] != (ETHERTYPE_RING >> 8) || mac[13] != (ETHERTYPE_RING & 0xff) ||
      memcmp(mac + ETH_HLEN, MAGIC, strlen(MAGIC)) != 0)
    return -1;
  return atoi((const char *)mac + ETH_HLEN + strlen(MAGIC));
}

struct ring {
  int s;
  unsigned char *map;
  unsigned block_size, block_nr, frame_size, frame_nr;
  unsigned next;  // the reader's own index: frame (V2) or block (V3)
};

static int open_ring(struct ring *r, int version, int tx) {
  r->s = socket(AF_PACKET, SOCK_RAW, 0);
  WL_MUST(r->s >= 0);
  WL_MUST(setsockopt(r->s, SOL_PACKET, PACKET_VERSION, &version, sizeof version) == 0);
  r->block_size = 4096;
  r->block_nr = 4;
  r->frame_size = 2048;
  r->frame_nr = 8;
  struct tpacket_req3 req = {.tp_block_size = r->block_size, .tp_block_nr = r->block_nr,
                             .tp_frame_size = r->frame_size, .tp_frame_nr = r->frame_nr,
                             .tp_retire_blk_tov = version == TPACKET_V3 ? 10 : 0};
  socklen_t len = version == TPACKET_V3 ? sizeof req : sizeof(struct tpacket_req);
  WL_MUST(setsockopt(r->s, SOL_PACKET, tx ? PACKET_TX_RING : PACKET_RX_RING, &req, len) == 0);
  r->map = mmap(NULL, r->block_size * r->block_nr, PROT_READ | PROT_WRITE, MAP_SHARED, r->s, 0);
  WL_MUST(r->map != MAP_FAILED);
  struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE_RING), .sll_ifindex = lo_index()};
  WL_MUST(bind(r->s, (struct sockaddr *)&ll, sizeof ll) == 0);
  r->next = 0;
  return r->s;
}

// Waits (poll, then the status word) for the reader's next frame or block.
static int wait_user(struct ring *r, volatile uint32_t *status) {
  for (int i = 0; i < 300; i++) {
    if (*status & TP_STATUS_USER) {
      __sync_synchronize();
      return 1;
    }
    struct pollfd p = {r->s, POLLIN, 0};
    poll(&p, 1, 10);
  }
  return 0;
}

// V2: the seq of the next frame of ours, handing back every frame it reads.
static int next_v2(struct ring *r) {
  for (;;) {
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)(r->map + r->next * r->frame_size);
    if (!wait_user(r, &h->tp_status)) return -1;
    int seq = frame_seq((unsigned char *)h + h->tp_mac, h->tp_snaplen);
    h->tp_status = TP_STATUS_KERNEL;
    r->next = (r->next + 1) % r->frame_nr;
    if (seq >= 0) return seq;
  }
}

// V3: the seqs of the frames of ours in the next block that holds any (at
// most max), handing back every block it reads.
static int next_v3(struct ring *r, int *seqs, int max) {
  for (;;) {
    struct tpacket_block_desc *b = (struct tpacket_block_desc *)(r->map + r->next * r->block_size);
    if (!wait_user(r, &b->hdr.bh1.block_status)) return -1;
    int n = 0;
    struct tpacket3_hdr *h = (struct tpacket3_hdr *)((unsigned char *)b + b->hdr.bh1.offset_to_first_pkt);
    for (unsigned i = 0; i < b->hdr.bh1.num_pkts; i++) {
      int seq = frame_seq((unsigned char *)h + h->tp_mac, h->tp_snaplen);
      if (seq >= 0 && n < max) seqs[n++] = seq;
      h = (struct tpacket3_hdr *)((unsigned char *)h + h->tp_next_offset);
    }
    b->hdr.bh1.block_status = TP_STATUS_KERNEL;
    r->next = (r->next + 1) % r->block_nr;
    if (n > 0) return n;
  }
}

// Whether /proc/self/maps shows the ring at its address, mapped from socket s.
static int ring_in_place(const struct ring *r) {
  struct stat st;
  if (fstat(r->s, &st) < 0) return 0;
  char text[65536];
  ssize_t n = wl_read_file("/proc/self/maps", text, sizeof text - 1);
  if (n < 0) return 0;
  text[n] = 0;
  char want[128];
  snprintf(want, sizeof want, "%lx-%lx rw-s", (unsigned long)r->map,
           (unsigned long)(r->map + r->block_size * r->block_nr));
  char *line = strstr(text, want);
  if (!line) return 0;
  char *end = strchr(line, '\n');
  if (end) *end = 0;
  char sock[64];
  snprintf(sock, sizeof sock, "socket:[%lu]", (unsigned long)st.st_ino);
  return strstr(line, sock) != NULL;
}

static int run_v2(const char *ready) {
  struct ring r;
  open_ring(&r, TPACKET_V2, 0);
  int sender = socket(AF_PACKET, SOCK_RAW, 0);  // never bound: receives nothing
  WL_MUST(sender >= 0);
  for (int seq = 1; seq <= 11; seq++) {  // no more than the ring holds at a time
    send_frame(sender, seq);
    if (seq == 7 || seq == 11)
      for (int want = seq == 7 ? 1 : 8; want <= (seq == 7 ? 7 : 9); want++) {
        int got = next_v2(&r);
        WL_CHECK(got == want, "before the dump: frame %d read, want %d", got, want);
      }
  }
  wl_ready(ready, "pid=%d fd=%d ring=%lx", (int)getpid(), r.s, (unsigned long)r.map);
  while (!wl_triggered) pause();
  WL_CHECK(ring_in_place(&r), "the ring is not mapped at %p from its socket", (void *)r.map);
  for (int seq = 10; seq <= 31; seq++) {
    if (seq > 11) send_frame(sender, seq);
    int got = next_v2(&r);
    WL_CHECK(got == seq, "frame %d read at frame %u of the ring, want %d", got, (r.next + r.frame_nr - 1) % r.frame_nr,
             seq);
    if (got != seq) break;
  }
  return 0;
}

static int run_v3(const char *ready) {
  struct ring r;
  open_ring(&r, TPACKET_V3, 0);
  int sender = socket(AF_PACKET, SOCK_RAW, 0);
  WL_MUST(sender >= 0);
  int seqs[8];
  for (int seq = 1; seq <= 5; seq++) {  // one frame a block: the timer closes each
    send_frame(sender, seq);
    int n = next_v3(&r, seqs, 8);
    WL_CHECK(n == 1 && seqs[0] == seq, "before the dump: block %u holds %d frames, the first %d, want %d",
             (r.next + r.block_nr - 1) % r.block_nr, n, n > 0 ? seqs[0] : -1, seq);
  }
  send_frame(sender, 6);  // its block closed, not read
  struct tpacket_block_desc *b = (struct tpacket_block_desc *)(r.map + r.next * r.block_size);
  WL_MUST(wait_user(&r, &b->hdr.bh1.block_status));
  wl_ready(ready, "pid=%d fd=%d ring=%lx", (int)getpid(), r.s, (unsigned long)r.map);
  while (!wl_triggered) pause();
  WL_CHECK(ring_in_place(&r), "the ring is not mapped at %p from its socket", (void *)r.map);
  for (int seq = 6; seq <= 16; seq++) {
    if (seq > 6) send_frame(sender, seq);
    int n = next_v3(&r, seqs, 8);
    WL_CHECK(n == 1 && seqs[0] == seq, "block %u holds %d frames, the first %d, want %d",
             (r.next + r.block_nr - 1) % r.block_nr, n, n > 0 ? seqs[0] : -1, seq);
    if (n != 1 || seqs[0] != seq) break;
  }
  return 0;
}

static int run_tx(const char *ready) {
  struct ring r;
  open_ring(&r, TPACKET_V2, 1);
  wl_ready(ready, "pid=%d fd=%d ring=%lx", (int)getpid(), r.s, (unsigned long)r.map);
  while (!wl_triggered) pause();
  WL_CHECK(ring_in_place(&r), "the TX ring is not mapped at %p from its socket", (void *)r.map);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s READY REPORT CASE\n", argv[0]);
    return 2;
  }
  wl_install_trigger();
  const char *which = argv[3];
  if (strcmp(which, "v2") == 0) run_v2(argv[1]);
  else if (strcmp(which, "v3") == 0) run_v3(argv[1]);
  else if (strcmp(which, "tx") == 0) run_tx(argv[1]);
  else {
    fprintf(stderr, "unknown case %s\n", which);
    return 2;
  }
  return wl_finish(argv[2]);
}
