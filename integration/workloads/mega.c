// mega: most of what a real process holds, at once.
//
//   mega READY REPORT [--mib N]
//
// - N MiB (default 256) of private anonymous memory filled with an address-derived
//   pattern, and a sparse region where only a few pages were ever touched;
// - 4 threads, each keeping distinct values live in ymm0-15 (and zmm16-31, k1-7 when
//   the CPU has AVX-512), in two x87 registers, with its own MXCSR and x87 control
//   word, inside one long asm loop that sleeps in nanosleep and bumps a counter;
// - a child and a grandchild joined by a pipe holding 3000 unread bytes;
// - a MAP_SHARED|MAP_ANONYMOUS mapping written by the parent, the child and the
//   grandchild, and used after restore to hand messages between them;
// - ITIMER_REAL armed 8 s ahead with a 100 s interval.
//
// On SIGUSR1 it verifies all of it and writes "OK" or "FAIL: reasons" to REPORT.
#include "workload.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>

#define NTHREADS 4
#define SEED 0x6d656761ULL
#define SPARSE_LEN (64UL << 20)
#define CHILD_SEED 0x6368696c64ULL
#define GRANDCHILD_SEED 0x6772616e64ULL
#define PARENT_SHM_SEED 0x7368706172ULL
#define CHILD_SHM_SEED 0x73686368ULL
#define PIPE_BYTES 3000
#define TIMER_FIRST_S 8
#define TIMER_INTERVAL_S 100

// ---- the shared anonymous mapping ------------------------------------------------------

#define SHM_LEN (1UL << 20)
#define SHM_PARENT_OFF (64UL << 10)
#define SHM_CHILD_OFF (512UL << 10)
#define SHM_REGION (256UL << 10)

struct shared_head {
  volatile uint64_t handshake;  // parent -> child, written after restore
  volatile uint64_t reply;      // child -> parent
  char child_fail[2048];
  char grandchild_fail[2048];
};

static char *shm;
static struct shared_head *head;

static void append_fail(char *buf, size_t size, const char *what) {
  size_t used = strlen(buf);
  snprintf(buf + used, size - used, "%s%s", used ? "; " : "", what);
}

static void check_shm_regions(char *fail, size_t size) {
  char msg[128];
  long bad = wl_check_fill(shm + SHM_PARENT_OFF, SHM_REGION, PARENT_SHM_SEED);
  if (bad >= 0) {
    snprintf(msg, sizeof msg, "shared mapping: parent's region broken at %ld", bad);
    append_fail(fail, size, msg);
  }
  bad = wl_check_fill(shm + SHM_CHILD_OFF, SHM_REGION, CHILD_SHM_SEED);
  if (bad >= 0) {
    snprintf(msg, sizeof msg, "shared mapping: child's region broken at %ld", bad);
    append_fail(fail, size, msg);
  }
}

static unsigned char pipe_byte(int i) { return (unsigned char)((i * 31 + 11) & 0xff); }

// ---- grandchild and child ---------------------------------------------------------------

