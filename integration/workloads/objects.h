// Kernel objects that cryo may or may not support, for counter's --object KIND: each
// kind is created before READY and checked for still working at the verify step.
// The test accepts either a dump refused with a clear error or a full round trip in
// which the object still works.
#pragma once

#include <linux/filter.h>
#include <linux/seccomp.h>
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
#include <stddef.h>

#include "workload.h"

// Kinds: unix_socketpair tcp_listen udp eventfd epoll signalfd timerfd inotify memfd
// memfd_map deleted_file sysv_shm posix_timer seccomp userfaultfd pidfd
static struct {
  const char *kind;
  int fd, fd2;
  char *map;
  char dir[1024];
  timer_t timer;
  uint16_t port;
} object;

#define SIG_OBJECT (SIGRTMIN + 7)

static const char object_text[] = "contents of the object";

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
  } else if (!strcmp(kind, "epoll")) {
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
  } else if (!strcmp(kind, "deleted_file")) {
    struct stat st;
    WL_CHECK(fstat(object.fd, &st) == 0 && st.st_nlink == 0, "deleted file is linked again");
    WL_CHECK(pread(object.fd, buf, sizeof object_text, 0) == sizeof object_text && !strcmp(buf, object_text),
             "deleted file lost its contents");
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
