// leader: a process whose main thread has exited (pthread_exit) while its other
// threads go on: /proc shows the leader as a zombie, but the process is alive.
//
//   leader READY REPORT PROGRESS
//
// Two threads: one counts into PROGRESS every 20 ms, one waits for SIGUSR1, then
// checks its memory and that the counter still moves, writes REPORT and exits.
#include "workload.h"

#include <stdatomic.h>
#include <sys/mman.h>

#define SEED 0x6c6561646572ULL

static const char *ready_path, *report_path, *progress_path;
static _Atomic uint64_t counter;
static char *mem;

static void *count_main(void *arg) {
  (void)arg;
  wl_block_trigger();
  int fd = open(progress_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(fd >= 0);
  for (;;) {
    char line[64];
    int n = snprintf(line, sizeof line, "%llu", (unsigned long long)atomic_fetch_add(&counter, 1) + 1);
    memset(line + n, ' ', 63 - (size_t)n);
    line[63] = '\n';
    if (pwrite(fd, line, 64, 0) != 64) wl_fail("progress write: %s", strerror(errno));
    wl_sleep_ms(20);
  }
  return NULL;
}

static void *verify_main(void *arg) {
  (void)arg;
  while (atomic_load(&counter) == 0) wl_sleep_ms(1);
  wl_ready(ready_path, "pid=%d", (int)getpid());
  while (!wl_triggered) wl_sleep_ms(10);
  WL_CHECK(wl_check_fill(mem, 8 << 20, SEED) < 0, "memory pattern broken");
  uint64_t before = atomic_load(&counter);
  wl_sleep_ms(200);
  WL_CHECK(atomic_load(&counter) > before, "the counting thread stopped at %llu", (unsigned long long)before);
  exit(wl_finish(report_path));
}

int main(int argc, char **argv) {
  ready_path = wl_arg(argc, argv, 1, "READY REPORT PROGRESS");
  report_path = wl_arg(argc, argv, 2, "READY REPORT PROGRESS");
  progress_path = wl_arg(argc, argv, 3, "READY REPORT PROGRESS");
  wl_install_trigger();
  mem = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  wl_fill(mem, 8 << 20, SEED);
  pthread_t a, b;
  WL_MUST(pthread_create(&a, NULL, count_main, NULL) == 0);
  WL_MUST(pthread_create(&b, NULL, verify_main, NULL) == 0);
  pthread_exit(NULL);
}