static int grandchild_main(int read_end, int ready_fd, pid_t child) {
  size_t len = 1UL << 20;
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  wl_fill(mem, len, GRANDCHILD_SEED);
  WL_MUST(write(ready_fd, "g", 1) == 1);
  close(ready_fd);
  while (!wl_triggered) wl_sleep_ms(10);
  char *fail = head->grandchild_fail;
  size_t size = sizeof head->grandchild_fail;
  if (getppid() != child) append_fail(fail, size, "parent is no longer the child");
  if (wl_check_fill(mem, len, GRANDCHILD_SEED) >= 0) append_fail(fail, size, "private memory broken");
  check_shm_regions(fail, size);
  unsigned char data[PIPE_BYTES + 16];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(read_end, data + got, sizeof data - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (got != PIPE_BYTES) {
    char msg[96];
    snprintf(msg, sizeof msg, "pipe held %zu bytes, want %d", got, PIPE_BYTES);
    append_fail(fail, size, msg);
  } else {
    for (int i = 0; i < PIPE_BYTES; i++)
      if (data[i] != pipe_byte(i)) {
        append_fail(fail, size, "pipe data differs");
        break;
      }
  }
  return fail[0] ? 1 : 0;
}

static int child_main(int ready_fd, pid_t parent) {
  size_t len = 4UL << 20;
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  wl_fill(mem, len, CHILD_SEED);
  wl_fill(shm + SHM_CHILD_OFF, SHM_REGION, CHILD_SHM_SEED);
  int p[2], r[2];
  WL_MUST(pipe(p) == 0 && pipe(r) == 0);
  pid_t self = getpid();
  pid_t grandchild = fork();
  WL_MUST(grandchild >= 0);
  if (grandchild == 0) {
    close(p[1]);
    close(r[0]);
    close(ready_fd);
    _exit(grandchild_main(p[0], r[1], self));
  }
  close(p[0]);
  close(r[1]);
  char c;
  WL_MUST(read(r[0], &c, 1) == 1);
  close(r[0]);
  // Data in flight: written, never read before the dump.
  unsigned char data[PIPE_BYTES];
  for (int i = 0; i < PIPE_BYTES; i++) data[i] = pipe_byte(i);
  WL_MUST(wl_write_all(p[1], data, sizeof data) == 0);
  char msg[32];
  int n = snprintf(msg, sizeof msg, "%d\n", (int)grandchild);
  WL_MUST(wl_write_all(ready_fd, msg, (size_t)n) == 0);
  close(ready_fd);

  while (!wl_triggered) wl_sleep_ms(10);
  char *fail = head->child_fail;
  size_t size = sizeof head->child_fail;
  if (getppid() != parent) append_fail(fail, size, "parent changed");
  if (wl_check_fill(mem, len, CHILD_SEED) >= 0) append_fail(fail, size, "private memory broken");
  check_shm_regions(fail, size);
  if (head->handshake != 0xfeedULL) append_fail(fail, size, "parent's handshake not visible in shared mapping");
  head->reply = 0xbeefULL;
  close(p[1]);
  kill(grandchild, SIGUSR1);
  int status = 0;
  pid_t w;
  while ((w = waitpid(grandchild, &status, 0)) < 0 && errno == EINTR) {
  }
  if (w != grandchild || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    snprintf(msg, sizeof msg, "grandchild status 0x%x", status);
    append_fail(fail, size, msg);
  }
  return fail[0] ? 1 : 0;
}

// ---- threads with live vector and x87 registers ---------------------------------------------

struct thread_state {
  int index;
  pid_t tid;
  _Alignas(64) uint8_t ymm_in[16 * 32];
  _Alignas(64) uint8_t ymm_out[16 * 32];
  _Alignas(64) uint8_t zmm_in[16 * 64];
  _Alignas(64) uint8_t zmm_out[16 * 64];
  uint16_t k_in[7], k_out[7];
  double x87_in[2], x87_out[2];
  uint32_t mxcsr;
  uint16_t x87_cw;
  _Atomic uint64_t counter;
};

static struct thread_state states[NTHREADS];
static volatile int stop_flag;
static int have_avx512;

#define LOAD_YMM(n) "vmovdqu %c[yin]+" #n "*32(%[s]), %%ymm" #n "\n\t"
#define STORE_YMM(n) "vmovdqu %%ymm" #n ", %c[yout]+" #n "*32(%[s])\n\t"
#define ALL_YMM(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define LOAD_ZMM(n) "vmovdqu64 %c[zin]+(" #n "-16)*64(%[s]), %%zmm" #n "\n\t"
#define STORE_ZMM(n) "vmovdqu64 %%zmm" #n ", %c[zout]+(" #n "-16)*64(%[s])\n\t"
#define ALL_ZMM(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define LOAD_K(n) "kmovw %c[kin]+(" #n "-1)*2(%[s]), %%k" #n "\n\t"
#define STORE_K(n) "kmovw %%k" #n ", %c[kout]+(" #n "-1)*2(%[s])\n\t"
#define ALL_K(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

// The loop body: count, sleep 2 ms in nanosleep (the dump will find the thread
// there or in user space), until stop_flag.
#define LOOP                                   \
  "fldl %c[xin](%[s])\n\t"                    \
  "fldl %c[xin]+8(%[s])\n\t"                  \
  "1:\n\t"                                     \
  "lock incq %c[ctr](%[s])\n\t"               \
  "movl $35, %%eax\n\t" /* nanosleep */        \
  "leaq %[ts], %%rdi\n\t"                      \
  "xorl %%esi, %%esi\n\t"                      \
  "syscall\n\t"                                \
  "cmpl $0, %[stop]\n\t"                       \
  "je 1b\n\t"                                  \
  "fstpl %c[xout](%[s])\n\t"                  \
  "fstpl %c[xout]+8(%[s])\n\t"

#define OFF(field) "i"(offsetof(struct thread_state, field))
#define COMMON_INPUTS                                                                                   \
  [s] "r"(s), [yin] OFF(ymm_in), [yout] OFF(ymm_out), [zin] OFF(zmm_in), [zout] OFF(zmm_out),          \
      [kin] OFF(k_in), [kout] OFF(k_out), [xin] OFF(x87_in), [xout] OFF(x87_out), [ctr] OFF(counter), \
      [ts] "m"(ts), [stop] "m"(stop_flag)
#define CLOBBERS                                                                                      \
  "rax", "rdi", "rsi", "rcx", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", \
      "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)"

