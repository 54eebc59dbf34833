// Kernel objects that cryo may or may not support, for counter's --object KIND: each
// kind is created before READY and checked for still working at the verify step.
// The test accepts either a dump refused with a clear error or a full round trip in
// which the object still works.
#pragma once

#include <linux/filter.h>
#include <poll.h>
#include <sys/wait.h>
#include <linux/seccomp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <stdatomic.h>
#include <stddef.h>

#include "workload.h"

// Kinds: unix_socketpair tcp_listen tcp_pair udp netlink netlink_unread pty_master fuse_device eventfd epoll event_loop epoll_stale signalfd timerfd inotify inotify_wds inotify_queued memfd
// memfd_map memfd_sealed deleted_sparse deleted_file sysv_shm sysv_shm_keyed posix_timer posix_timers seccomp seccomp_stack userfaultfd pidfd pidfd_child
static struct {
  const char *kind;
  int fd, fd2;
  char *map;
  char dir[1024];
  timer_t timer;
  uint16_t port;
  // event_loop: an epoll and what it watches
  int pipe_et[2], inner_pipe[2], inner, oneshot, sig, periodic, expired, deadline, semaphore;
} object;

#define SIG_OBJECT (SIGRTMIN + 7)
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static const char object_text[] = "contents of the object";

// posix_timers: a periodic timer whose signal handler counts, one that runs a
// glibc SIGEV_THREAD callback, a SIGEV_NONE timer and a blocked one far away.
static volatile sig_atomic_t timer_ticks, timer_bad_value, thread_ticks;
static timer_t timers[4];

static void on_timer(int sig, siginfo_t *si, void *ctx) {
  (void)sig, (void)ctx;
  if (si->si_code != SI_TIMER || si->si_value.sival_int != 1234) timer_bad_value = 1;
  timer_ticks++;
}

static void on_timer_thread(union sigval v) {
  if (v.sival_int == 99) thread_ticks++;
}

static void make_posix_timers(void) {
  struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
  WL_MUST(sigaction(SIGRTMIN + 8, &sa, NULL) == 0);
  struct sigevent counting = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 8};
  counting.sigev_value.sival_int = 1234;
  struct sigevent threaded = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = on_timer_thread};
  threaded.sigev_value.sival_int = 99;
  struct sigevent none = {.sigev_notify = SIGEV_NONE};
  struct sigevent blocked = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIG_OBJECT};
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIG_OBJECT);
  WL_MUST(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
  WL_MUST(timer_create(CLOCK_MONOTONIC, &counting, &timers[0]) == 0);
  WL_MUST(timer_create(CLOCK_MONOTONIC, &threaded, &timers[1]) == 0);
  WL_MUST(timer_create(CLOCK_REALTIME, &none, &timers[2]) == 0);
  WL_MUST(timer_create(CLOCK_BOOTTIME, &blocked, &timers[3]) == 0);
  struct itimerspec every = {{0, 10000000}, {0, 10000000}}, far = {{0, 0}, {50, 0}};
  WL_MUST(timer_settime(timers[0], 0, &every, NULL) == 0 && timer_settime(timers[1], 0, &every, NULL) == 0);
  WL_MUST(timer_settime(timers[2], 0, &far, NULL) == 0 && timer_settime(timers[3], 0, &far, NULL) == 0);
}

static void check_posix_timers(void) {
  struct itimerspec its;
  for (int i = 0; i < 4; i++)
    WL_CHECK(timer_gettime(timers[i], &its) == 0, "timer %d is gone: %s", i, strerror(errno));
  WL_CHECK(timer_gettime(timers[2], &its) == 0 && its.it_value.tv_sec > 0 && its.it_value.tv_sec <= 50,
           "the SIGEV_NONE timer has %ld s left", (long)its.it_value.tv_sec);
  WL_CHECK(timer_gettime(timers[0], &its) == 0 && its.it_interval.tv_nsec == 10000000,
           "the periodic timer lost its interval");
  int ticks = timer_ticks, threads = thread_ticks;
  struct timespec left = {0, 300000000};
  while (nanosleep(&left, &left) < 0 && errno == EINTR) {  // the timer's signals cut it short
  }
  WL_CHECK(timer_ticks >= ticks + 10, "the periodic timer's handler ran %d times in 300 ms", timer_ticks - ticks);
  WL_CHECK(thread_ticks >= threads + 10, "the SIGEV_THREAD callback ran %d times in 300 ms", thread_ticks - threads);
  WL_CHECK(!timer_bad_value, "a timer signal came with the wrong value or code");
}

// seccomp_stack: a filter installed as root without no_new_privs that kills the
// process on syscalls only cryo makes (getitimer; prctl(PR_SET_PDEATHSIG)), and
// a thread that stacks a filter of its own (getppid fails with errno 43 there).
static pthread_t seccomp_thread;
static atomic_int seccomp_go;
static char seccomp_thread_result[256];

