// Unix sockets in the states that are easy to get wrong: names relative to a
// directory, connections not yet accepted, unconnected datagram and seqpacket
// sockets, names unlinked or taken by another file, peers gone with bytes still
// queued, and file descriptors in flight.
//
//   unixsk MODE READY REPORT DIR [outside|drained|quiet|socket]
//
// Builds the state of MODE (its paths in DIR), writes READY, waits for SIGUSR1,
// then checks from inside that every socket is as it was and still works.
#include "workload.h"

#include <poll.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static const char *dir;
static int object_fd = -1;  // the fd a refusal must name

static char *in_dir(const char *name) {
  static char bufs[8][512];
  static int next;
  char *p = bufs[next++ % 8];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

static socklen_t make_addr(struct sockaddr_un *a, const char *path, int abstract) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (abstract) {
    size_t n = strlen(path);
    memcpy(a->sun_path + 1, path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  }
  snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static int new_bound(int type, const char *path, int abstract) {
  int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  WL_MUST(s >= 0);
  if (path) {
    struct sockaddr_un a;
    socklen_t len = make_addr(&a, path, abstract);
    WL_MUST(bind(s, (struct sockaddr *)&a, len) == 0);
  }
  return s;
}

static int connect_to(int type, const char *path) {
  int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  WL_MUST(s >= 0);
  struct sockaddr_un a;
  socklen_t len = make_addr(&a, path, 0);
  if (connect(s, (struct sockaddr *)&a, len) != 0) {
    close(s);
    return -1;
  }
  return s;
}

// The socket's own name (filesystem names without their NUL, abstract ones as "@name").
static const char *name_of(int s, int peer) {
  static char out[2][200];
  static int next;
  char *p = out[next++ % 2];
  struct sockaddr_un a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if ((peer ? getpeername(s, (struct sockaddr *)&a, &len) : getsockname(s, (struct sockaddr *)&a, &len)) != 0) {
    snprintf(p, 200, "(error %s)", strerror(errno));
    return p;
  }
  size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
  if (n == 0) {
    snprintf(p, 200, "(unnamed)");
  } else if (a.sun_path[0] == '\0') {
    snprintf(p, 200, "@%.*s", (int)(n - 1), a.sun_path + 1);
  } else {
    snprintf(p, 200, "%s", a.sun_path);
  }
  return p;
}

static void check_name(int s, int peer, const char *want, const char *what) {
  const char *got = name_of(s, peer);
  WL_CHECK(strcmp(got, want) == 0, "%s: %s is %s, want %s", what, peer ? "peer name" : "name", got, want);
}

// Receives one message within 5 s; returns its length (-1 on error or timeout).
static ssize_t recv_wait(int s, char *buf, size_t size) {
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n;
  do n = recv(s, buf, size, 0);
  while (n < 0 && errno == EINTR);
  return n;
}

static void expect_recv(int s, const char *want, const char *what) {
  char buf[256];
  ssize_t n = recv_wait(s, buf, sizeof buf - 1);
  if (n < 0) {
    wl_fail("%s: recv: %s", what, strerror(errno));
    return;
  }
  buf[n] = 0;
  WL_CHECK((size_t)n == strlen(want) && memcmp(buf, want, (size_t)n) == 0, "%s: got '%s', want '%s'", what, buf,
           want);
}

static void expect_eof(int s, const char *what) {
  char buf[16];
  ssize_t n = recv_wait(s, buf, sizeof buf);
  WL_CHECK(n == 0, "%s: want end of file, got %zd (%s)", what, n, n < 0 ? strerror(errno) : "data");
}

// accept() within 5 s, or -1 with errno ETIMEDOUT.
static int accept_wait(int l) {
  struct pollfd p = {.fd = l, .events = POLLIN};
  int n;
  do n = poll(&p, 1, 5000);
  while (n < 0 && errno == EINTR);
  if (n == 0) errno = ETIMEDOUT;
  return n > 0 ? accept4(l, NULL, NULL, SOCK_CLOEXEC) : -1;
}

static int nothing_to_accept(int l) {
  struct pollfd p = {.fd = l, .events = POLLIN};
  return poll(&p, 1, 0) == 0;
}

static int file_type(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0;
  return (int)(st.st_mode & S_IFMT);
}

// ---- relative: names relative to the directory they were bound in ----------------

static int rel_listener, rel_dgram, rel_client, rel_server;

static void build_relative(void) {
  WL_MUST(mkdir(in_dir("rel"), 0755) == 0);
  WL_MUST(chdir(in_dir("rel")) == 0);
  rel_listener = new_bound(SOCK_STREAM, "rel.sock", 0);
  WL_MUST(listen(rel_listener, 8) == 0);
  rel_dgram = new_bound(SOCK_DGRAM, "rel.dgram", 0);
  WL_MUST(chdir(dir) == 0);  // the cwd is no longer where the names were bound
  rel_client = connect_to(SOCK_STREAM, "rel/rel.sock");
  WL_MUST(rel_client >= 0);
  rel_server = accept(rel_listener, NULL, NULL);
  WL_MUST(rel_server >= 0);
  WL_MUST(send(rel_client, "to-server", 9, 0) == 9);
}

static void verify_relative(void) {
  check_name(rel_listener, 0, "rel.sock", "relative listener");
  check_name(rel_dgram, 0, "rel.dgram", "relative datagram socket");
  check_name(rel_client, 1, "rel.sock", "client of the relative listener");
  check_name(rel_server, 0, "rel.sock", "accepted end");
  expect_recv(rel_server, "to-server", "queued on the accepted end");
  WL_CHECK(file_type(in_dir("rel/rel.sock")) == S_IFSOCK, "rel/rel.sock is not a socket file");
  int late = connect_to(SOCK_STREAM, in_dir("rel/rel.sock"));
  WL_CHECK(late >= 0, "connect to the relative listener: %s", strerror(errno));
  int a = accept_wait(rel_listener);
  WL_CHECK(a >= 0, "the relative listener accepts: %s", strerror(errno));
  if (late >= 0 && a >= 0) {
    send(late, "late", 4, 0);
    expect_recv(a, "late", "a new connection to the relative listener");
  }
  int d = new_bound(SOCK_DGRAM, NULL, 0);
  struct sockaddr_un to;
  socklen_t len = make_addr(&to, in_dir("rel/rel.dgram"), 0);
  WL_CHECK(sendto(d, "dgram", 5, 0, (struct sockaddr *)&to, len) == 5, "send to the relative datagram socket: %s",
           strerror(errno));
  expect_recv(rel_dgram, "dgram", "relative datagram socket");
}

// ---- pending: connections the listener has not accepted ----------------------------

static int pend_listener, pend_c1, pend_c2, pend_outside, pend_quiet;
static pid_t pend_child;

// quiet: no client has sent anything yet (what cryo can save: the bytes of a
// connection not yet accepted can be read only by accepting it).
static void build_pending(int outside, int quiet) {
  pend_outside = outside;
  pend_quiet = quiet;
  pend_listener = new_bound(SOCK_STREAM, in_dir("pending.sock"), 0);
  WL_MUST(listen(pend_listener, 16) == 0);
  object_fd = pend_listener;
  pend_c1 = connect_to(SOCK_STREAM, in_dir("pending.sock"));
  WL_MUST(pend_c1 >= 0);
  WL_MUST(quiet || send(pend_c1, "first-client", 12, 0) == 12);
  pend_c2 = connect_to(SOCK_STREAM, in_dir("pending.sock"));  // sends nothing
  WL_MUST(pend_c2 >= 0);
  int sync[2];
  WL_MUST(pipe2(sync, O_CLOEXEC) == 0);
  pend_child = fork();
  WL_MUST(pend_child >= 0);
  if (pend_child == 0) {  // a client in another process of the tree
    wl_install_trigger();
    int c = connect_to(SOCK_STREAM, in_dir("pending.sock"));
    if (c < 0 || (!quiet && send(c, "child-client", 12, 0) != 12)) _exit(3);
    close(sync[1]);
    while (!wl_triggered) pause();
    char buf[64];
    ssize_t n = recv_wait(c, buf, sizeof buf);
    _exit(n == 5 && memcmp(buf, "reply", 5) == 0 ? 0 : 1);
  }
  close(sync[1]);
  char byte;
  WL_MUST(read(sync[0], &byte, 1) == 0);  // the child's connection is queued
  close(sync[0]);
  // The outside client (the test) connects once READY is written.
}

// Each of the three quiet connections is accepted once, and carries bytes
// both ways: the clients are connected to the listener again.
static void verify_pending_quiet(void) {
  int got[3];
  for (int i = 0; i < 3; i++) {
    got[i] = accept_wait(pend_listener);
    if (got[i] < 0) {
      wl_fail("accept connection %d of 3: %s", i + 1, strerror(errno));
      return;
    }
  }
  WL_CHECK(nothing_to_accept(pend_listener), "more connections than the 3 queued");
  for (int i = 0; i < 3; i++) WL_CHECK(send(got[i], "reply", 5, 0) == 5, "send on accepted connection %d", i);
  expect_recv(pend_c1, "reply", "the first client hears the listener");
  expect_recv(pend_c2, "reply", "the second client hears the listener");
  check_name(pend_c1, 1, in_dir("pending.sock"), "first client");
  WL_CHECK(send(pend_c1, "late-bytes", 10, 0) == 10, "the first client sends");
  int heard = 0;
  for (int i = 0; i < 3 && !heard; i++) {
    char buf[32];
    struct timeval tv = {0, 200000};
    setsockopt(got[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t k = recv(got[i], buf, sizeof buf, 0);
    heard = k == 10 && !memcmp(buf, "late-bytes", 10);
  }
  WL_CHECK(heard, "no accepted connection heard the first client");
  kill(pend_child, SIGUSR1);
  int status = 0;
  WL_CHECK(waitpid(pend_child, &status, 0) == pend_child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child client did not hear its answer (status %#x)", status);
}

static void verify_pending(void) {
  if (pend_quiet) {
    verify_pending_quiet();
    return;
  }
  int want = 3 + pend_outside;
  int got[8], n = 0;
  char seen[8][32];
  for (int i = 0; i < want; i++) {
    int a = accept_wait(pend_listener);
    if (a < 0) {
      wl_fail("accept connection %d of %d: %s", i + 1, want, strerror(errno));
      break;
    }
    struct timeval tv = {0, 300000};
    setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t k = recv(a, seen[n], sizeof seen[n] - 1, 0);
    seen[n][k > 0 ? k : 0] = 0;
    if (k < 0) snprintf(seen[n], sizeof seen[n], "(nothing)");
    got[n++] = a;
  }
  WL_CHECK(nothing_to_accept(pend_listener), "more connections than the %d queued", want);
  int first = -1, child = -1, empty = -1, outside = -1;
  for (int i = 0; i < n; i++) {
    if (!strcmp(seen[i], "first-client")) first = i;
    if (!strcmp(seen[i], "child-client")) child = i;
    if (!strcmp(seen[i], "(nothing)")) empty = i;
    if (!strcmp(seen[i], "from-outside")) outside = i;
  }
  WL_CHECK(first >= 0 && child >= 0 && empty >= 0 && (!pend_outside || outside >= 0),
           "accepted connections hold '%s' '%s' '%s' '%s'", n > 0 ? seen[0] : "", n > 1 ? seen[1] : "",
           n > 2 ? seen[2] : "", n > 3 ? seen[3] : "");
  if (first >= 0) {
    send(got[first], "reply1", 6, 0);
    expect_recv(pend_c1, "reply1", "the first client hears the listener's answer");
    check_name(pend_c1, 1, in_dir("pending.sock"), "first client");
  }
  if (empty >= 0) {
    send(pend_c2, "late-bytes", 10, 0);
    expect_recv(got[empty], "late-bytes", "the second client's connection");
  }
  if (outside >= 0) expect_eof(got[outside], "the outside client is gone after the checkpoint");
  if (child >= 0) send(got[child], "reply", 5, 0);
  kill(pend_child, SIGUSR1);
  int status = 0;
  WL_CHECK(waitpid(pend_child, &status, 0) == pend_child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child client did not hear its answer (status %#x)", status);
}

// ---- dgram: unconnected datagram and seqpacket sockets ----------------------------

static int dg_path, dg_abstract, dg_unbound, sq_unbound, sq_bound, st_unbound;
static char abstract_name[64];

static void build_dgram(void) {
  snprintf(abstract_name, sizeof abstract_name, "cryo-unixsk-%d", (int)getpid());
  dg_path = new_bound(SOCK_DGRAM, in_dir("d.dgram"), 0);
  dg_abstract = new_bound(SOCK_DGRAM, abstract_name, 1);
  dg_unbound = new_bound(SOCK_DGRAM, NULL, 0);
  sq_unbound = new_bound(SOCK_SEQPACKET, NULL, 0);
  sq_bound = new_bound(SOCK_SEQPACKET, in_dir("q.seq"), 0);
  st_unbound = new_bound(SOCK_STREAM, NULL, 0);
  struct sockaddr_un to;
  socklen_t len = make_addr(&to, in_dir("d.dgram"), 0);
  WL_MUST(sendto(dg_unbound, "from-unbound", 12, 0, (struct sockaddr *)&to, len) == 12);
  WL_MUST(sendto(dg_abstract, "from-abstract", 13, 0, (struct sockaddr *)&to, len) == 13);
  len = make_addr(&to, abstract_name, 1);
  WL_MUST(sendto(dg_path, "from-path", 9, 0, (struct sockaddr *)&to, len) == 9);
}

static void expect_from(int s, const char *want, const char *from, const char *what) {
  char buf[128];
  struct sockaddr_un a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&a, &alen);
  if (n < 0) {
    wl_fail("%s: %s", what, strerror(errno));
    return;
  }
  buf[n] = 0;
  char sender[128];
  size_t k = alen > offsetof(struct sockaddr_un, sun_path) ? alen - offsetof(struct sockaddr_un, sun_path) : 0;
  if (k == 0)
    snprintf(sender, sizeof sender, "(unnamed)");
  else if (a.sun_path[0] == 0)
    snprintf(sender, sizeof sender, "@%.*s", (int)(k - 1), a.sun_path + 1);
  else
    snprintf(sender, sizeof sender, "%s", a.sun_path);
  WL_CHECK(!strcmp(buf, want) && !strcmp(sender, from), "%s: got '%s' from %s, want '%s' from %s", what, buf, sender,
           want, from);
}

static void check_type(int s, int want, const char *what) {
  int type = 0;
  socklen_t len = sizeof type;
  getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len);
  WL_CHECK(type == want, "%s: type %d, want %d", what, type, want);
}

static void verify_dgram(void) {
  char at[80];
  snprintf(at, sizeof at, "@%s", abstract_name);
  expect_from(dg_path, "from-unbound", "(unnamed)", "datagram from an unbound sender");
  expect_from(dg_path, "from-abstract", at, "datagram from an abstract sender");
  expect_from(dg_abstract, "from-path", in_dir("d.dgram"), "datagram from a named sender");
  check_name(dg_unbound, 0, "(unnamed)", "unbound datagram socket");
  check_name(sq_unbound, 0, "(unnamed)", "unbound seqpacket socket");
  check_name(sq_bound, 0, in_dir("q.seq"), "bound seqpacket socket");
  check_name(st_unbound, 0, "(unnamed)", "unbound stream socket");
  check_type(dg_unbound, SOCK_DGRAM, "unbound datagram socket");
  check_type(sq_unbound, SOCK_SEQPACKET, "unbound seqpacket socket");
  check_type(sq_bound, SOCK_SEQPACKET, "bound seqpacket socket");
  check_type(st_unbound, SOCK_STREAM, "unbound stream socket");
  // They still work: the bound seqpacket socket listens, the unbound one connects to it.
  WL_CHECK(listen(sq_bound, 4) == 0, "listen on the bound seqpacket socket: %s", strerror(errno));
  struct sockaddr_un a;
  socklen_t len = make_addr(&a, in_dir("q.seq"), 0);
  WL_CHECK(connect(sq_unbound, (struct sockaddr *)&a, len) == 0, "connect the unbound seqpacket socket: %s",
           strerror(errno));
  int s = accept_wait(sq_bound);
  WL_CHECK(s >= 0, "accept on the seqpacket socket: %s", strerror(errno));
  if (s >= 0) {
    send(sq_unbound, "p1", 2, 0);
    send(sq_unbound, "p2", 2, 0);
    expect_recv(s, "p1", "first packet");
    expect_recv(s, "p2", "second packet");
  }
  len = make_addr(&a, in_dir("d.dgram"), 0);
  WL_CHECK(sendto(dg_unbound, "again", 5, 0, (struct sockaddr *)&a, len) == 5, "sendto: %s", strerror(errno));
  expect_from(dg_path, "again", "(unnamed)", "a new datagram");
}

// ---- unlinked: names unlinked, taken by another file, in a removed directory --------

static int ul_listener, ul_client, ul_server, ul_dgram, ul_old, ul_new, ul_gone;

static void build_unlinked(void) {
  ul_listener = new_bound(SOCK_STREAM, in_dir("x.sock"), 0);
  WL_MUST(listen(ul_listener, 4) == 0);
  ul_client = connect_to(SOCK_STREAM, in_dir("x.sock"));
  WL_MUST(ul_client >= 0);
  ul_server = accept(ul_listener, NULL, NULL);
  WL_MUST(ul_server >= 0);
  WL_MUST(send(ul_client, "before-unlink", 13, 0) == 13);
  WL_MUST(unlink(in_dir("x.sock")) == 0);

  ul_dgram = new_bound(SOCK_DGRAM, in_dir("y.dgram"), 0);
  WL_MUST(unlink(in_dir("y.dgram")) == 0);
  int f = open(in_dir("y.dgram"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  WL_MUST(f >= 0 && write(f, "a file", 6) == 6);
  close(f);

  ul_old = new_bound(SOCK_STREAM, in_dir("z.sock"), 0);
  WL_MUST(listen(ul_old, 4) == 0);
  WL_MUST(unlink(in_dir("z.sock")) == 0);
  ul_new = new_bound(SOCK_STREAM, in_dir("z.sock"), 0);
  WL_MUST(listen(ul_new, 4) == 0);

  WL_MUST(mkdir(in_dir("gone"), 0755) == 0);
  ul_gone = new_bound(SOCK_DGRAM, in_dir("gone/w.sock"), 0);
  WL_MUST(unlink(in_dir("gone/w.sock")) == 0);
  WL_MUST(rmdir(in_dir("gone")) == 0);
}

static void verify_unlinked(void) {
  check_name(ul_listener, 0, in_dir("x.sock"), "unlinked listener");
  WL_CHECK(file_type(in_dir("x.sock")) == 0, "x.sock exists again");
  expect_recv(ul_server, "before-unlink", "the connection to the unlinked listener");
  send(ul_server, "answer", 6, 0);
  expect_recv(ul_client, "answer", "the client of the unlinked listener");
  check_name(ul_client, 1, in_dir("x.sock"), "client of the unlinked listener");

  check_name(ul_dgram, 0, in_dir("y.dgram"), "datagram socket whose name is now a file");
  char buf[16] = {0};
  WL_CHECK(file_type(in_dir("y.dgram")) == S_IFREG && wl_read_file(in_dir("y.dgram"), buf, sizeof buf) == 6 &&
               !memcmp(buf, "a file", 6),
           "y.dgram is no longer the regular file it was");

  check_name(ul_old, 0, in_dir("z.sock"), "listener whose name another took");
  check_name(ul_new, 0, in_dir("z.sock"), "listener that took the name");
  int c = connect_to(SOCK_STREAM, in_dir("z.sock"));
  WL_CHECK(c >= 0, "connect to z.sock: %s", strerror(errno));
  int a = accept_wait(ul_new);
  WL_CHECK(a >= 0, "the name's new owner accepts: %s", strerror(errno));
  WL_CHECK(nothing_to_accept(ul_old), "the name's old owner got the connection");

  check_name(ul_gone, 0, in_dir("gone/w.sock"), "socket bound in a removed directory");
  WL_CHECK(file_type(in_dir("gone")) == 0, "the removed directory exists again");
}

// ---- gone_peer: bytes queued by a peer that closed -------------------------------

static int gp_stream, gp_seq, gp_named, gp_dgram;

static void build_gone_peer(void) {
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
  WL_MUST(send(p[0], "last words", 10, 0) == 10);
  close(p[0]);
  gp_stream = p[1];
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) == 0);
  WL_MUST(send(p[0], "packet-1", 8, 0) == 8 && send(p[0], "packet-2", 8, 0) == 8);
  close(p[0]);
  gp_seq = p[1];
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, p) == 0);
  WL_MUST(send(p[0], "datagram-1", 10, 0) == 10 && send(p[0], "datagram-2", 10, 0) == 10);
  close(p[0]);
  gp_dgram = p[1];
  int l = new_bound(SOCK_STREAM, in_dir("gp.sock"), 0);
  WL_MUST(listen(l, 4) == 0);
  int c = connect_to(SOCK_STREAM, in_dir("gp.sock"));
  WL_MUST(c >= 0);
  gp_named = accept(l, NULL, NULL);
  WL_MUST(gp_named >= 0);
  WL_MUST(send(c, "named goodbye", 13, 0) == 13);
  close(c);
  close(l);
}

static void verify_gone_peer(void) {
  expect_recv(gp_stream, "last words", "stream bytes of a gone peer");
  expect_eof(gp_stream, "stream of a gone peer");
  expect_recv(gp_seq, "packet-1", "first packet of a gone peer");
  expect_recv(gp_seq, "packet-2", "second packet of a gone peer");
  expect_eof(gp_seq, "seqpacket of a gone peer");
  expect_recv(gp_dgram, "datagram-1", "first datagram of a gone peer");
  expect_recv(gp_dgram, "datagram-2", "second datagram of a gone peer");
  // Still connected to the closed end: the first send is refused, as the kernel does.
  WL_CHECK(send(gp_dgram, "x", 1, MSG_DONTWAIT) < 0 && errno == ECONNREFUSED,
           "sending to a gone datagram peer: want ECONNREFUSED, got %s", strerror(errno));
  expect_recv(gp_named, "named goodbye", "accepted end of a gone client");
  expect_eof(gp_named, "accepted end of a gone client");
  signal(SIGPIPE, SIG_IGN);
  WL_CHECK(send(gp_stream, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "writing to a gone peer: want EPIPE");
}

// ---- in_flight: file descriptors and credentials queued in a socket ------------------

static int fl_reader, fl_writer, fl_stream_reader;

static void build_in_flight(void) {
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, p) == 0);
  fl_writer = p[0];
  fl_reader = p[1];
  // A file no task holds any more: only the message keeps it open.
  int f = open(in_dir("flying.txt"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  WL_MUST(f >= 0 && write(f, "file contents", 13) == 13);
  WL_MUST(lseek(f, 5, SEEK_SET) == 5);
  int pipefd[2];
  WL_MUST(pipe2(pipefd, O_CLOEXEC) == 0);
  WL_MUST(write(pipefd[1], "through a pipe", 14) == 14);
  int fds[2] = {f, pipefd[0]};
  wl_send_fds(fl_writer, "two files", fds, 2);
  close(f);
  close(pipefd[0]);
  close(pipefd[1]);
  wl_send_fds(fl_writer, "no files", NULL, 0);
  int keep = open(in_dir("kept.txt"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  WL_MUST(keep >= 0 && write(keep, "still held", 10) == 10);
  wl_send_fds(fl_writer, "a held file", &keep, 1);
  // keep stays open in the task: the message's copy shares its offset.
  WL_MUST(dup2(keep, 40) == 40);
  close(keep);
  // A stream: bytes, then bytes carrying a memfd, then bytes again.
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
  fl_stream_reader = p[1];
  int mem = memfd_create("in-flight", MFD_CLOEXEC);
  WL_MUST(mem >= 0 && write(mem, "memfd bytes", 11) == 11);
  wl_send_fds(p[0], "abc", NULL, 0);
  wl_send_fds(p[0], "def", &mem, 1);
  wl_send_fds(p[0], "ghi", NULL, 0);
  close(mem);
  close(p[0]);
}

static void verify_in_flight(void) {
  char text[64], buf[64];
  int fds[8];
  int n = wl_recv_fds(fl_reader, text, sizeof text, fds, 8);
  WL_CHECK(n == 2 && !strcmp(text, "two files"), "first message: '%s' with %d fds", text, n);
  if (n == 2) {
    memset(buf, 0, sizeof buf);
    WL_CHECK(read(fds[0], buf, sizeof buf) == 8 && !strcmp(buf, "contents"),
             "the file in flight reads '%s' (its offset was 5)", buf);
    memset(buf, 0, sizeof buf);
    WL_CHECK(read(fds[1], buf, sizeof buf) == 14 && !strcmp(buf, "through a pipe"), "the pipe in flight holds '%s'",
             buf);
  }
  n = wl_recv_fds(fl_reader, text, sizeof text, fds, 8);
  WL_CHECK(n == 0 && !strcmp(text, "no files"), "second message: '%s' with %d fds", text, n);
  n = wl_recv_fds(fl_reader, text, sizeof text, fds, 8);
  WL_CHECK(n == 1 && !strcmp(text, "a held file"), "third message: '%s' with %d fds", text, n);
  if (n == 1) {
    // The same open file as fd 40: moving one offset moves the other.
    WL_CHECK(lseek(40, 3, SEEK_SET) == 3 && lseek(fds[0], 0, SEEK_CUR) == 3,
             "the file in flight and fd 40 no longer share their offset");
  }
  // The stream's reader gets the bytes up to those that carry the memfd,
  // with it, then the rest, and end of file (the writer is gone).
  n = wl_recv_fds(fl_stream_reader, text, sizeof text, fds, 8);
  WL_CHECK(n == 1 && !strcmp(text, "abcdef"), "stream: '%s' with %d fds, want 'abcdef' with the memfd", text, n);
  if (n == 1) {
    memset(buf, 0, sizeof buf);
    WL_CHECK(pread(fds[0], buf, sizeof buf, 0) == 11 && !strcmp(buf, "memfd bytes"), "the memfd in flight holds '%s'",
             buf);
  }
  n = wl_recv_fds(fl_stream_reader, text, sizeof text, fds, 8);
  WL_CHECK(n == 0 && !strcmp(text, "ghi"), "stream: '%s' with %d fds, want 'ghi'", text, n);
  WL_CHECK(recv(fl_stream_reader, text, sizeof text, 0) == 0, "stream: no end of file after the queued bytes");
}

// in_flight socket: one end of a stream socketpair in flight, with bytes
// queued in it; the other end stays.
static int fl_socket_reader, fl_socket_peer;

static void build_socket_in_flight(void) {
  int p[2], q[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, p) == 0);
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q) == 0);
  WL_MUST(write(q[1], "queued", 6) == 6);
  wl_send_fds(p[0], "a socket", &q[0], 1);
  close(q[0]);
  fl_socket_reader = p[1];  // (p[0], its writer, stays open)
  fl_socket_peer = q[1];
  object_fd = p[1];
}

static void verify_socket_in_flight(void) {
  char text[64], buf[16] = {0};
  int fds[8];
  int n = wl_recv_fds(fl_socket_reader, text, sizeof text, fds, 8);
  int type = 0;
  socklen_t len = sizeof type;
  WL_CHECK(n == 1 && getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM,
           "the socket in flight was lost (%d fds)", n);
  if (n != 1) return;
  WL_CHECK(read(fds[0], buf, sizeof buf - 1) == 6 && !strcmp(buf, "queued"), "the socket in flight holds '%s'", buf);
  memset(buf, 0, sizeof buf);
  WL_CHECK(write(fds[0], "answer", 6) == 6 && read(fl_socket_peer, buf, sizeof buf - 1) == 6 && !strcmp(buf, "answer"),
           "its peer got '%s'", buf);
}

// ---- passcred: SCM_CREDENTIALS for a reader with SO_PASSCRED ---------------------------

static int pc_reader, pc_drained;
static pid_t pc_child;

static void expect_cred(const char *want_text, pid_t want_pid) {
  char text[64] = {0};
  char control[CMSG_SPACE(sizeof(struct ucred))];
  struct iovec iov = {text, sizeof text - 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  struct timeval tv = {5, 0};
  setsockopt(pc_reader, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recvmsg(pc_reader, &msg, 0);
  if (n < 0) {
    wl_fail("recvmsg '%s': %s", want_text, strerror(errno));
    return;
  }
  struct ucred cred = {-1, (uid_t)-1, (gid_t)-1};
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) memcpy(&cred, CMSG_DATA(c), sizeof cred);
  WL_CHECK(!strcmp(text, want_text) && cred.pid == want_pid && cred.uid == getuid() && cred.gid == getgid(),
           "got '%s' from pid %d uid %d gid %d, want '%s' from pid %d", text, (int)cred.pid, (int)cred.uid,
           (int)cred.gid, want_text, (int)want_pid);
}

// drained: the messages are read before READY, only SO_PASSCRED itself is saved.
static void build_passcred(int drained) {
  pc_drained = drained;
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) == 0);
  int on = 1;
  WL_MUST(setsockopt(p[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
  pc_reader = object_fd = p[1];
  WL_MUST(send(p[0], "plain", 5, 0) == 5);
  int sync[2];
  WL_MUST(pipe2(sync, O_CLOEXEC) == 0);
  pc_child = fork();
  WL_MUST(pc_child >= 0);
  if (pc_child == 0) {  // sends from another pid, then once more after the trigger
    wl_install_trigger();
    if (send(p[0], "from-child", 10, 0) != 10) _exit(3);
    close(sync[1]);
    while (!wl_triggered) pause();
    _exit(send(p[0], "after", 5, 0) == 5 ? 0 : 1);
  }
  close(p[0]);
  close(sync[1]);
  char byte;
  WL_MUST(read(sync[0], &byte, 1) == 0);
  close(sync[0]);
  if (drained) {
    expect_cred("plain", getpid());
    expect_cred("from-child", pc_child);
  }
}

static void verify_passcred(void) {
  if (!pc_drained) {
    expect_cred("plain", getpid());
    expect_cred("from-child", pc_child);
  }
  int on = 0;
  socklen_t len = sizeof on;
  WL_CHECK(getsockopt(pc_reader, SOL_SOCKET, SO_PASSCRED, &on, &len) == 0 && on, "SO_PASSCRED is off");
  kill(pc_child, SIGUSR1);
  expect_cred("after", pc_child);
  int status = 0;
  WL_CHECK(waitpid(pc_child, &status, 0) == pc_child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child could not send (status %#x)", status);
}

int main(int argc, char **argv) {
  const char *usage = "MODE READY REPORT DIR [outside|drained|quiet|socket]";
  const char *mode = wl_arg(argc, argv, 1, usage);
  const char *ready = wl_arg(argc, argv, 2, usage);
  const char *report = wl_arg(argc, argv, 3, usage);
  dir = wl_arg(argc, argv, 4, usage);
  int outside = argc > 5 && !strcmp(argv[5], "outside");
  wl_install_trigger();
  void (*verify)(void) = NULL;
  if (!strcmp(mode, "relative")) {
    build_relative();
    verify = verify_relative;
  } else if (!strcmp(mode, "pending")) {
    build_pending(outside, argc > 5 && !strcmp(argv[5], "quiet"));
    verify = verify_pending;
  } else if (!strcmp(mode, "dgram")) {
    build_dgram();
    verify = verify_dgram;
  } else if (!strcmp(mode, "unlinked")) {
    build_unlinked();
    verify = verify_unlinked;
  } else if (!strcmp(mode, "gone_peer")) {
    build_gone_peer();
    verify = verify_gone_peer;
  } else if (!strcmp(mode, "in_flight")) {
    if (argc > 5 && !strcmp(argv[5], "socket")) {
      build_socket_in_flight();
      verify = verify_socket_in_flight;
    } else {
      build_in_flight();
      verify = verify_in_flight;
    }
  } else if (!strcmp(mode, "passcred")) {
    build_passcred(argc > 5 && !strcmp(argv[5], "drained"));
    verify = verify_passcred;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  wl_ready(ready, "pid=%d child=%d object_fd=%d", (int)getpid(), (int)(pend_child ? pend_child : pc_child),
           object_fd);
  while (!wl_triggered) pause();
  verify();
  return wl_finish(report);
}