static void register_loop(struct thread_state *s) {
  struct timespec ts = {0, 2000000};
  if (have_avx512) {
    __asm__ volatile(ALL_YMM(LOAD_YMM) ALL_ZMM(LOAD_ZMM) ALL_K(LOAD_K) LOOP ALL_YMM(STORE_YMM) ALL_ZMM(STORE_ZMM)
                         ALL_K(STORE_K) "vzeroupper\n\t"
                     :
                     : COMMON_INPUTS
                     : CLOBBERS);
  } else {
    __asm__ volatile(ALL_YMM(LOAD_YMM) LOOP ALL_YMM(STORE_YMM) "vzeroupper\n\t" : : COMMON_INPUTS : CLOBBERS);
  }
}

static void *thread_main(void *arg) {
  struct thread_state *s = arg;
  wl_block_trigger();
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &alrm, NULL);
  s->tid = gettid();
  for (int i = 0; i < 16 * 32; i++) s->ymm_in[i] = (uint8_t)(s->index * 97 + i * 7 + 1);
  for (int i = 0; i < 16 * 64; i++) s->zmm_in[i] = (uint8_t)(s->index * 53 + i * 11 + 5);
  for (int i = 0; i < 7; i++) s->k_in[i] = (uint16_t)(0x1111 * (i + 1) + s->index);
  s->x87_in[0] = 1.25 + s->index;
  s->x87_in[1] = -3.5e10 * (s->index + 1);
  // Each thread its own rounding mode (and flush-to-zero for one of them).
  s->mxcsr = (_mm_getcsr() & ~0x6000u) | ((uint32_t)(s->index & 3) << 13) | (s->index == 3 ? 0x8000u : 0);
  _mm_setcsr(s->mxcsr);
  uint16_t cw;
  __asm__ volatile("fnstcw %0" : "=m"(cw));
  s->x87_cw = (uint16_t)((cw & ~0x0c00) | ((3 - (s->index & 3)) << 10));
  __asm__ volatile("fldcw %0" : : "m"(s->x87_cw));

  register_loop(s);

  if (gettid() != s->tid) wl_fail("thread %d: tid changed from %d to %d", s->index, (int)s->tid, (int)gettid());
  for (int r = 0; r < 16; r++)
    if (memcmp(s->ymm_in + r * 32, s->ymm_out + r * 32, 32) != 0)
      wl_fail("thread %d: ymm%d changed (first byte %#x, want %#x)", s->index, r, s->ymm_out[r * 32], s->ymm_in[r * 32]);
  if (have_avx512) {
    for (int r = 0; r < 16; r++)
      if (memcmp(s->zmm_in + r * 64, s->zmm_out + r * 64, 64) != 0) wl_fail("thread %d: zmm%d changed", s->index, r + 16);
    for (int k = 0; k < 7; k++)
      if (s->k_in[k] != s->k_out[k])
        wl_fail("thread %d: k%d is %#x, want %#x", s->index, k + 1, s->k_out[k], s->k_in[k]);
  }
  // The first value pushed is the second popped.
  if (s->x87_out[0] != s->x87_in[1] || s->x87_out[1] != s->x87_in[0])
    wl_fail("thread %d: x87 st0/st1 are %g/%g, want %g/%g", s->index, s->x87_out[0], s->x87_out[1], s->x87_in[1],
            s->x87_in[0]);
  uint32_t mxcsr = _mm_getcsr();
  if ((mxcsr & ~0x3fu) != (s->mxcsr & ~0x3fu)) wl_fail("thread %d: MXCSR %#x, want %#x", s->index, mxcsr, s->mxcsr);
  __asm__ volatile("fnstcw %0" : "=m"(cw));
  if (cw != s->x87_cw) wl_fail("thread %d: x87 control word %#x, want %#x", s->index, cw, s->x87_cw);
  return NULL;
}

