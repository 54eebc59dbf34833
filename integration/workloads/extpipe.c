// extpipe READY REPORT EXPECT MODE FD [FD2]: a process holding a pipe whose
// other holder is outside the tree (the test): an external pipe.
//
//   writer FD       it writes "hello\n" to FD before the dump
//   reader FD       it reads nothing from FD before the dump (the test queues bytes)
//   jobserver R W   it holds both ends, as make's children hold the jobserver's
//
// On SIGUSR1 (after the restore) it uses the pipe and checks what it sees
// against the first line of the file EXPECT, which the test writes then:
//
//   epipe           a write to FD fails with EPIPE (the reader is gone)
//   write TEXT      TEXT is written to FD whole
//   read TEXT       FD gives TEXT, then end of file (the writer is gone)
//   tokens N        exactly N bytes can be taken from R without blocking, and
//                   put back through W, and taken again (a working jobserver)
#include <sys/ioctl.h>

#include "workload.h"

static void check_writer(int fd, const char *expect) {
  if (strcmp(expect, "epipe") == 0) {
    ssize_t n = write(fd, "after\n", 6);
    WL_CHECK(n < 0 && errno == EPIPE, "write to fd %d: %zd (%s), want EPIPE: its reader should be gone", fd, n,
             n < 0 ? strerror(errno) : "written");
  } else if (strncmp(expect, "write ", 6) == 0) {
    const char *text = expect + 6;
    ssize_t n = write(fd, text, strlen(text));
    WL_CHECK(n == (ssize_t)strlen(text), "write of %zu bytes to fd %d: %zd (%s)", strlen(text), fd, n,
             n < 0 ? strerror(errno) : "short");
  } else {
    wl_fail("bad expectation for a writer: %s", expect);
  }
}

static void check_reader(int fd, const char *expect) {
  if (strncmp(expect, "read ", 5) != 0) {
    wl_fail("bad expectation for a reader: %s", expect);
    return;
  }
  const char *want = expect + 5;
  char got[4096];
  size_t off = 0;
  for (;;) {  // blocking reads until end of file: a hang here is an outer end still open
    ssize_t n = read(fd, got + off, sizeof got - 1 - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      wl_fail("read fd %d: %s", fd, strerror(errno));
      return;
    }
    if (n == 0) break;
    off += (size_t)n;
    if (off == sizeof got - 1) break;
  }
  got[off] = '\0';
  WL_CHECK(strcmp(got, want) == 0, "fd %d gave %zu bytes \"%s\" before its end of file, want \"%s\"", fd, off, got,
           want);
}

// Takes every token there is without blocking; returns how many.
static long take_tokens(int r) {
  long taken = 0;
  char buf[256];
  for (;;) {
    ssize_t n = read(r, buf, sizeof buf);
    if (n > 0) {
      taken += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    WL_CHECK(n < 0 && errno == EAGAIN, "jobserver read: %zd (%s), want EAGAIN once it is empty", n,
             n == 0 ? "end of file" : strerror(errno));
    return taken;
  }
}

static void check_jobserver(int r, int w, const char *expect) {
  long want = 0;
  if (sscanf(expect, "tokens %ld", &want) != 1) {
    wl_fail("bad expectation for a jobserver: %s", expect);
    return;
  }
  WL_MUST(fcntl(r, F_SETFL, fcntl(r, F_GETFL) | O_NONBLOCK) == 0);
  long taken = take_tokens(r);
  WL_CHECK(taken == want, "took %ld tokens, want %ld", taken, want);
  for (long i = 0; i < taken; i++) WL_CHECK(write(w, "+", 1) == 1, "give a token back: %s", strerror(errno));
  long again = take_tokens(r);
  WL_CHECK(again == taken, "took %ld tokens after giving %ld back", again, taken);
  for (long i = 0; i < again; i++) WL_CHECK(write(w, "+", 1) == 1, "give a token back: %s", strerror(errno));
}

int main(int argc, char **argv) {
  const char *usage = "READY REPORT EXPECT writer|reader|jobserver FD [FD2]";
  const char *ready = wl_arg(argc, argv, 1, usage), *report = wl_arg(argc, argv, 2, usage);
  const char *expect_path = wl_arg(argc, argv, 3, usage), *mode = wl_arg(argc, argv, 4, usage);
  int fd = atoi(wl_arg(argc, argv, 5, usage));
  int fd2 = strcmp(mode, "jobserver") == 0 ? atoi(wl_arg(argc, argv, 6, usage)) : -1;
  signal(SIGPIPE, SIG_IGN);  // a write without a reader fails with EPIPE instead of killing
  wl_install_trigger();
  if (strcmp(mode, "writer") == 0) WL_MUST(wl_write_all(fd, "hello\n", 6) == 0);
  struct stat st;
  WL_MUST(fstat(fd, &st) == 0);
  wl_ready(ready, "ino=%lu pid=%d", (unsigned long)st.st_ino, (int)getpid());
  while (!wl_triggered) pause();

  char expect[4096];
  ssize_t len = wl_read_file(expect_path, expect, sizeof expect - 1);
  WL_MUST(len > 0);
  expect[len] = '\0';
  expect[strcspn(expect, "\n")] = '\0';
  if (strcmp(mode, "writer") == 0)
    check_writer(fd, expect);
  else if (strcmp(mode, "reader") == 0)
    check_reader(fd, expect);
  else
    check_jobserver(fd, fd2, expect);
  return wl_finish(report);
}
