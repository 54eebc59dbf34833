// Shared helpers for the integration workloads. Every workload follows one script:
// build state, say ready (write a READY file), wait for the trigger (SIGUSR1),
// verify everything it built, write "OK" or "FAIL: reasons" to a report file and
// exit 0 or 1. Header-only so that each workload stays a single translation unit.
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

// ---- failures -----------------------------------------------------------------

static pthread_mutex_t wl_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char wl_fail_text[16384];
static int wl_fail_count;

// Records one failed check; the report lists them all.
__attribute__((format(printf, 1, 2))) static inline void wl_fail(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&wl_fail_lock);
  size_t used = strlen(wl_fail_text);
  snprintf(wl_fail_text + used, sizeof wl_fail_text - used, "%s%s", wl_fail_count ? "; " : "", line);
  wl_fail_count++;
  pthread_mutex_unlock(&wl_fail_lock);
  fprintf(stderr, "check failed: %s\n", line);
}

#define WL_CHECK(cond, ...)   \
  do {                        \
    if (!(cond)) wl_fail(__VA_ARGS__); \
  } while (0)

// A setup step that must not fail: the workload cannot build its state.
#define WL_MUST(cond)                                                                   \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      fprintf(stderr, "%s:%d: setup failed: %s: %s\n", __FILE__, __LINE__, #cond, strerror(errno)); \
      exit(3);                                                                          \
    }                                                                                   \
  } while (0)

// ---- files ----------------------------------------------------------------------

// Writes the whole text to path atomically (tmp file + rename), so a reader
// never sees half a READY or report file.
static inline void wl_write_file(const char *path, const char *text) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(fd >= 0);
  size_t len = strlen(text), off = 0;
  while (off < len) {
    ssize_t n = write(fd, text + off, len - off);
    WL_MUST(n > 0);
    off += (size_t)n;
  }
  WL_MUST(close(fd) == 0);
  WL_MUST(rename(tmp, path) == 0);
}

// "READY <extra>\n": extra carries what the test needs to know (fd numbers, addresses).
__attribute__((format(printf, 2, 3))) static inline void wl_ready(const char *path, const char *fmt, ...) {
  char extra[2048], text[2100];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(extra, sizeof extra, fmt, ap);
  va_end(ap);
  snprintf(text, sizeof text, "READY %s\n", extra);
  wl_write_file(path, text);
}

// Writes the report and returns the exit code.
static inline int wl_finish(const char *report_path) {
  char text[sizeof wl_fail_text + 16];
  pthread_mutex_lock(&wl_fail_lock);
  if (wl_fail_count == 0)
    snprintf(text, sizeof text, "OK\n");
  else
    snprintf(text, sizeof text, "FAIL: %s\n", wl_fail_text);
  int failed = wl_fail_count != 0;
  pthread_mutex_unlock(&wl_fail_lock);
  wl_write_file(report_path, text);
  return failed ? 1 : 0;
}

// Reads a whole (small) file; returns its length or -1.
static inline ssize_t wl_read_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t off = 0;
  while (off < size) {
    ssize_t n = read(fd, buf + off, size - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += (size_t)n;
  }
  close(fd);
  return (ssize_t)off;
}

static inline int wl_write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static inline int wl_read_all(int fd, void *data, size_t len) {
  char *p = data;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

// ---- time -----------------------------------------------------------------------

static inline double wl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void wl_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// ---- files passed over unix sockets (SCM_RIGHTS) ------------------------------------

// Sends text with the files fds (n of them, at most 8) through s.
static inline void wl_send_fds(int s, const char *text, const int *fds, int n) {
  char control[CMSG_SPACE(sizeof(int) * 8)];
  memset(control, 0, sizeof control);
  struct iovec iov = {(void *)text, strlen(text)};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
  }
  WL_MUST(sendmsg(s, &msg, 0) == (ssize_t)strlen(text));
}

// Receives one message within 5 s into text (NUL-terminated) and up to max of the
// files it carries into fds: how many, or -1 if nothing came.
static inline int wl_recv_fds(int s, char *text, size_t size, int *fds, int max) {
  char control[CMSG_SPACE(sizeof(int) * 8)];
  struct iovec iov = {text, size - 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) {
    text[0] = 0;
    return -1;
  }
  text[n] = 0;
  int count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < k && count < max; i++) memcpy(&fds[count++], CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
    }
  return count;
}

// ---- memory patterns ----------------------------------------------------------------

// The value a word at this address must hold: derived from the address, so a page
// restored at the wrong place, a stale page or a zero page is caught.
static inline uint64_t wl_pattern(uintptr_t addr, uint64_t seed) {
  uint64_t x = (uint64_t)addr ^ seed;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x | 1;  // never zero: an all-zero page can't pass
}

static inline void wl_fill(void *mem, size_t len, uint64_t seed) {
  uint64_t *p = mem;
  for (size_t i = 0; i < len / 8; i++) p[i] = wl_pattern((uintptr_t)&p[i], seed);
}

// Returns -1 when the pattern holds, else the byte offset of the first bad word.
static inline long wl_check_fill(const void *mem, size_t len, uint64_t seed) {
  const uint64_t *p = mem;
  for (size_t i = 0; i < len / 8; i++)
    if (p[i] != wl_pattern((uintptr_t)&p[i], seed)) return (long)(i * 8);
  return -1;
}

// ---- trigger ----------------------------------------------------------------------

static volatile sig_atomic_t wl_triggered;

static inline void wl_on_trigger(int sig) {
  (void)sig;
  wl_triggered = 1;
}

static inline void wl_install_trigger(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wl_on_trigger;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  WL_MUST(sigaction(SIGUSR1, &sa, NULL) == 0);
}

// Blocks SIGUSR1 in the calling thread (worker threads call it so that the
// trigger interrupts only the thread that waits for it).
static inline void wl_block_trigger(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static inline const char *wl_arg(int argc, char **argv, int i, const char *usage) {
  if (i >= argc) {
    fprintf(stderr, "usage: %s %s\n", argv[0], usage);
    exit(2);
  }
  return argv[i];
}