static int seccomp_filters(void) {  // this thread's, from /proc
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)gettid());
  FILE *f = fopen(path, "r");
  int n = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "Seccomp_filters:", 16)) n = atoi(line + 16);
  if (f) fclose(f);
  return n;
}

static void *seccomp_thread_main(void *arg) {
  (void)arg;
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 43),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
  WL_MUST(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0);
  while (!atomic_load(&seccomp_go)) wl_sleep_ms(5);
  errno = 0;
  long r = syscall(SYS_getppid);
  if (r != -1 || errno != 43)
    snprintf(seccomp_thread_result, sizeof seccomp_thread_result, "thread: getppid gave %ld errno %d", r, errno);
  else if (seccomp_filters() != 2)
    snprintf(seccomp_thread_result, sizeof seccomp_thread_result, "thread: %d filters, want 2", seccomp_filters());
  return NULL;
}

static void make_seccomp_stack(void) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 42),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getitimer, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_PDEATHSIG, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
  WL_MUST(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &prog) == 0);
  WL_MUST(pthread_create(&seccomp_thread, NULL, seccomp_thread_main, NULL) == 0);
}

static void check_seccomp_stack(void) {
  errno = 0;
  long r = syscall(SYS_getpriority, 0, 0);
  WL_CHECK(r == -1 && errno == 42, "main: getpriority gave %ld errno %d, want errno 42", r, errno);
  WL_CHECK(syscall(SYS_getppid) > 0, "main: getppid fails: the thread's filter leaked to the main thread");
  WL_CHECK(seccomp_filters() == 1, "main: %d filters, want 1", seccomp_filters());
  atomic_store(&seccomp_go, 1);
  pthread_join(seccomp_thread, NULL);
  WL_CHECK(!seccomp_thread_result[0], "%s", seccomp_thread_result);
}

// inotify_wds: watches with a gap in their descriptors (1 and 3), one of them
// one-shot. inotify_queued: an event not yet read (the dump must refuse it).
static int inotify_wd[3];

static void inotify_dir(int i, char *out, size_t size) { snprintf(out, size, "%s/watched-%d", object.dir, i); }

static void make_inotify_wds(int queued) {
  WL_MUST((object.fd = inotify_init1(IN_NONBLOCK)) >= 0);
  for (int i = 0; i < 3; i++) {
    char dir[1200];
    inotify_dir(i, dir, sizeof dir);
    WL_MUST(mkdir(dir, 0700) == 0);
    WL_MUST((inotify_wd[i] = inotify_add_watch(object.fd, dir, IN_CREATE | (i == 2 ? IN_ONESHOT : 0))) > 0);
  }
  WL_MUST(inotify_rm_watch(object.fd, inotify_wd[1]) == 0);
  char buf[4096];
  while (read(object.fd, buf, sizeof buf) > 0) {  // the IN_IGNORED of the removal
  }
  if (queued) {
    char path[1300], dir[1200];
    inotify_dir(0, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/before-dump", dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));
  }
}

static void check_inotify_wds(void) {
  char buf[4096];
  ssize_t n = read(object.fd, buf, sizeof buf);
  WL_CHECK(n < 0 && errno == EAGAIN, "inotify had events queued after restore (%zd bytes)", n);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 3; i += 2) {
      char dir[1200], path[1300];
      inotify_dir(i, dir, sizeof dir);
      snprintf(path, sizeof path, "%s/probe-%d", dir, round);
      close(open(path, O_CREAT | O_WRONLY, 0600));
    }
  wl_sleep_ms(50);
  int seen[4] = {0};
  while ((n = read(object.fd, buf, sizeof buf)) > 0)
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)p;
      if (ev->wd >= 0 && ev->wd < 4 && (ev->mask & IN_CREATE)) seen[ev->wd]++;
      p += sizeof *ev + ev->len;
    }
  WL_CHECK(inotify_wd[0] == 1 && inotify_wd[2] == 3, "the test expected wds 1 and 3, got %d and %d", inotify_wd[0],
           inotify_wd[2]);
  WL_CHECK(seen[1] == 2 && seen[3] == 1, "IN_CREATE events: %d on wd 1 (want 2), %d on the one-shot wd 3 (want 1)",
           seen[1], seen[3]);
}

// netlink: a route socket bound by the kernel's choice of port id, listening to
// groups below and above 32, with flags; an unbound generic netlink socket.
static uint32_t nl_portid, nl_groups[2];

static void netlink_state(int fd, uint32_t *portid, uint32_t groups[2]) {
  struct sockaddr_nl a;
  socklen_t len = sizeof a;
  WL_MUST(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  *portid = a.nl_pid;
  uint32_t bits[8] = {0};
  len = sizeof bits;
  WL_MUST(getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, bits, &len) == 0);
  groups[0] = bits[0], groups[1] = bits[1];
}

