// racer: memory that changes as fast as it can while it is dumped. An image taken of
// a tree that is not really frozen (memory copied while a thread still writes) holds
// a buffer that does not agree with the writer's own progress variable.
//
//   racer READY REPORT [--mib N]
//
// Two writer threads sweep their buffers word by word with a generation number and
// keep their position in one 64-bit word (generation << 32 | position), so at any
// instant buffer[0, position) holds generation g and buffer[position, end) g - 1.
// When a writer notices its clock jumped (it was frozen: dumped and restored), it
// checks that invariant at once, before the sweep can overwrite a torn copy; the
// main thread checks it again on SIGUSR1 and reports.
#include "workload.h"

#include <stdatomic.h>
#include <sys/mman.h>

#define NWRITERS 2
#define GAP_S 0.05

struct writer {
  int index;
  uint64_t *buf;
  size_t words;
  _Atomic uint64_t state;  // generation << 32 | position
  atomic_int checks;
};

static struct writer writers[NWRITERS];
static atomic_int stop;

static void verify(struct writer *w, const char *when) {
  uint64_t s = atomic_load(&w->state);
  uint64_t g = s >> 32, p = s & 0xffffffffu;
  for (size_t i = 0; i < w->words; i++) {
    uint64_t want = i < p ? g : g - 1;
    if (w->buf[i] != want) {
      wl_fail("%s: writer %d: word %zu holds generation %llu, but its progress says %llu (generation %llu, at %llu)",
              when, w->index, i, (unsigned long long)w->buf[i], (unsigned long long)want, (unsigned long long)g,
              (unsigned long long)p);
      return;
    }
  }
  atomic_fetch_add(&w->checks, 1);
}

static void *writer_main(void *arg) {
  struct writer *w = arg;
  wl_block_trigger();
  double last = wl_now();
  uint64_t s = atomic_load(&w->state);
  while (!atomic_load(&stop)) {
    for (int n = 0; n < 4096; n++) {
      uint64_t g = s >> 32, p = s & 0xffffffffu;
      w->buf[p] = g;
      if (++p == w->words) g++, p = 0;
      s = g << 32 | p;
      atomic_store_explicit(&w->state, s, memory_order_release);
    }
    double now = wl_now();
    if (now - last > GAP_S) verify(w, "after a pause");
    last = wl_now();
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *ready_path = wl_arg(argc, argv, 1, "READY REPORT [--mib N]");
  const char *report_path = wl_arg(argc, argv, 2, "READY REPORT [--mib N]");
  long mib = argc > 4 && !strcmp(argv[3], "--mib") ? atol(argv[4]) : 128;
  wl_install_trigger();
  pthread_t threads[NWRITERS];
  for (int i = 0; i < NWRITERS; i++) {
    struct writer *w = &writers[i];
    w->index = i;
    w->words = ((size_t)mib << 20) / 8;
    w->buf = mmap(NULL, w->words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(w->buf != MAP_FAILED);
    atomic_store(&w->state, (uint64_t)1 << 32);  // generation 1 at 0: the rest holds 0
    WL_MUST(pthread_create(&threads[i], NULL, writer_main, w) == 0);
  }
  // Ready once both have swept their buffer once.
  for (int i = 0; i < NWRITERS; i++)
    while ((atomic_load(&writers[i].state) >> 32) < 2) wl_sleep_ms(5);
  wl_ready(ready_path, "pid=%d", (int)getpid());
  while (!wl_triggered) wl_sleep_ms(10);
  atomic_store(&stop, 1);
  for (int i = 0; i < NWRITERS; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < NWRITERS; i++) verify(&writers[i], "at the end");
  char line[128];
  snprintf(line, sizeof line, "checks %d %d", atomic_load(&writers[0].checks), atomic_load(&writers[1].checks));
  fprintf(stderr, "%s\n", line);
  return wl_finish(report_path);
}
