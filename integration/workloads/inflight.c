// Sockets in flight (SCM_RIGHTS): sockets sent over a unix socket and not yet
// received, which no process holds any more (only the message does).
//
//   inflight MODE READY REPORT DIR [DEPTH|PATH]
//
// Modes:
//   handover  the root sends its child, over a datagram socketpair, one end of a
//             stream socketpair with bytes queued in it, a connected TCP socket
//             with bytes queued, a unix socket connected to a named listener, a
//             listening unix socket, and a seqpacket socket whose own queue
//             carries another socket with bytes queued; it closes its copies.
//             After the trigger the child receives each, reads what was queued
//             and answers through it; the root reads the answers at the other
//             ends and connects to the listener the child now holds.
//   cycles    a socket in flight in its own queue while the process holds it,
//             and one that only queues hold: its own and its peer's.
//   deep      DEPTH sockets, each in flight in the queue of the one before, the
//             first in the queue of a socket the process holds (object_fd).
//   outside   one end of a socketpair sent to the datagram socket bound at PATH,
//             which a process outside the tree holds; the other end stays
//             (object_fd).
//
// Writes READY, waits for SIGUSR1, then checks from inside that every socket
// came back and still works.
#include "workload.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static const char *dir;
static int object_fd = -1;  // the fd a refusal must name

