// lazymem: memory that must come back exactly, however it comes back (whole,
// from a page server, or lazily through userfaultfd).
//
//   lazymem READY REPORT --mib N [--after-restore]
//
// - N MiB of private anonymous memory filled with an address-derived pattern;
// - a 64 MiB sparse region where only one page in each 4 MiB was touched (the
//   others must read as zeros);
// - a small "answer" pipe: on SIGUSR2 it writes one byte to fd 1 (the bench
//   measures how soon a lazily restored process answers).
//
// On SIGUSR1 it verifies. With --after-restore it first does what a process
// does to memory that may not be there yet: madvise(MADV_DONTNEED) of the last
// 8 MiB (which must then read as zeros), mremap of a 4 MiB piece to a new
// address (which must carry the old address's pattern), and a fork whose child
// checks the first half of the memory on its own. Then "OK" or "FAIL: reasons".
#include "workload.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define SEED 0x6c617a79ULL
#define SPARSE_LEN (64UL << 20)
#define SPARSE_STEP (4UL << 20)
#define AWAY_LEN (8UL << 20)
#define MOVED_LEN (4UL << 20)

// The answer comes from the handler itself: a flag checked before pause()
// misses a signal that lands in between (a restored process, let go in its
// restarted pause, may not have re-entered it yet when the signal comes).
static const volatile char *answer_mem;
static size_t answer_len;
static void on_usr2(int sig) {
  (void)sig;
  // Touches a page far into the memory first, as a request would.
  char c = answer_mem[answer_len / 2] ? 'y' : 'n';
  if (write(1, &c, 1) != 1) {
  }
}

// The pattern of `base` (where the bytes were written) read at `mem`.
static long check_pattern_of(const void *mem, uintptr_t base, size_t len) {
  const uint64_t *p = mem;
  for (size_t i = 0; i < len / 8; i++)
    if (p[i] != wl_pattern(base + i * 8, SEED)) return (long)(i * 8);
  return -1;
}

static long check_zero(const void *mem, size_t len) {
  const uint64_t *p = mem;
  for (size_t i = 0; i < len / 8; i++)
    if (p[i]) return (long)(i * 8);
  return -1;
}

static void check_sparse(const char *sparse) {
  for (size_t at = 0; at < SPARSE_LEN; at += 4096) {
    long bad = at % SPARSE_STEP == 0 ? check_pattern_of(sparse + at, (uintptr_t)sparse + at, 4096)
                                     : check_zero(sparse + at, 4096);
    if (bad >= 0) {
      wl_fail("sparse page at +%zu is wrong at byte %ld", at, bad);
      return;
    }
  }
}

int main(int argc, char **argv) {
  const char *usage = "READY REPORT --mib N [--after-restore]";
  const char *ready = wl_arg(argc, argv, 1, usage);
  const char *report = wl_arg(argc, argv, 2, usage);
  size_t mib = 64;
  int after_restore = 0;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--after-restore")) after_restore = 1;
  }
  size_t len = mib << 20;
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  wl_fill(mem, len, SEED);
  char *sparse = mmap(NULL, SPARSE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(sparse != MAP_FAILED);
  for (size_t at = 0; at < SPARSE_LEN; at += SPARSE_STEP) wl_fill(sparse + at, 4096, SEED);
  wl_install_trigger();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  answer_mem = mem;
  answer_len = len;
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_RESTART;
  WL_MUST(sigaction(SIGUSR2, &sa, NULL) == 0);
  wl_ready(ready, "pid=%d mem=%p mib=%zu", (int)getpid(), (void *)mem, mib);
  while (!wl_triggered) pause();
  size_t checked = len;
  if (after_restore && len > AWAY_LEN + MOVED_LEN * 2) {
    checked = len - AWAY_LEN;
    char *away = mem + checked;
    WL_CHECK(madvise(away, AWAY_LEN, MADV_DONTNEED) == 0, "madvise: %s", strerror(errno));
    long bad = check_zero(away, AWAY_LEN);
    WL_CHECK(bad < 0, "the range given up with MADV_DONTNEED reads non-zero at +%ld", bad);
    // Moved before its pages were touched: they follow it.
    char *from = mem + checked - MOVED_LEN;
    char *to = mmap(NULL, MOVED_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(to != MAP_FAILED);
    char *moved = mremap(from, MOVED_LEN, MOVED_LEN, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    WL_CHECK(moved == to, "mremap: %s", strerror(errno));
    if (moved == to) {
      bad = check_pattern_of(moved, (uintptr_t)from, MOVED_LEN);
      WL_CHECK(bad < 0, "the moved piece is wrong at +%ld", bad);
    }
    checked -= MOVED_LEN;
    pid_t child = fork();
    WL_MUST(child >= 0);
    if (child == 0) {
      long b = wl_check_fill(mem, checked / 2, SEED);
      _exit(b < 0 ? 0 : 1);
    }
    int status = 0;
    WL_MUST(waitpid(child, &status, 0) == child);
    WL_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child forked after restore saw wrong memory (status %#x)",
             status);
  }
  long bad = wl_check_fill(mem, checked, SEED);
  WL_CHECK(bad < 0, "memory is wrong at +%ld of %zu bytes", bad, checked);
  check_sparse(sparse);
  return wl_finish(report);
}
