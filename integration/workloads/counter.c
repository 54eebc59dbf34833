// counter: a patterned memory block, a counter published to a progress file, and
// optionally worker threads, a child joined by a pipe with data in flight, and
// objects cryo must refuse (an io_uring fd, a perf_event fd in the child).
//
//   counter READY REPORT PROGRESS [--mib N] [--threads N] [--child]
//           [--io-uring] [--perf-child] [--child-file PATH] [--child-cwd DIR]
//
// --child-file and --child-cwd make the child (only) hold PATH open and live in DIR;
// --child-pdeath gives the child SIGUSR2 as parent-death signal (so it exits 7).
// --object KIND makes the root hold one of the kernel objects of objects.h (in the
// directory of PROGRESS where it needs one).
// --thp asks for transparent huge pages for the big block (MADV_HUGEPAGE); --madvise
// adds a MADV_WIPEONFORK and a MADV_DONTFORK region, checked after restore in a fork,
// and regions with MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTDUMP, MADV_NOHUGEPAGE,
// MADV_MERGEABLE and mlock (the test compares their VmFlags).
// --reserve GIB adds a GIB GiB MAP_NORESERVE read-write mapping with three pages
// written, and a 16 * GIB GiB PROT_NONE reservation (what Go, JVMs and sanitizers do).
// --seed N fills the big block with pattern N of its own (processes of one tree
// then hold different bytes at the same addresses).
// --vmas N adds N one-page mappings, alternately read-write and read-only (so that
// they cannot merge), each with its own contents.
//
// PROGRESS holds one line "main t1 t2 ..." rewritten every 20 ms, so a test sees
// from outside whether the process runs. On SIGUSR1 it verifies its memory, that
// the counters still advance and the child's state, writes REPORT and exits.
#include "workload.h"
#include "objects.h"

#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MAX_THREADS 256
#define SEED 0x636f756e746572ULL
#define CHILD_SEED 0x6368696c64ULL
#define PIPE_BYTES 1000

static _Atomic uint64_t thread_counters[MAX_THREADS];
static atomic_int stop_threads;

static void *worker(void *arg) {
  int i = (int)(intptr_t)arg;
  wl_block_trigger();
  while (!atomic_load(&stop_threads)) {
    atomic_fetch_add(&thread_counters[i], 1);
    wl_sleep_ms(5);
  }
  return NULL;
}

// SIGUSR2: exit 7 at once (tests that `cryo restore` passes the root's status on).
static void on_usr2(int sig) {
  (void)sig;
  _exit(7);
}

static unsigned char pipe_byte(int i) { return (unsigned char)(i * 7 + 3); }

// The child: its own patterned memory, the write end of a pipe to the parent
// (with PIPE_BYTES in flight) and optionally a perf_event fd.
static const char *child_file, *child_cwd;
static int child_pdeath;