static socklen_t unix_addr(struct sockaddr_un *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static const char *in_dir(const char *name) {
  static char bufs[4][512];
  static int next;
  char *p = bufs[next++ % 4];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

static void set_timeout(int s) {
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// Receives one message into text (NUL-terminated) and the one file it carries
// (-1 if none); false if nothing came within 5 s.
static int recv_with(int s, char *text, size_t size, int *fd) {
  int n = wl_recv_fds(s, text, size, fd, 1);
  if (n <= 0) *fd = -1;
  return n >= 0;
}

// Expects `want` (its exact bytes) from s within 5 s.
static void expect_bytes(int s, const char *want, const char *what) {
  char buf[128] = {0};
  size_t len = strlen(want), got = 0;
  set_timeout(s);
  while (got < len) {
    ssize_t n = recv(s, buf + got, len - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
  }
  WL_CHECK(got == len && !memcmp(buf, want, len), "%s: got '%s' (%zu bytes), want '%s'", what, buf, got, want);
}

static void say(int s, const char *text) { WL_MUST(send(s, text, strlen(text), MSG_NOSIGNAL) == (ssize_t)strlen(text)); }

static ino_t inode_of(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// ---- handover ----------------------------------------------------------------------

static int chan[2];  // [0] the root's, [1] the child's
static pid_t child;
static int y_end, tcp_server, unix_server, unix_listener, seq_peer, deep_peer;
static int tcp_port;

// In the child, after the trigger: receives every socket in order and uses it.
static void receive_all(void) {
  char text[128];
  int fd;
  WL_CHECK(recv_with(chan[1], text, sizeof text, &fd) && !strcmp(text, "pair") && fd >= 0,
           "message 'pair': got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    expect_bytes(fd, "queued for x", "the socketpair end in flight");
    say(fd, "from x");
  }
  WL_CHECK(recv_with(chan[1], text, sizeof text, &fd) && !strcmp(text, "tcp") && fd >= 0,
           "message 'tcp': got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    WL_CHECK(getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && ntohs(peer.sin_port) == tcp_port,
             "the TCP socket in flight is no longer connected to port %d", tcp_port);
    expect_bytes(fd, "tcp bytes", "the TCP socket in flight");
    say(fd, "from c");
  }
  WL_CHECK(recv_with(chan[1], text, sizeof text, &fd) && !strcmp(text, "unix") && fd >= 0,
           "message 'unix': got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    expect_bytes(fd, "unix bytes", "the unix client in flight");
    say(fd, "from u");
  }
  WL_CHECK(recv_with(chan[1], text, sizeof text, &fd) && !strcmp(text, "listener") && fd >= 0,
           "message 'listener': got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    int on = 0;
    socklen_t len = sizeof on;
    WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on, "the listener in flight is not listening");
    struct pollfd p = {fd, POLLIN, 0};
    int a = poll(&p, 1, 5000) == 1 ? accept4(fd, NULL, NULL, SOCK_CLOEXEC) : -1;
    WL_CHECK(a >= 0, "no connection to the listener in flight: %s", strerror(errno));
    if (a >= 0) {
      expect_bytes(a, "hello listener", "a connection to the listener in flight");
      say(a, "accepted");
    }
  }
  WL_CHECK(recv_with(chan[1], text, sizeof text, &fd) && !strcmp(text, "nested") && fd >= 0,
           "message 'nested': got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    int inner;
    WL_CHECK(recv_with(fd, text, sizeof text, &inner) && !strcmp(text, "carrying n2") && inner >= 0,
             "the seqpacket socket in flight: got '%s' with fd %d, want 'carrying n2' with a socket", text, inner);
    if (inner >= 0) {
      expect_bytes(inner, "deep", "the socket in flight in a socket in flight");
      say(inner, "from n2");
    }
    say(fd, "from n1");
  }
}

static void build_handover(void) {
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, chan) == 0);
  // The TCP port, known before the fork: the child checks its peer.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  WL_MUST(listener >= 0 && bind(listener, (struct sockaddr *)&a, sizeof a) == 0 && listen(listener, 4) == 0);
  socklen_t len = sizeof a;
  WL_MUST(getsockname(listener, (struct sockaddr *)&a, &len) == 0);
  tcp_port = ntohs(a.sin_port);
  int sync[2];
  WL_MUST(pipe2(sync, O_CLOEXEC) == 0);
  child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    close(chan[0]);
    close(listener);
    close(sync[0]);
    wl_install_trigger();
    close(sync[1]);
    while (!wl_triggered) pause();
    receive_all();
    char verdict[sizeof wl_fail_text + 16];
    snprintf(verdict, sizeof verdict, "%s", wl_fail_count ? wl_fail_text : "OK");
    send(chan[1], verdict, strlen(verdict), 0);
    _exit(wl_fail_count ? 1 : 0);
  }
  close(chan[1]);
  close(sync[1]);
  char byte;
  WL_MUST(read(sync[0], &byte, 1) == 0);  // the child's trigger is in place
  close(sync[0]);

  // One end of a stream socketpair, with bytes queued for it.
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
  say(p[1], "queued for x");
  wl_send_fds(chan[0], "pair", &p[0], 1);
  close(p[0]);
  y_end = p[1];

  // A connected TCP socket, with bytes queued for it.
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  WL_MUST(c >= 0 && connect(c, (struct sockaddr *)&a, sizeof a) == 0);
  tcp_server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  WL_MUST(tcp_server >= 0);
  close(listener);
  say(tcp_server, "tcp bytes");
  int queued = 0;
  for (int i = 0; i < 500 && queued < 9; i++) {  // loopback delivers at once; wait for it anyway
    WL_MUST(ioctl(c, FIONREAD, &queued) == 0);
    if (queued < 9) wl_sleep_ms(2);
  }
  wl_send_fds(chan[0], "tcp", &c, 1);
  close(c);

  // A unix client of a named listener, with bytes queued for it.
  unix_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un ua;
  socklen_t ulen = unix_addr(&ua, in_dir("listener.sock"));
  WL_MUST(unix_listener >= 0 && bind(unix_listener, (struct sockaddr *)&ua, ulen) == 0 && listen(unix_listener, 4) == 0);
  int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  WL_MUST(u >= 0 && connect(u, (struct sockaddr *)&ua, ulen) == 0);
  unix_server = accept4(unix_listener, NULL, NULL, SOCK_CLOEXEC);
  WL_MUST(unix_server >= 0);
  say(unix_server, "unix bytes");
  wl_send_fds(chan[0], "unix", &u, 1);
  close(u);

  // A listening socket.
  int fl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ulen = unix_addr(&ua, in_dir("flying.sock"));
  WL_MUST(fl >= 0 && bind(fl, (struct sockaddr *)&ua, ulen) == 0 && listen(fl, 4) == 0);
  wl_send_fds(chan[0], "listener", &fl, 1);
  close(fl);

  // A seqpacket socket whose queue carries a stream socket with bytes queued.
  int n1[2], n2[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, n1) == 0);
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, n2) == 0);
  say(n2[1], "deep");
  wl_send_fds(n1[1], "carrying n2", &n2[0], 1);
  close(n2[0]);
  wl_send_fds(chan[0], "nested", &n1[0], 1);
  close(n1[0]);
  seq_peer = n1[1];
  deep_peer = n2[1];
}

static void verify_handover(void) {
  kill(child, SIGUSR1);
  expect_bytes(y_end, "from x", "the peer of the socketpair end in flight");
  expect_bytes(tcp_server, "from c", "the TCP peer of the socket in flight");
  expect_bytes(unix_server, "from u", "the accepted end of the unix client in flight");
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un ua;
  socklen_t ulen = unix_addr(&ua, in_dir("flying.sock"));
  WL_CHECK(s >= 0 && connect(s, (struct sockaddr *)&ua, ulen) == 0, "connect to the listener in flight: %s",
           strerror(errno));
  say(s, "hello listener");
  expect_bytes(s, "accepted", "the listener in flight's connection");
  expect_bytes(deep_peer, "from n2", "the peer of the socket in flight in a socket in flight");
  char text[128];
  memset(text, 0, sizeof text);
  set_timeout(seq_peer);
  WL_CHECK(recv(seq_peer, text, sizeof text - 1, 0) == 7 && !strcmp(text, "from n1"),
           "the peer of the seqpacket socket in flight got '%s'", text);
  char verdict[sizeof wl_fail_text + 16] = {0};
  set_timeout(chan[0]);
  ssize_t n = recv(chan[0], verdict, sizeof verdict - 1, 0);
  WL_CHECK(n > 0 && !strcmp(verdict, "OK"), "the receiving child: %s", n > 0 ? verdict : "no verdict");
  int status = 0;
  WL_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the receiving child ended with status %#x", status);
}

