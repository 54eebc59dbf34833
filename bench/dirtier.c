// dirtier: the incremental-dump bench's workload.
//
//   dirtier MIB PERMILLE READY GAPS
//
// Touches MIB MiB with a pattern, writes READY, then keeps writing PERMILLE
// thousandths of its pages per second (one word in each, spread evenly over
// 1 ms ticks), and records the longest gap between two ticks it saw: on
// SIGUSR1 it writes "max_gap_us N" to GAPS and starts measuring anew.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t report_now;
static void on_usr1(int sig) { (void)sig; report_now = 1; }

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  size_t len = (size_t)atol(argv[1]) << 20, pages = len / 4096;
  double permille = atof(argv[2]);
  uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  for (size_t i = 0; i < len / 8; i++) mem[i] = (i * 0x9e3779b97f4a7c15ULL) | 1;
  signal(SIGUSR1, on_usr1);
  FILE *ready = fopen(argv[3], "w");
  if (!ready) return 1;
  fprintf(ready, "READY\n");
  fclose(ready);
  double per_tick = (double)pages * permille / 1000.0 / 1000.0, owed = 0;
  uint64_t seed = 88172645463325252ULL, last = now_us(), max_gap = 0;
  for (;;) {
    struct timespec tick = {0, 1000000};
    nanosleep(&tick, NULL);
    uint64_t t = now_us();
    if (t - last > max_gap) max_gap = t - last;
    last = t;
    for (owed += per_tick; owed >= 1; owed--) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      mem[(seed % pages) * 512] += 2;
    }
    if (report_now) {
      report_now = 0;
      FILE *gaps = fopen(argv[4], "w");
      if (gaps) {
        fprintf(gaps, "max_gap_us %lu\n", (unsigned long)max_gap);
        fclose(gaps);
      }
      max_gap = 0;
      last = now_us();
    }
  }
}