static void make_netlink(void) {
  WL_MUST((object.fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)) >= 0);
  struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR};
  WL_MUST(bind(object.fd, (struct sockaddr *)&a, sizeof a) == 0);
  int group = 33, on = 1;
  WL_MUST(setsockopt(object.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) == 0);
  WL_MUST(setsockopt(object.fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on) == 0);
  WL_MUST(setsockopt(object.fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof on) == 0);
  netlink_state(object.fd, &nl_portid, nl_groups);
  WL_MUST((object.fd2 = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_GENERIC)) >= 0);
}

static void check_netlink(void) {
  uint32_t portid, groups[2];
  netlink_state(object.fd, &portid, groups);
  WL_CHECK(portid == nl_portid, "netlink port id %u, want %u", portid, nl_portid);
  WL_CHECK(groups[0] == nl_groups[0] && groups[1] == nl_groups[1], "netlink groups %#x %#x, want %#x %#x", groups[0],
           groups[1], nl_groups[0], nl_groups[1]);
  int flag = 0;
  socklen_t len = sizeof flag;
  WL_CHECK(getsockopt(object.fd, SOL_NETLINK, NETLINK_EXT_ACK, &flag, &len) == 0 && flag, "NETLINK_EXT_ACK lost");
  // A request answered to this port: the links, up to NLMSG_DONE.
  struct {
    struct nlmsghdr h;
    struct ifinfomsg i;
  } req = {{sizeof req, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 42, 0}, {.ifi_family = AF_UNSPEC}};
  WL_MUST(send(object.fd, &req, sizeof req, 0) == sizeof req);
  char buf[16384];
  int links = 0, done = 0, foreign = 0;
  while (!done) {
    ssize_t n = recv(object.fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != 42) continue;  // a notification of the groups
      if (h->nlmsg_pid != nl_portid) foreign++;
      if (h->nlmsg_type == NLMSG_DONE) done = 1;
      if (h->nlmsg_type == RTM_NEWLINK) links++;
    }
  }
  WL_CHECK(done && links > 0 && !foreign, "RTM_GETLINK: %d links, done %d, %d replies to another port", links, done,
           foreign);
  struct sockaddr_nl g;
  len = sizeof g;
  WL_CHECK(getsockname(object.fd2, (struct sockaddr *)&g, &len) == 0 && g.nl_pid == 0,
           "the unbound generic netlink socket has port id %u", g.nl_pid);
}

static void watch(int epfd, int fd, uint32_t events, uint64_t data) {
  struct epoll_event ev = {.events = events, .data.u64 = data};
  WL_MUST(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0);
}

// An event loop as servers build them: an epoll watching a pipe edge-triggered, a
// one-shot eventfd that has already fired, a nested epoll, a signalfd and a
// periodic timerfd; beside it a semaphore eventfd, an expired timerfd with ticks
// not yet read and a wall-clock deadline timer.
static void make_event_loop(void) {
  WL_MUST(pipe2(object.pipe_et, O_NONBLOCK) == 0 && pipe(object.inner_pipe) == 0);
  WL_MUST(write(object.inner_pipe[1], "x", 1) == 1);
  WL_MUST((object.fd = epoll_create1(EPOLL_CLOEXEC)) >= 0 && (object.inner = epoll_create1(0)) >= 0);
  watch(object.inner, object.inner_pipe[0], EPOLLIN, 5);
  watch(object.fd, object.pipe_et[0], EPOLLIN | EPOLLET, 11);
  WL_MUST((object.oneshot = eventfd(1, EFD_NONBLOCK)) >= 0);
  watch(object.fd, object.oneshot, EPOLLIN | EPOLLONESHOT, 22);
  watch(object.fd, object.inner, EPOLLIN, 33);
  struct epoll_event ev;
  WL_MUST(epoll_wait(object.fd, &ev, 1, 1000) == 1);  // the one-shot fires (33 is ready too; either comes first)
  if (ev.data.u64 != 22) {
    struct epoll_event evs[4];
    int n = epoll_wait(object.fd, evs, 4, 1000), fired = 0;
    for (int i = 0; i < n; i++) fired |= evs[i].data.u64 == 22;
    WL_MUST(fired);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIG_OBJECT);
  WL_MUST(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
  WL_MUST((object.sig = signalfd(-1, &set, SFD_NONBLOCK)) >= 0);
  watch(object.fd, object.sig, EPOLLIN, 44);
  WL_MUST((object.periodic = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)) >= 0);
  struct itimerspec every = {{0, 20000000}, {0, 20000000}};
  WL_MUST(timerfd_settime(object.periodic, 0, &every, NULL) == 0);
  watch(object.fd, object.periodic, EPOLLIN, 55);
  WL_MUST((object.semaphore = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK)) >= 0);
  WL_MUST((object.expired = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK)) >= 0);
  struct itimerspec once = {{0, 0}, {0, 1000}};
  WL_MUST(timerfd_settime(object.expired, 0, &once, NULL) == 0);
  usleep(10000);  // it expires, once; nobody reads it
  WL_MUST((object.deadline = timerfd_create(CLOCK_REALTIME, 0)) >= 0);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct itimerspec at = {{0, 0}, {now.tv_sec + 100, 0}};
  WL_MUST(timerfd_settime(object.deadline, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &at, NULL) == 0);
}