// ---- cycles ------------------------------------------------------------------------

static int self_held, self_writer, cycle_peer;

static void build_cycles(void) {
  // Held by the process and in flight in its own queue.
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
  wl_send_fds(p[1], "self", &p[0], 1);
  self_held = p[0];
  self_writer = p[1];
  // Held by no process: in flight in its own queue and in its peer's.
  int q[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q) == 0);
  wl_send_fds(q[1], "to c", &q[0], 1);
  wl_send_fds(q[0], "to d", &q[0], 1);
  close(q[0]);
  cycle_peer = q[1];
}

static void verify_cycles(void) {
  char text[128];
  int fd;
  WL_CHECK(recv_with(self_held, text, sizeof text, &fd) && !strcmp(text, "self") && fd >= 0,
           "the held socket's queue: got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    WL_CHECK(inode_of(fd) == inode_of(self_held), "the socket in flight in its own queue is another socket");
    say(self_writer, "ping");
    expect_bytes(fd, "ping", "the socket in flight in its own queue");
  }
  WL_CHECK(recv_with(cycle_peer, text, sizeof text, &fd) && !strcmp(text, "to d") && fd >= 0,
           "the peer's queue: got '%s' with fd %d", text, fd);
  if (fd >= 0) {
    int again;
    WL_CHECK(recv_with(fd, text, sizeof text, &again) && !strcmp(text, "to c") && again >= 0,
             "the cycle's own queue: got '%s' with fd %d", text, again);
    WL_CHECK(again < 0 || inode_of(again) == inode_of(fd), "the socket in flight in its own queue is another socket");
    say(fd, "pong");
    expect_bytes(cycle_peer, "pong", "the peer of the cycle");
  }
}

// ---- deep --------------------------------------------------------------------------

static int deep_reader, deep_count;

static void build_deep(int depth) {
  deep_count = depth;
  int inner = -1;
  for (int i = 0; i < depth; i++) {
    int p[2];
    WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) == 0);
    if (inner >= 0) {
      wl_send_fds(p[1], "level", &inner, 1);
      close(inner);
    }
    close(p[1]);
    inner = p[0];
  }
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) == 0);
  wl_send_fds(p[1], "level", &inner, 1);
  close(inner);
  close(p[1]);
  deep_reader = object_fd = p[0];
}

static void verify_deep(void) {
  int s = deep_reader, levels = 0;
  char text[64];
  int fd;
  while (recv_with(s, text, sizeof text, &fd) && fd >= 0) {
    levels++;
    s = fd;
  }
  WL_CHECK(levels == deep_count, "%d sockets in flight one in another, want %d", levels, deep_count);
}

// ---- outside -----------------------------------------------------------------------

static int outside_kept;

static void build_outside(const char *path) {
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
  int sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un ua;
  socklen_t len = unix_addr(&ua, path);
  WL_MUST(sender >= 0 && connect(sender, (struct sockaddr *)&ua, len) == 0);
  wl_send_fds(sender, "outside", &p[0], 1);
  close(sender);
  close(p[0]);
  outside_kept = object_fd = p[1];
}

static void verify_outside(void) { say(outside_kept, "still connected"); }

int main(int argc, char **argv) {
  const char *usage = "MODE READY REPORT DIR [DEPTH|PATH]";
  const char *mode = wl_arg(argc, argv, 1, usage);
  const char *ready = wl_arg(argc, argv, 2, usage);
  const char *report = wl_arg(argc, argv, 3, usage);
  dir = wl_arg(argc, argv, 4, usage);
  signal(SIGPIPE, SIG_IGN);
  wl_install_trigger();
  void (*verify)(void) = NULL;
  if (!strcmp(mode, "handover")) {
    build_handover();
    verify = verify_handover;
  } else if (!strcmp(mode, "cycles")) {
    build_cycles();
    verify = verify_cycles;
  } else if (!strcmp(mode, "deep")) {
    build_deep(atoi(wl_arg(argc, argv, 5, usage)));
    verify = verify_deep;
  } else if (!strcmp(mode, "outside")) {
    build_outside(wl_arg(argc, argv, 5, usage));
    verify = verify_outside;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  wl_ready(ready, "pid=%d child=%d object_fd=%d port=%d", (int)getpid(), (int)child, object_fd, tcp_port);
  while (!wl_triggered) pause();
  verify();
  return wl_finish(report);
}