// ---- the interval timer ---------------------------------------------------------------

static volatile sig_atomic_t alarms;
static volatile double first_alarm_at;

static void on_alarm(int sig) {
  (void)sig;
  if (alarms == 0) first_alarm_at = wl_now();
  alarms++;
}

static double tv_seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static void check_timer(double ready_at, double remaining_at_ready) {
  struct itimerval it;
  WL_MUST(getitimer(ITIMER_REAL, &it) == 0);
  double now = wl_now();
  double interval = tv_seconds(it.it_interval), remaining = tv_seconds(it.it_value);
  WL_CHECK(interval > TIMER_INTERVAL_S - 1 && interval <= TIMER_INTERVAL_S, "itimer interval is %.3f s, want %d s",
           interval, TIMER_INTERVAL_S);
  if (alarms == 0) {
    // Still armed: it may not have gained time, and may have lost at most the
    // time that passed (the dump-to-restore gap only delays it).
    WL_CHECK(remaining > 0, "itimer disarmed (no SIGALRM received either)");
    WL_CHECK(remaining <= remaining_at_ready + 0.01, "itimer remaining %.3f s grew from %.3f s", remaining,
             remaining_at_ready);
    WL_CHECK(remaining >= remaining_at_ready - (now - ready_at) - 0.5,
             "itimer remaining %.3f s, but %.3f s remained %.3f s ago", remaining, remaining_at_ready, now - ready_at);
    if (remaining <= 0 || remaining > TIMER_FIRST_S + 0.01) return;
    // And SIGALRM must still come, on time.
    while (alarms == 0 && wl_now() < now + remaining + 2.0) wl_sleep_ms(5);
    WL_CHECK(alarms > 0, "no SIGALRM %.3f s after the itimer said %.3f s remained", wl_now() - now, remaining);
    if (alarms > 0)
      WL_CHECK(first_alarm_at >= now + remaining - 0.3, "SIGALRM came %.3f s early", now + remaining - first_alarm_at);
  } else {
    // Fired already (the restore took long): it may not have fired early.
    WL_CHECK(first_alarm_at >= ready_at + remaining_at_ready - 0.3, "SIGALRM came %.3f s early",
             ready_at + remaining_at_ready - first_alarm_at);
    WL_CHECK(remaining > TIMER_INTERVAL_S - 20, "itimer not re-armed with its interval after firing (%.3f s)",
             remaining);
  }
}

// ---- main -------------------------------------------------------------------------------