static void check_event_loop(void) {
  uint64_t v = 0;
  for (int i = 0; i < 3; i++)
    WL_CHECK(read(object.semaphore, &v, 8) == 8 && v == 1, "semaphore eventfd read %d gave %llu", i,
             (unsigned long long)v);
  WL_CHECK(read(object.semaphore, &v, 8) < 0 && errno == EAGAIN, "semaphore eventfd not empty after 3 reads");
  v = 0;
  ssize_t got = read(object.expired, &v, 8);
  WL_CHECK(got == 8 && v == 1, "expired timerfd: read gave %zd (%s), %llu ticks, want 1", got,
           got < 0 ? strerror(errno) : "", (unsigned long long)v);
  struct itimerspec its;
  WL_CHECK(timerfd_gettime(object.deadline, &its) == 0 && its.it_value.tv_sec >= 80 && its.it_value.tv_sec < 100,
           "the deadline timer has %ld s left", (long)its.it_value.tv_sec);
  WL_CHECK(timerfd_gettime(object.periodic, &its) == 0 && its.it_interval.tv_nsec == 20000000,
           "the periodic timer lost its interval");

  // Nothing new on the pipe yet, the one-shot disabled: 33, 55 and no 11 or 22.
  WL_MUST(write(object.inner_pipe[1], "", 0) == 0);
  kill(getpid(), SIG_OBJECT);
  int seen[6] = {0};
  for (int round = 0; round < 20 && !(seen[3] && seen[4] && seen[5]); round++) {
    struct epoll_event evs[8];
    int n = epoll_wait(object.fd, evs, 8, 100);
    for (int i = 0; i < n; i++)
      if (evs[i].data.u64 % 11 == 0 && evs[i].data.u64 / 11 <= 5) seen[evs[i].data.u64 / 11]++;
  }
  WL_CHECK(seen[3] && seen[4] && seen[5], "epoll missed events: nested %d signalfd %d timerfd %d", seen[3], seen[4],
           seen[5]);
  WL_CHECK(!seen[1], "the edge-triggered pipe was reported with nothing written");
  WL_CHECK(!seen[2], "the disabled one-shot registration fired again");
  struct signalfd_siginfo si;
  WL_CHECK(read(object.sig, &si, sizeof si) == sizeof si && (int)si.ssi_signo == SIG_OBJECT,
           "signalfd did not return the signal");
  // The registrations answer to their fd numbers: re-arm the one-shot, write the pipe.
  struct epoll_event rearm = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 22};
  WL_CHECK(epoll_ctl(object.fd, EPOLL_CTL_MOD, object.oneshot, &rearm) == 0, "EPOLL_CTL_MOD of the one-shot: %s",
           strerror(errno));
  WL_MUST(write(object.pipe_et[1], "y", 1) == 1);
  memset(seen, 0, sizeof seen);
  for (int round = 0; round < 20 && !(seen[1] && seen[2]); round++) {
    struct epoll_event evs[8];
    int n = epoll_wait(object.fd, evs, 8, 100);
    for (int i = 0; i < n; i++)
      if (evs[i].data.u64 % 11 == 0 && evs[i].data.u64 / 11 <= 5) seen[evs[i].data.u64 / 11]++;
  }
  WL_CHECK(seen[1] && seen[2], "after restore epoll missed the pipe (%d) or the re-armed one-shot (%d)", seen[1],
           seen[2]);
  struct epoll_event gone = {0};
  WL_CHECK(epoll_ctl(object.fd, EPOLL_CTL_DEL, object.pipe_et[0], &gone) == 0, "EPOLL_CTL_DEL of the pipe: %s",
           strerror(errno));
}

