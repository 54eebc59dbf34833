// Memory a dump has its process write itself (core/mm/task_write.h), and what
// it must read the usual way beside it.
//
//   taskmem READY REPORT
//
// Builds: A, 24 MiB of a pattern with present all-zero pages among it (written
// then zeroed: every 5th page, and pages 1000-1999); Z, 16 MiB written then
// zeroed whole; N, 1 MiB of a pattern made PROT_NONE; W, 1 MiB of a pattern
// made write-only; a second thread holding a pattern on its own stack and
// counting. Says READY, then on SIGUSR1 checks every byte of it (making N and
// W readable for that) and that the thread kept counting, and reports.
#include "workload.h"

#include <sys/mman.h>

#define MIB (1024 * 1024)
#define PAGE 4096
#define A_SIZE (24 * MIB)
#define Z_SIZE (16 * MIB)
#define N_SIZE (1 * MIB)
#define W_SIZE (1 * MIB)
#define T_SIZE (64 * 1024)

static char *a, *z, *n, *w;
static volatile uint64_t ticks;
static volatile int thread_failed;

static int a_page_zero(size_t page) { return page % 5 == 0 || (page >= 1000 && page < 2000); }

static void *counter(void *arg) {
  (void)arg;
  char mine[T_SIZE];
  wl_fill(mine, sizeof mine, 7);
  for (;;) {
    ticks++;
    if (wl_check_fill(mine, sizeof mine, 7) >= 0) thread_failed = 1;
    wl_sleep_ms(5);
  }
  return NULL;
}

static int page_zero(const char *p) {
  for (size_t i = 0; i < PAGE; i++)
    if (p[i]) return 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  WL_MUST(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
  a = mmap(NULL, A_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  z = mmap(NULL, Z_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  n = mmap(NULL, N_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  w = mmap(NULL, W_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(a != MAP_FAILED && z != MAP_FAILED && n != MAP_FAILED && w != MAP_FAILED);
  wl_fill(a, A_SIZE, 1);
  for (size_t page = 0; page < A_SIZE / PAGE; page++)
    if (a_page_zero(page)) memset(a + page * PAGE, 0, PAGE);
  memset(z, 1, Z_SIZE);
  memset(z, 0, Z_SIZE);
  wl_fill(n, N_SIZE, 2);
  wl_fill(w, W_SIZE, 3);
  WL_MUST(mprotect(n, N_SIZE, PROT_NONE) == 0);
  WL_MUST(mprotect(w, W_SIZE, PROT_WRITE) == 0);
  pthread_t t;
  WL_MUST(pthread_create(&t, NULL, counter, NULL) == 0);
  wl_ready(argv[1], "pid=%d a=%lu z=%lu n=%lu w=%lu", (int)getpid(), (unsigned long)a, (unsigned long)z,
           (unsigned long)n, (unsigned long)w);
  int sig;
  while (sigwait(&set, &sig) != 0 || sig != SIGUSR1) {
  }
  for (size_t page = 0; page < A_SIZE / PAGE; page++) {
    char *p = a + page * PAGE;
    if (a_page_zero(page)) {
      WL_CHECK(page_zero(p), "A page %zu is not zero", page);
      continue;
    }
    long bad = wl_check_fill(p, PAGE, 1);
    WL_CHECK(bad < 0, "A page %zu differs at %ld", page, bad);
  }
  for (size_t page = 0; page < Z_SIZE / PAGE; page++) WL_CHECK(page_zero(z + page * PAGE), "Z page %zu is not zero", page);
  WL_CHECK(mprotect(n, N_SIZE, PROT_READ) == 0 && mprotect(w, W_SIZE, PROT_READ | PROT_WRITE) == 0,
           "mprotect N and W readable: %s", strerror(errno));
  long bad = wl_check_fill(n, N_SIZE, 2);
  WL_CHECK(bad < 0, "PROT_NONE region differs at %ld", bad);
  bad = wl_check_fill(w, W_SIZE, 3);
  WL_CHECK(bad < 0, "write-only region differs at %ld", bad);
  uint64_t before = ticks;
  wl_sleep_ms(100);
  WL_CHECK(ticks > before, "the counting thread stopped (%lu ticks)", (unsigned long)before);
  WL_CHECK(!thread_failed, "the counting thread's stack changed");
  return wl_finish(argv[2]);
}