static int child_main(int write_end, int want_perf, int ready_fd) {
  int file_fd = -1;
  if (child_file) WL_MUST((file_fd = open(child_file, O_RDONLY)) >= 0);
  if (child_cwd) WL_MUST(chdir(child_cwd) == 0);
  if (child_pdeath) WL_MUST(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0) == 0);
  size_t len = 1 << 20;
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  wl_fill(mem, len, CHILD_SEED);
  unsigned char data[PIPE_BYTES];
  for (int i = 0; i < PIPE_BYTES; i++) data[i] = pipe_byte(i);
  WL_MUST(wl_write_all(write_end, data, sizeof data) == 0);
  int perf_fd = -1;
  if (want_perf) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.disabled = 0;
    perf_fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    WL_MUST(perf_fd >= 0);
  }
  char msg[64];
  int n = snprintf(msg, sizeof msg, "%d\n", perf_fd);
  WL_MUST(wl_write_all(ready_fd, msg, (size_t)n) == 0);
  close(ready_fd);
  pid_t parent = getppid();
  while (!wl_triggered) wl_sleep_ms(10);
  long bad = wl_check_fill(mem, len, CHILD_SEED);
  if (bad >= 0) return 10;
  if (getppid() != parent) return 11;
  if (perf_fd >= 0) {
    uint64_t value = 0;
    if (read(perf_fd, &value, sizeof value) != sizeof value) return 12;
  }
  if (file_fd >= 0) {
    struct stat st;
    if (fstat(file_fd, &st) != 0) return 13;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *usage =
      "READY REPORT PROGRESS [--mib N] [--threads N] [--child] [--io-uring] [--perf-child] [--child-file PATH] "
      "[--child-cwd DIR] [--child-pdeath] [--vmas N] [--object KIND] [--thp] [--madvise] [--reserve GIB] [--seed N]";
  const char *ready_path = wl_arg(argc, argv, 1, usage);
  const char *report_path = wl_arg(argc, argv, 2, usage);
  const char *progress_path = wl_arg(argc, argv, 3, usage);
  long mib = 16;
  uint64_t seed = SEED;
  int nthreads = 0, want_child = 0, want_uring = 0, want_perf = 0;
  long nvmas = 0;
  int want_thp = 0, want_madvise = 0;
  long reserve_gib = 0;
  const char *object_kind = NULL;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--mib"))
      mib = atol(wl_arg(argc, argv, ++i, usage));
    else if (!strcmp(argv[i], "--seed"))
      seed = SEED + strtoull(wl_arg(argc, argv, ++i, usage), NULL, 0);
    else if (!strcmp(argv[i], "--threads"))
      nthreads = atoi(wl_arg(argc, argv, ++i, usage));
    else if (!strcmp(argv[i], "--child"))
      want_child = 1;
    else if (!strcmp(argv[i], "--io-uring"))
      want_uring = 1;
    else if (!strcmp(argv[i], "--perf-child"))
      want_child = want_perf = 1;
    else if (!strcmp(argv[i], "--child-file"))
      want_child = 1, child_file = wl_arg(argc, argv, ++i, usage);
    else if (!strcmp(argv[i], "--child-cwd"))
      want_child = 1, child_cwd = wl_arg(argc, argv, ++i, usage);
    else if (!strcmp(argv[i], "--reserve"))
      reserve_gib = atol(wl_arg(argc, argv, ++i, usage));
    else if (!strcmp(argv[i], "--thp"))
      want_thp = 1;
    else if (!strcmp(argv[i], "--madvise"))
      want_madvise = 1;
    else if (!strcmp(argv[i], "--child-pdeath"))
      want_child = child_pdeath = 1;
    else if (!strcmp(argv[i], "--object"))
      object_kind = wl_arg(argc, argv, ++i, usage);
    else if (!strcmp(argv[i], "--vmas"))
      nvmas = atol(wl_arg(argc, argv, ++i, usage));
    else {
      fprintf(stderr, "usage: %s %s\n", argv[0], usage);
      return 2;
    }
  }
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  wl_install_trigger();
  signal(SIGUSR2, on_usr2);

  // The child first, before the big block and the threads exist.
  pid_t child = 0;
  int pipe_read = -1, perf_fd = -1;
  if (want_child) {
    int p[2], r[2];
    WL_MUST(pipe(p) == 0 && pipe(r) == 0);
    child = fork();
    WL_MUST(child >= 0);
    if (child == 0) {
      close(p[0]);
      close(r[0]);
      _exit(child_main(p[1], want_perf, r[1]));
    }
    close(p[1]);
    close(r[1]);
    pipe_read = p[0];
    char msg[64] = {0};
    WL_MUST(read(r[0], msg, sizeof msg - 1) > 0);
    close(r[0]);
    perf_fd = atoi(msg);
  }

  size_t len = (size_t)mib << 20;
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  if (want_thp) WL_MUST(madvise(mem, len, MADV_HUGEPAGE) == 0);
  wl_fill(mem, len, seed);
  char *reserved = NULL, *none = NULL;
  size_t reserved_len = (size_t)reserve_gib << 30;
  size_t touched[3] = {0, reserved_len / 2, reserved_len - 4096};
  if (reserve_gib > 0) {
    reserved = mmap(NULL, reserved_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    none = mmap(NULL, reserved_len * 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    WL_MUST(reserved != MAP_FAILED && none != MAP_FAILED);
    for (int i = 0; i < 3; i++) wl_fill(reserved + touched[i], 4096, SEED + 9);
  }
  char *wipe = NULL, *nofork = NULL;
  if (want_madvise) {
    wipe = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    nofork = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(wipe != MAP_FAILED && nofork != MAP_FAILED);
    wl_fill(wipe, 8192, SEED + 7);
    wl_fill(nofork, 8192, SEED + 8);
    WL_MUST(madvise(wipe, 8192, MADV_WIPEONFORK) == 0 && madvise(nofork, 8192, MADV_DONTFORK) == 0);
    const int advice[] = {MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTDUMP, MADV_NOHUGEPAGE, MADV_MERGEABLE, -1};
    for (int i = 0; i < 6; i++) {
      // Separate mappings with a hole between them, so that none can merge.
      char *region = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      WL_MUST(region != MAP_FAILED && munmap(region + 2 * 4096, 4096) == 0);
      wl_fill(region, 8192, SEED + 10 + (uint64_t)i);
      if (advice[i] >= 0)
        WL_MUST(madvise(region, 8192, advice[i]) == 0);
      else
        WL_MUST(mlock(region, 8192) == 0);
    }
  }

  // Many small mappings: reserve one range, then map each page of it by itself.
  char *vmas = NULL;
  if (nvmas > 0) {
    vmas = mmap(NULL, (size_t)nvmas * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(vmas != MAP_FAILED);
    for (long i = 0; i < nvmas; i++) {
      char *page = vmas + i * 4096;
      WL_MUST(mmap(page, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == page);
      wl_fill(page, 4096, SEED + (uint64_t)i);
      if (i % 2) WL_MUST(mprotect(page, 4096, PROT_READ) == 0);
    }
  }

  int uring_fd = -1;
  if (want_uring) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    uring_fd = (int)syscall(425 /* io_uring_setup */, 8, &params);
    WL_MUST(uring_fd >= 0);
  }

  int object_fd = -1;
  if (object_kind) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", progress_path);
    char *slash = strrchr(dir, '/');
    if (slash)
      *slash = 0;
    else
      snprintf(dir, sizeof dir, ".");
    object_fd = make_object(object_kind, dir);
  }

  pthread_t threads[MAX_THREADS];
  for (int i = 0; i < nthreads; i++)
    WL_MUST(pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i) == 0);

  int progress = open(progress_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(progress >= 0);
  uint64_t counter = 0;

  wl_ready(ready_path, "pid=%d child=%d mem=%p mib=%ld uring_fd=%d perf_fd=%d threads=%d object_fd=%d", (int)getpid(),
           (int)child, (void *)mem, mib, uring_fd, perf_fd, nthreads, object_fd);

  // Counters must only move forward: a restore that brings back a stale page or
  // a stale register would make them jump back.
  uint64_t last_seen[MAX_THREADS] = {0};
  while (!wl_triggered) {
    counter++;
    char line[512];
    int n = snprintf(line, sizeof line, "%llu", (unsigned long long)counter);
    for (int i = 0; i < nthreads; i++) {
      uint64_t v = atomic_load(&thread_counters[i]);
      if (v < last_seen[i]) wl_fail("thread %d counter went back from %llu to %llu", i,
                                    (unsigned long long)last_seen[i], (unsigned long long)v);
      last_seen[i] = v;
      if (i < 8)  // the first 8 threads are published; all are checked
        n += snprintf(line + n, sizeof line - (size_t)n, " %llu", (unsigned long long)v);
    }
    memset(line + n, ' ', 255 - (size_t)n);
    line[255] = '\n';
    if (pwrite(progress, line, 256, 0) != 256) wl_fail("progress write: %s", strerror(errno));
    wl_sleep_ms(20);
  }

  // Verify.
  long bad = wl_check_fill(mem, len, seed);
  WL_CHECK(bad < 0, "memory pattern broken at offset %ld of %ld MiB", bad, mib);
  for (long i = 0; i < nvmas; i++)
    if (wl_check_fill(vmas + i * 4096, 4096, SEED + (uint64_t)i) >= 0) {
      wl_fail("small mapping %ld of %ld broken", i, nvmas);
      break;
    }
  if (nthreads > 0) {
    uint64_t before[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) before[i] = atomic_load(&thread_counters[i]);
    wl_sleep_ms(200);
    for (int i = 0; i < nthreads; i++)
      WL_CHECK(atomic_load(&thread_counters[i]) > before[i], "thread %d counter stuck at %llu", i,
               (unsigned long long)before[i]);
    atomic_store(&stop_threads, 1);
    for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
  }
  check_object();
  if (reserved) {
    for (int i = 0; i < 3; i++)
      WL_CHECK(wl_check_fill(reserved + touched[i], 4096, SEED + 9) < 0, "reserved mapping: page at %zu broken",
               touched[i]);
    WL_CHECK(reserved[4096 * 5] == 0 && reserved[reserved_len / 4] == 0, "reserved mapping: untouched page not zero");
  }
  if (want_madvise) {
    WL_CHECK(wl_check_fill(wipe, 8192, SEED + 7) < 0 && wl_check_fill(nofork, 8192, SEED + 8) < 0,
             "madvise regions lost their contents");
    pid_t probe = fork();
    if (probe == 0) {
      // In a fork: the WIPEONFORK region reads zero, the DONTFORK region is not mapped.
      for (int i = 0; i < 8192; i++)
        if (wipe[i]) _exit(20);
      char perms[8];
      if (mincore(nofork, 4096, (unsigned char *)perms) == 0 || errno != ENOMEM) _exit(21);
      _exit(0);
    }
    int st = 0;
    waitpid(probe, &st, 0);
    WL_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "after restore a fork sees %s",
             WIFEXITED(st) && WEXITSTATUS(st) == 20   ? "the MADV_WIPEONFORK region not wiped"
             : WIFEXITED(st) && WEXITSTATUS(st) == 21 ? "the MADV_DONTFORK region mapped"
                                                      : "something else (status in the log)");
  }
  if (uring_fd >= 0) {
    struct stat st;
    WL_CHECK(fstat(uring_fd, &st) == 0, "io_uring fd %d gone: %s", uring_fd, strerror(errno));
  }
  if (child > 0) {
    unsigned char data[PIPE_BYTES];
    int flags = fcntl(pipe_read, F_GETFL);
    fcntl(pipe_read, F_SETFL, flags | O_NONBLOCK);
    ssize_t got = read(pipe_read, data, sizeof data);
    if (got != PIPE_BYTES) {
      wl_fail("pipe from child held %zd bytes, want %d", got, PIPE_BYTES);
    } else {
      for (int i = 0; i < PIPE_BYTES; i++)
        if (data[i] != pipe_byte(i)) {
          wl_fail("pipe byte %d is %u, want %u", i, data[i], pipe_byte(i));
          break;
        }
    }
    kill(child, SIGUSR1);
    int status = 0;
    pid_t w;
    while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
    }
    if (w != child)
      wl_fail("waitpid(child %d): %s", (int)child, strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      wl_fail("child %d ended with status 0x%x (10: memory, 11: parent changed, 12: perf fd)", (int)child, status);
  }
  return wl_finish(report_path);
}