// Creates the object; returns the fd a dump error should name (or -1).
static int make_object(const char *kind, const char *workdir) {
  object.kind = kind;
  object.fd = object.fd2 = -1;
  snprintf(object.dir, sizeof object.dir, "%s", workdir);
  if (!strcmp(kind, "unix_socketpair")) {
    int sv[2];
    WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    object.fd = sv[0], object.fd2 = sv[1];
  } else if (!strcmp(kind, "tcp_listen") || !strcmp(kind, "udp")) {
    int tcp = !strcmp(kind, "tcp_listen");
    object.fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    WL_MUST(object.fd >= 0 && bind(object.fd, (struct sockaddr *)&a, sizeof a) == 0);
    if (tcp) WL_MUST(listen(object.fd, 4) == 0);
    socklen_t len = sizeof a;
    WL_MUST(getsockname(object.fd, (struct sockaddr *)&a, &len) == 0);
    object.port = ntohs(a.sin_port);
  } else if (!strcmp(kind, "eventfd")) {
    WL_MUST((object.fd = eventfd(5, 0)) >= 0);
  } else if (!strcmp(kind, "epoll")) {
    // Watches a pipe holding a byte (a pipe, so that the epoll fd is the only object
    // cryo might not support).
    int p[2];
    WL_MUST(pipe(p) == 0 && write(p[1], "x", 1) == 1);
    object.fd2 = p[0];
    WL_MUST((object.fd = epoll_create1(0)) >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    WL_MUST(epoll_ctl(object.fd, EPOLL_CTL_ADD, object.fd2, &ev) == 0);
  } else if (!strcmp(kind, "event_loop")) {
    make_event_loop();
  } else if (!strcmp(kind, "posix_timers")) {
    make_posix_timers();
  } else if (!strcmp(kind, "seccomp_stack")) {
    make_seccomp_stack();
  } else if (!strcmp(kind, "netlink")) {
    make_netlink();
  } else if (!strcmp(kind, "fuse_device")) {
    // A stateful device (a FUSE connection once mounted; a tun fd once attached): refused.
    WL_MUST((object.fd = open("/dev/fuse", O_RDWR)) >= 0);
  } else if (!strcmp(kind, "pty_master")) {
    // A terminal of its own (as tmux, screen or script make): master and slave come back as a pair.
    WL_MUST((object.fd = posix_openpt(O_RDWR | O_NOCTTY)) >= 0 && grantpt(object.fd) == 0 && unlockpt(object.fd) == 0);
    WL_MUST((object.fd2 = open(ptsname(object.fd), O_RDWR | O_NOCTTY)) >= 0);
  } else if (!strcmp(kind, "pidfd_child")) {
    // A pidfd of a child, non-blocking: after restore it still signals, polls and waits for that child.
    pid_t child = fork();
    WL_MUST(child >= 0);
    if (child == 0) {
      for (;;) pause();
    }
    object.fd2 = child;
    WL_MUST((object.fd = (int)syscall(SYS_pidfd_open, child, PIDFD_NONBLOCK)) >= 0);
  } else if (!strcmp(kind, "tcp_pair")) {
    // An established loopback connection, both ends here, with bytes in flight both ways.
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    WL_MUST(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
            getsockname(l, (struct sockaddr *)&a, &len) == 0);
    WL_MUST((object.fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0 && connect(object.fd, (struct sockaddr *)&a, len) == 0);
    WL_MUST((object.fd2 = accept(l, NULL, NULL)) >= 0);
    close(l);
    WL_MUST(write(object.fd, "to server", 9) == 9 && write(object.fd2, "to client", 9) == 9);
  } else if (!strcmp(kind, "netlink_unread")) {
    // A request whose answer is left unread: the dump must refuse it.
    WL_MUST((object.fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)) >= 0);
    struct {
      struct nlmsghdr h;
      struct ifinfomsg i;
    } req = {{sizeof req, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0}, {.ifi_family = AF_UNSPEC}};
    WL_MUST(send(object.fd, &req, sizeof req, 0) == sizeof req);
  } else if (!strcmp(kind, "inotify_wds") || !strcmp(kind, "inotify_queued")) {
    make_inotify_wds(!strcmp(kind, "inotify_queued"));
  } else if (!strcmp(kind, "epoll_stale")) {
    // Watches a pipe through an fd that is then moved: the registration still
    // names the old fd number, which nothing can add again.
    int p[2];
    WL_MUST(pipe(p) == 0 && write(p[1], "x", 1) == 1);
    WL_MUST((object.fd = epoll_create1(0)) >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    WL_MUST(epoll_ctl(object.fd, EPOLL_CTL_ADD, p[0], &ev) == 0);
    WL_MUST((object.fd2 = dup(p[0])) >= 0 && close(p[0]) == 0);
  } else if (!strcmp(kind, "signalfd")) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIG_OBJECT);
    WL_MUST(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    WL_MUST((object.fd = signalfd(-1, &set, 0)) >= 0);
  } else if (!strcmp(kind, "timerfd")) {
    WL_MUST((object.fd = timerfd_create(CLOCK_MONOTONIC, 0)) >= 0);
    struct itimerspec its = {{0, 0}, {100, 0}};
    WL_MUST(timerfd_settime(object.fd, 0, &its, NULL) == 0);
  } else if (!strcmp(kind, "inotify")) {
    WL_MUST((object.fd = inotify_init1(0)) >= 0);
    WL_MUST(inotify_add_watch(object.fd, workdir, IN_CREATE) >= 0);
  } else if (!strcmp(kind, "memfd") || !strcmp(kind, "memfd_map")) {
    int fd = (int)syscall(SYS_memfd_create, "cryo-object", 0);
    WL_MUST(fd >= 0 && ftruncate(fd, 4096) == 0 && pwrite(fd, object_text, sizeof object_text, 0) > 0);
    object.map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    WL_MUST(object.map != MAP_FAILED);
    if (!strcmp(kind, "memfd_map"))
      close(fd);  // only the mapping holds it
    else
      object.fd = fd;
  } else if (!strcmp(kind, "memfd_sealed")) {
    // Sealed against growing and shrinking, mapped shared and written through the map.
    WL_MUST((object.fd = (int)syscall(SYS_memfd_create, "cryo-sealed", MFD_ALLOW_SEALING)) >= 0);
    WL_MUST(ftruncate(object.fd, 8192) == 0 && pwrite(object.fd, object_text, sizeof object_text, 0) > 0);
    WL_MUST(fcntl(object.fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) == 0);
    object.map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, object.fd, 0);
    WL_MUST(object.map != MAP_FAILED);
    strcpy(object.map + 4096, "written through the map");
  } else if (!strcmp(kind, "deleted_sparse")) {
    // 64 MiB, mostly a hole, at offset 1234, mapped privately with a private change.
    char path[1200];
    snprintf(path, sizeof path, "%s/deleted-sparse", workdir);
    WL_MUST((object.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640)) >= 0);
    WL_MUST(pwrite(object.fd, object_text, sizeof object_text, 0) > 0 &&
            pwrite(object.fd, "tail", 4, (64 << 20) - 4) == 4 && lseek(object.fd, 1234, SEEK_SET) == 1234);
    object.map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, object.fd, 0);
    WL_MUST(object.map != MAP_FAILED && unlink(path) == 0);
    object.map[0] = 'C';  // copied on write: only this process sees it
  } else if (!strcmp(kind, "deleted_file")) {
    char path[1200];
    snprintf(path, sizeof path, "%s/deleted-object", workdir);
    WL_MUST((object.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
    WL_MUST(pwrite(object.fd, object_text, sizeof object_text, 0) > 0 && unlink(path) == 0);
  } else if (!strcmp(kind, "sysv_shm")) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    WL_MUST(id >= 0);
    object.map = shmat(id, NULL, 0);
    WL_MUST(object.map != (void *)-1);
    memcpy(object.map, object_text, sizeof object_text);
    shmctl(id, IPC_RMID, NULL);  // gone once detached
  } else if (!strcmp(kind, "sysv_shm_keyed")) {
    // A keyed segment (kept, not removed) attached twice read-write and once read-only.
    key_t key = (key_t)(0x63727900 | (getpid() & 0xff));
    int id = shmget(key, 10000, IPC_CREAT | IPC_EXCL | 0640);
    WL_MUST(id >= 0);
    object.fd2 = id;
    object.map = shmat(id, NULL, 0);
    WL_MUST(object.map != (void *)-1);
    memcpy(object.map, object_text, sizeof object_text);
    strcpy(object.map + 9000, "far in");
    WL_MUST((object.timer = (timer_t)shmat(id, NULL, 0)) != (void *)-1);  // a second attach
    WL_MUST(shmat(id, NULL, SHM_RDONLY) != (void *)-1);
  } else if (!strcmp(kind, "posix_timer")) {
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIG_OBJECT};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIG_OBJECT);
    WL_MUST(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    WL_MUST(timer_create(CLOCK_MONOTONIC, &sev, &object.timer) == 0);
    struct itimerspec its = {{0, 0}, {100, 0}};
    WL_MUST(timer_settime(object.timer, 0, &its, NULL) == 0);
  } else if (!strcmp(kind, "seccomp")) {
    // getpriority fails with errno 42; everything else is allowed.
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 42),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    WL_MUST(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    WL_MUST(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0);
  } else if (!strcmp(kind, "userfaultfd")) {
    WL_MUST((object.fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC)) >= 0);
  } else if (!strcmp(kind, "pidfd")) {
    WL_MUST((object.fd = (int)syscall(SYS_pidfd_open, getpid(), 0)) >= 0);
  } else {
    fprintf(stderr, "unknown object kind %s\n", kind);
    exit(2);
  }
  return object.fd;
}