int main(int argc, char **argv) {
  const char *usage = "READY REPORT [--mib N]";
  const char *ready_path = wl_arg(argc, argv, 1, usage);
  const char *report_path = wl_arg(argc, argv, 2, usage);
  long mib = 256;
  if (argc > 4 && !strcmp(argv[3], "--mib")) mib = atol(argv[4]);
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) {
    fprintf(stderr, "mega: needs AVX2\n");
    return 2;
  }
  have_avx512 = !!__builtin_cpu_supports("avx512f");
  wl_install_trigger();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  WL_MUST(sigaction(SIGALRM, &sa, NULL) == 0);

  shm = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  WL_MUST(shm != MAP_FAILED);
  head = (struct shared_head *)shm;
  wl_fill(shm + SHM_PARENT_OFF, SHM_REGION, PARENT_SHM_SEED);

  int r[2];
  WL_MUST(pipe(r) == 0);
  pid_t self = getpid();
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    close(r[0]);
    _exit(child_main(r[1], self));
  }
  close(r[1]);
  char msg[32] = {0};
  WL_MUST(read(r[0], msg, sizeof msg - 1) > 0);
  close(r[0]);
  pid_t grandchild = atoi(msg);

  size_t len = (size_t)mib << 20;
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  wl_fill(mem, len, SEED);
  // Sparse: 64 MiB of which only three pages were ever written.
  char *sparse = mmap(NULL, SPARSE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  WL_MUST(sparse != MAP_FAILED);
  const size_t touched[3] = {0, 17UL << 20, SPARSE_LEN - 4096};
  for (int i = 0; i < 3; i++) wl_fill(sparse + touched[i], 4096, SEED + 1);

  for (int i = 0; i < NTHREADS; i++) states[i].index = i;
  pthread_t threads[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) WL_MUST(pthread_create(&threads[i], NULL, thread_main, &states[i]) == 0);
  for (int i = 0; i < NTHREADS; i++)
    while (atomic_load(&states[i].counter) == 0) wl_sleep_ms(1);

  struct itimerval it = {{TIMER_INTERVAL_S, 0}, {TIMER_FIRST_S, 0}};
  WL_MUST(setitimer(ITIMER_REAL, &it, NULL) == 0);
  double ready_at = wl_now();
  WL_MUST(getitimer(ITIMER_REAL, &it) == 0);
  double remaining_at_ready = tv_seconds(it.it_value);

  wl_ready(ready_path, "pid=%d child=%d grandchild=%d tids=%d,%d,%d,%d mem=%p avx512=%d", (int)getpid(), (int)child,
           (int)grandchild, (int)states[0].tid, (int)states[1].tid, (int)states[2].tid, (int)states[3].tid,
           (void *)mem, have_avx512);

  uint64_t last[NTHREADS] = {0};
  while (!wl_triggered) {
    for (int i = 0; i < NTHREADS; i++) {
      uint64_t v = atomic_load(&states[i].counter);
      if (v < last[i]) wl_fail("thread %d counter went back from %llu to %llu", i, (unsigned long long)last[i],
                               (unsigned long long)v);
      last[i] = v;
    }
    wl_sleep_ms(10);
  }

  // Verify: the timer first (it is time-sensitive), then the rest.
  check_timer(ready_at, remaining_at_ready);
  long bad = wl_check_fill(mem, len, SEED);
  WL_CHECK(bad < 0, "memory pattern broken at offset %ld of %ld MiB", bad, mib);
  for (size_t off = 0; off < SPARSE_LEN; off += 4096) {
    int is_touched = off == touched[0] || off == touched[1] || off == touched[2];
    if (is_touched) {
      WL_CHECK(wl_check_fill(sparse + off, 4096, SEED + 1) < 0, "sparse region: touched page at %zu broken", off);
    } else {
      const uint64_t *w = (const uint64_t *)(sparse + off);
      int zero = 1;
      for (int j = 0; j < 512; j += 64) zero &= w[j] == 0;
      if (!zero) {
        wl_fail("sparse region: untouched page at %zu is not zero", off);
        break;
      }
    }
  }
  {
    char shm_fail[512] = {0};
    check_shm_regions(shm_fail, sizeof shm_fail);
    WL_CHECK(shm_fail[0] == 0, "parent: %s", shm_fail);
  }
  uint64_t before[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) before[i] = atomic_load(&states[i].counter);
  wl_sleep_ms(200);
  for (int i = 0; i < NTHREADS; i++)
    WL_CHECK(atomic_load(&states[i].counter) > before[i], "thread %d counter stuck at %llu", i,
             (unsigned long long)before[i]);
  stop_flag = 1;
  for (int i = 0; i < NTHREADS; i++) pthread_join(threads[i], NULL);

  head->handshake = 0xfeedULL;
  kill(child, SIGUSR1);
  int status = 0;
  pid_t w;
  while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
  }
  WL_CHECK(w == child, "waitpid(child %d): %s", (int)child, strerror(errno));
  WL_CHECK(w != child || (WIFEXITED(status) && WEXITSTATUS(status) == 0), "child ended with status 0x%x", status);
  WL_CHECK(head->child_fail[0] == 0, "child: %s", head->child_fail);
  WL_CHECK(head->grandchild_fail[0] == 0, "grandchild: %s", head->grandchild_fail);
  WL_CHECK(head->reply == 0xbeefULL, "child's reply not visible in the shared mapping (%#llx)",
           (unsigned long long)head->reply);
  return wl_finish(report_path);
}