// After restore: the object still exists and works.
static void check_object(void) {
  const char *kind = object.kind;
  if (!kind) return;
  char buf[256];
  if (!strcmp(kind, "unix_socketpair")) {
    WL_CHECK(write(object.fd, "ping", 4) == 4 && read(object.fd2, buf, 4) == 4 && !memcmp(buf, "ping", 4),
             "socketpair no longer connected");
  } else if (!strcmp(kind, "tcp_listen") || !strcmp(kind, "udp")) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    WL_CHECK(getsockname(object.fd, (struct sockaddr *)&a, &len) == 0 && ntohs(a.sin_port) == object.port,
             "socket lost its port %u", object.port);
    if (!strcmp(kind, "tcp_listen")) {
      int c = socket(AF_INET, SOCK_STREAM, 0);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      WL_CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "cannot connect to the listening socket: %s",
               strerror(errno));
      close(c);
    }
  } else if (!strcmp(kind, "eventfd")) {
    uint64_t v = 0;
    WL_CHECK(read(object.fd, &v, 8) == 8 && v == 5, "eventfd value %llu, want 5", (unsigned long long)v);
  } else if (!strcmp(kind, "event_loop")) {
    check_event_loop();
  } else if (!strcmp(kind, "posix_timers")) {
    check_posix_timers();
  } else if (!strcmp(kind, "seccomp_stack")) {
    check_seccomp_stack();
  } else if (!strcmp(kind, "netlink")) {
    check_netlink();
  } else if (!strcmp(kind, "pidfd_child")) {
    char path[64], info[512] = "", want[32];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", object.fd);
    FILE *f = fopen(path, "r");
    if (f) {
      size_t n = fread(info, 1, sizeof info - 1, f);
      info[n] = 0;
      fclose(f);
    }
    snprintf(want, sizeof want, "Pid:\t%d\n", object.fd2);
    WL_CHECK(strstr(info, want) != NULL, "the pidfd does not name child %d: %s", object.fd2, info);
    WL_CHECK(fcntl(object.fd, F_GETFL) & O_NONBLOCK, "the pidfd lost PIDFD_NONBLOCK");
    struct pollfd p = {.fd = object.fd, .events = POLLIN};
    WL_CHECK(poll(&p, 1, 0) == 0, "the pidfd polls readable while its child lives");
    WL_CHECK(syscall(SYS_pidfd_send_signal, object.fd, SIGTERM, NULL, 0) == 0, "pidfd_send_signal: %s",
             strerror(errno));
    WL_CHECK(poll(&p, 1, 5000) == 1, "the pidfd did not poll readable when its child died");
    siginfo_t si = {0};
    WL_CHECK(waitid(P_PIDFD, (id_t)object.fd, &si, WEXITED) == 0 && si.si_pid == object.fd2 &&
                 si.si_code == CLD_KILLED && si.si_status == SIGTERM,
             "waitid(P_PIDFD) gave pid %d code %d status %d", si.si_pid, si.si_code, si.si_status);
  } else if (!strcmp(kind, "tcp_pair")) {
    WL_CHECK(read(object.fd2, buf, 9) == 9 && !memcmp(buf, "to server", 9), "the server lost its bytes in flight");
    WL_CHECK(read(object.fd, buf, 9) == 9 && !memcmp(buf, "to client", 9), "the client lost its bytes in flight");
    WL_CHECK(write(object.fd, "ping", 4) == 4 && read(object.fd2, buf, 4) == 4 && !memcmp(buf, "ping", 4),
             "the connection no longer carries bytes");
  } else if (!strcmp(kind, "inotify_wds")) {
    check_inotify_wds();
  } else if (!strcmp(kind, "epoll") || !strcmp(kind, "epoll_stale")) {
    struct epoll_event ev;
    int n = epoll_wait(object.fd, &ev, 1, 1000);
    WL_CHECK(n == 1 && ev.data.u64 == 77, "epoll_wait gave %d events (data %llu)", n, (unsigned long long)ev.data.u64);
  } else if (!strcmp(kind, "signalfd")) {
    kill(getpid(), SIG_OBJECT);
    struct signalfd_siginfo si;
    WL_CHECK(read(object.fd, &si, sizeof si) == sizeof si && (int)si.ssi_signo == SIG_OBJECT,
             "signalfd did not return the signal");
  } else if (!strcmp(kind, "timerfd")) {
    struct itimerspec its;
    WL_CHECK(timerfd_gettime(object.fd, &its) == 0 && its.it_value.tv_sec > 0 && its.it_value.tv_sec <= 100,
             "timerfd not armed any more (%ld s)", (long)its.it_value.tv_sec);
  } else if (!strcmp(kind, "inotify")) {
    char path[1200];
    snprintf(path, sizeof path, "%s/inotify-probe", object.dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    WL_CHECK(read(object.fd, buf, sizeof buf) > 0, "inotify watch lost");
  } else if (!strcmp(kind, "memfd") || !strcmp(kind, "memfd_map") || !strcmp(kind, "sysv_shm")) {
    WL_CHECK(!strcmp(object.map, object_text), "%s mapping lost its contents", kind);
    if (object.fd >= 0)
      WL_CHECK(pread(object.fd, buf, sizeof object_text, 0) == sizeof object_text && !strcmp(buf, object_text),
               "memfd lost its contents");
  } else if (!strcmp(kind, "memfd_sealed")) {
    char link[64], target[256] = "";
    snprintf(link, sizeof link, "/proc/self/fd/%d", object.fd);
    WL_CHECK(readlink(link, target, sizeof target - 1) > 0 && !strcmp(target, "/memfd:cryo-sealed (deleted)"),
             "the memfd is '%s' now", target);
    WL_CHECK(fcntl(object.fd, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL), "seals are %#x",
             fcntl(object.fd, F_GET_SEALS));
    WL_CHECK(ftruncate(object.fd, 4096) < 0 && errno == EPERM, "a sealed memfd shrank");
    WL_CHECK(pread(object.fd, buf, 24, 4096) == 24 && !strcmp(buf, "written through the map"),
             "the memfd lost what was written through its map");
    strcpy(object.map + 100, "shared");
    WL_CHECK(pread(object.fd, buf, 7, 100) == 7 && !strcmp(buf, "shared"), "the map is no longer the memfd's");
  } else if (!strcmp(kind, "deleted_sparse")) {
    struct stat st;
    WL_CHECK(fstat(object.fd, &st) == 0 && st.st_nlink == 0 && st.st_size == 64 << 20 && (st.st_mode & 0777) == 0640,
             "the deleted file is not as it was (nlink %lu size %ld mode %o)", (unsigned long)st.st_nlink,
             (long)st.st_size, st.st_mode & 0777);
    WL_CHECK(st.st_blocks * 512 < (1 << 20), "the deleted file's hole was filled (%ld blocks)", (long)st.st_blocks);
    WL_CHECK(lseek(object.fd, 0, SEEK_CUR) == 1234, "offset %ld, want 1234", (long)lseek(object.fd, 0, SEEK_CUR));
    WL_CHECK(pread(object.fd, buf, 4, (64 << 20) - 4) == 4 && !memcmp(buf, "tail", 4), "the tail is lost");
    WL_CHECK(pread(object.fd, buf, sizeof object_text, 0) == sizeof object_text && !strcmp(buf, object_text),
             "the head is lost (or the private change leaked into the file)");
    WL_CHECK(object.map[0] == 'C' && !strcmp(object.map + 1, object_text + 1), "the private map lost its change");
    char link[64], target[1300] = "", want[1300];
    snprintf(link, sizeof link, "/proc/self/fd/%d", object.fd);
    snprintf(want, sizeof want, "%s/deleted-sparse (deleted)", object.dir);
    WL_CHECK(readlink(link, target, sizeof target - 1) > 0 && !strcmp(target, want), "the deleted file is '%s'",
             target);
  } else if (!strcmp(kind, "deleted_file")) {
    struct stat st;
    WL_CHECK(fstat(object.fd, &st) == 0 && st.st_nlink == 0, "deleted file is linked again");
    WL_CHECK(pread(object.fd, buf, sizeof object_text, 0) == sizeof object_text && !strcmp(buf, object_text),
             "deleted file lost its contents");
  } else if (!strcmp(kind, "sysv_shm_keyed")) {
    char *second = (char *)object.timer;
    WL_CHECK(!strcmp(object.map, object_text) && !strcmp(object.map + 9000, "far in"), "the segment lost its data");
    strcpy(object.map + 100, "through the first");
    WL_CHECK(!strcmp(second + 100, "through the first"), "the two attaches are no longer one segment");
    struct shmid_ds ds;
    WL_CHECK(shmctl(object.fd2, IPC_STAT, &ds) == 0 && ds.shm_segsz == 10000 && ds.shm_nattch == 3 &&
                 (ds.shm_perm.mode & 0777) == 0640,
             "segment %d: size %zu, %lu attaches, mode %o", object.fd2, (size_t)ds.shm_segsz,
             (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777);
    shmctl(object.fd2, IPC_RMID, NULL);
  } else if (!strcmp(kind, "posix_timer")) {
    struct itimerspec its;
    WL_CHECK(timer_gettime(object.timer, &its) == 0 && its.it_value.tv_sec > 0, "POSIX timer not armed any more");
  } else if (!strcmp(kind, "seccomp")) {
    errno = 0;
    int r = (int)syscall(SYS_getpriority, 0, 0);
    WL_CHECK(r == -1 && errno == 42, "seccomp filter gone (getpriority gave %d, errno %d)", r, errno);
  } else if (!strcmp(kind, "userfaultfd") || !strcmp(kind, "pidfd")) {
    char link[64], target[256] = "";
    snprintf(link, sizeof link, "/proc/self/fd/%d", object.fd);
    WL_CHECK(readlink(link, target, sizeof target - 1) > 0 && strstr(target, kind), "fd %d is '%s' now", object.fd,
             target);
  }
}
