// kobjects: kernel objects and kinds of memory beyond the basics, one per run.
//
//   kobjects READY REPORT KIND [DIR]
//
// KIND is one of:
//   membarrier     registered for private expedited (and sync-core) membarrier
//   no_vdso        unmapped its [vdso] and [vvar]: the restored process has none either
//   guard          MADV_GUARD_INSTALL guard pages, in touched and in untouched memory
//   secret_fd      memfd_secret memory, mapped, its fd open (must be refused)
//   secret_map     the same with the fd closed: only the mapping holds it (must be refused)
//   dispatch       syscall user dispatch (as Wine uses it), its selector letting syscalls
//                  through: after restore, a syscall with the selector set to block raises SIGSYS
//   dispatch_blocked  a thread whose dispatch selector blocks syscalls as it spins (must be
//                  refused, naming it: cryo's own syscalls would raise SIGSYS there)
//   sealed         mseal()ed memory: a read-write and a read-only mapping with data, each
//                  sealed, and a third left unsealed between them
//   fanotify       a fanotify group (nonblocking, O_RDWR events) with an inode mark, an
//                  ignored mask on a second file and a mount mark on DIR (a mount of its own)
//   fanotify_queued  the same with an event not yet read (must be refused)
//   bpf_map        BPF array, hash, per-cpu array, LRU hash maps with contents, one frozen
//   bpf_prog       a loaded BPF socket filter "cryo_prog" (must be refused, naming it)
//   hugetlb_memfd  a memfd of huge pages (MFD_HUGETLB) with data and seals, mapped shared
//   hugetlb_anon   anonymous huge pages (MAP_HUGETLB), a private and a shared mapping
//   sysv_huge      a System V segment of huge pages (SHM_HUGETLB), attached; with DIR "ns"
//                  (run in an IPC namespace of its own) a second one, detached
//   private_shm    a memfd and a /dev/shm file mapped MAP_PRIVATE: some pages privately
//                  modified, others still the file's (changes to the file show through)
//   private_anon   MAP_PRIVATE views (made through /proc/self/map_files) of shared anonymous
//                  objects: one next to its MAP_SHARED mapping, also held by a child, one at
//                  an offset, one of an object no longer mapped shared; pages written in a
//                  view (one of them with zeros) are its own, the others show the object
//   private_huge   the same with a shared object of huge pages (MAP_HUGETLB): one huge page
//                  written in its view, one read only
//   aio            two AIO contexts with completions not yet reaped (in the second they
//                  wrap around the ring's end), and a child forked after them (it has none)
//   aio_inflight   an AIO context with a poll request in flight (must be refused)
//   aio_watch      the two contexts of aio, and a thread that watches their rings all
//                  along: neither head, tail nor any completion not reaped may change
//                  (a dump counting requests in flight must not show its own)
// It builds the object, says READY (object_fd=N when an fd holds it), waits for
// SIGUSR1, checks from inside that the object still works and writes REPORT.
#include "workload.h"

#include <linux/aio_abi.h>
#include <linux/bpf.h>
#include <poll.h>
#include <sys/auxv.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <pthread.h>
#include <setjmp.h>

#define PAGE 4096UL
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4U
#endif
#define HUGETLBFS_MAGIC_ 0x958458f6
#define SYS_mseal_ 462  // Linux 6.10
#define SYS_memfd_secret_ 447
#define MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)
#define MB_PRIVATE_EXPEDITED (1 << 3)
#define MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE (1 << 6)
#define MB_PRIVATE_EXPEDITED_SYNC_CORE (1 << 5)
#define MB_GET_REGISTRATIONS (1 << 9)

static const char *kind, *dir;
static int object_fd = -1;
static char ready_extra[8192];

// ---- faults -------------------------------------------------------------------------

static sigjmp_buf fault_jump;
static volatile int faulting;

static void on_segv(int sig) {
  (void)sig;
  if (faulting) siglongjmp(fault_jump, 1);
  _exit(98);
}

static int faults(volatile char *addr) {
  faulting = 1;
  int hit = 0;
  if (sigsetjmp(fault_jump, 1) == 0)
    (void)*addr;
  else
    hit = 1;
  faulting = 0;
  return hit;
}

// ---- membarrier ---------------------------------------------------------------------

static long membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

static void setup_membarrier(void) {
  WL_MUST(membarrier(MB_REGISTER_PRIVATE_EXPEDITED) == 0);
  WL_MUST(membarrier(MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0);
  long regs = membarrier(MB_GET_REGISTRATIONS);
  WL_MUST(regs >= 0);
  snprintf(ready_extra, sizeof ready_extra, "registrations=%ld", regs);
}

static void verify_membarrier(void) {
  long regs = membarrier(MB_GET_REGISTRATIONS);
  long want = MB_REGISTER_PRIVATE_EXPEDITED | MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE;
  WL_CHECK((regs & want) == want, "membarrier registrations are %#lx, want %#lx among them", regs, want);
  WL_CHECK(membarrier(MB_PRIVATE_EXPEDITED) == 0, "MEMBARRIER_CMD_PRIVATE_EXPEDITED: %s", strerror(errno));
  WL_CHECK(membarrier(MB_PRIVATE_EXPEDITED_SYNC_CORE) == 0, "MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: %s",
           strerror(errno));
}

// ---- no vDSO -------------------------------------------------------------------------

// Counts the maps lines naming a special mapping; with unmap, unmaps them.
static int special_mappings(int unmap) {
  char buf[65536];
  ssize_t n = wl_read_file("/proc/self/maps", buf, sizeof buf - 1);
  WL_MUST(n > 0);
  buf[n] = 0;
  int count = 0;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    if (!strstr(line, "[vdso]") && !strstr(line, "[vvar]") && !strstr(line, "[vvar_vclock]")) continue;
    count++;
    unsigned long start, end;
    if (unmap && sscanf(line, "%lx-%lx", &start, &end) == 2) WL_MUST(munmap((void *)start, end - start) == 0);
  }
  return count;
}

static void setup_no_vdso(void) {
  WL_MUST(special_mappings(1) > 0);
  WL_MUST(special_mappings(0) == 0);
}

static void verify_no_vdso(void) {
  WL_CHECK(special_mappings(0) == 0, "the restored process has a vDSO or vvar again");
  // glibc's clock_gettime would jump into the vDSO it found at start: the system call.
  struct timespec ts;
  WL_CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec > 0, "clock_gettime syscall");
}

// ---- guard regions -------------------------------------------------------------------

static char *guard_touched, *guard_untouched;

static void setup_guard(void) {
  guard_touched = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  guard_untouched = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(guard_touched != MAP_FAILED && guard_untouched != MAP_FAILED);
  wl_fill(guard_touched, 8 * PAGE, 0x6775);
  WL_MUST(madvise(guard_touched + 2 * PAGE, 2 * PAGE, MADV_GUARD_INSTALL) == 0);
  WL_MUST(madvise(guard_touched + 7 * PAGE, PAGE, MADV_GUARD_INSTALL) == 0);
  WL_MUST(madvise(guard_untouched + 40 * PAGE, 3 * PAGE, MADV_GUARD_INSTALL) == 0);
  snprintf(ready_extra, sizeof ready_extra, "touched=%p untouched=%p", (void *)guard_touched, (void *)guard_untouched);
}

static void verify_guard(void) {
  for (int page = 0; page < 8; page++) {
    int guard = page == 2 || page == 3 || page == 7;
    WL_CHECK(faults(guard_touched + page * PAGE) == guard, "touched region: page %d %s", page,
             guard ? "is no longer a guard page" : "faults");
    if (!guard)
      WL_CHECK(wl_check_fill(guard_touched + page * PAGE, PAGE, 0x6775) < 0, "touched region: page %d lost its data",
               page);
  }
  for (int page = 0; page < 64; page++) {
    int guard = page >= 40 && page < 43;
    WL_CHECK(faults(guard_untouched + page * PAGE) == guard, "untouched region: page %d %s", page,
             guard ? "is no longer a guard page" : "faults");
  }
}

// ---- sealed memory --------------------------------------------------------------------

static char *sealed_rw, *sealed_ro, *unsealed;

static void setup_sealed(void) {
  // One reservation, so that the three lie side by side.
  char *at = mmap(NULL, 12 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(at != MAP_FAILED);
  sealed_rw = at;
  unsealed = at + 4 * PAGE;
  sealed_ro = at + 8 * PAGE;
  wl_fill(at, 12 * PAGE, 0x5ea1);
  WL_MUST(mprotect(sealed_ro, 4 * PAGE, PROT_READ) == 0);
  WL_MUST(syscall(SYS_mseal_, sealed_rw, 4 * PAGE, 0) == 0);
  WL_MUST(syscall(SYS_mseal_, sealed_ro, 4 * PAGE, 0) == 0);
  snprintf(ready_extra, sizeof ready_extra, "sealed_rw=%p sealed_ro=%p", (void *)sealed_rw, (void *)sealed_ro);
}

static void verify_sealed(void) {
  WL_CHECK(wl_check_fill(sealed_rw, 12 * PAGE, 0x5ea1) < 0, "sealed memory lost its data");
  sealed_rw[0] ^= 1;  // still writable
  sealed_rw[0] ^= 1;
  WL_CHECK(faults(sealed_ro) == 0, "the read-only sealed mapping faults");
  for (char *m = sealed_rw; m; m = m == sealed_rw ? sealed_ro : NULL) {
    const char *which = m == sealed_rw ? "read-write" : "read-only";
    errno = 0;
    WL_CHECK(mprotect(m, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC) < 0 && errno == EPERM,
             "the %s sealed mapping takes mprotect (errno %d): it is no longer sealed", which, errno);
    errno = 0;
    WL_CHECK(munmap(m, 4 * PAGE) < 0 && errno == EPERM, "the %s sealed mapping takes munmap (errno %d)", which, errno);
  }
  WL_CHECK(mprotect(unsealed, PAGE, PROT_READ) == 0, "the mapping between the sealed ones is sealed too (errno %d)",
           errno);
}

// ---- syscall user dispatch ------------------------------------------------------------

static volatile char dispatch_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
static volatile int dispatched;  // SIGSYS raised by the dispatch
static volatile pid_t spinner_tid;

static void on_sigsys(int sig, siginfo_t *info, void *context) {
  (void)sig;
  (void)context;
  if (info->si_code == 2 /* SYS_USER_DISPATCH */) dispatched++;
  dispatch_selector = SYSCALL_DISPATCH_FILTER_ALLOW;  // the sigreturn must pass
}

static void *spin_blocked(void *arg) {
  (void)arg;
  static volatile char own_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
  spinner_tid = (pid_t)syscall(SYS_gettid);
  own_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
  WL_MUST(prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &own_selector) == 0);
  own_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
  for (;;) __asm__ volatile("pause");  // no syscall: none may pass now
  return NULL;
}

static void setup_dispatch(int blocked) {
  struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
  WL_MUST(sigaction(SIGSYS, &sa, NULL) == 0);
  WL_MUST(prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &dispatch_selector) == 0);
  if (blocked) {
    pthread_t spinner;
    WL_MUST(pthread_create(&spinner, NULL, spin_blocked, NULL) == 0);
    while (!spinner_tid) usleep(1000);
    usleep(20000);
  }
  snprintf(ready_extra, sizeof ready_extra, "tid=%d", (int)spinner_tid);
}

static void verify_dispatch(void) {
  int before = dispatched;
  dispatch_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
  (void)syscall(SYS_getppid);  // dispatched: SIGSYS, whose handler lets syscalls through again
  WL_CHECK(dispatched == before + 1, "a syscall with the selector blocking it raised no SIGSYS: the dispatch is off");
  WL_CHECK(dispatch_selector == SYSCALL_DISPATCH_FILTER_ALLOW, "the SIGSYS handler did not run");
}

// ---- memfd_secret ---------------------------------------------------------------------

static char *secret;

static void setup_secret(int keep_fd) {
  int fd = (int)syscall(SYS_memfd_secret_, 0);
  WL_MUST(fd >= 0 && ftruncate(fd, PAGE) == 0);
  secret = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  WL_MUST(secret != MAP_FAILED);
  strcpy(secret, "not for cryo");
  if (keep_fd)
    object_fd = fd;
  else
    close(fd);
  snprintf(ready_extra, sizeof ready_extra, "secret=%lx", (unsigned long)secret);
}

static void verify_secret(void) { WL_CHECK(!strcmp(secret, "not for cryo"), "the secret memory changed"); }

// ---- fanotify ------------------------------------------------------------------------

static char marked[4096], ignored[4096], on_mount[4096];

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  WL_MUST(fd >= 0 && write(fd, "x", 1) == 1);
  close(fd);
}

static void setup_fanotify(int queued) {
  snprintf(marked, sizeof marked, "%s/marked", dir);
  snprintf(ignored, sizeof ignored, "%s/ignored", dir);
  snprintf(on_mount, sizeof on_mount, "%s/other", dir);
  for (const char *p = marked; p; p = p == marked ? ignored : p == ignored ? on_mount : NULL) {
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    WL_MUST(fd >= 0);
    close(fd);
  }
  int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDWR | O_LARGEFILE | O_CLOEXEC);
  WL_MUST(fan >= 0);
  WL_MUST(fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, marked) == 0);
  // The whole mount for FAN_MODIFY, except the ignored file.
  WL_MUST(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_MODIFY, AT_FDCWD, dir) == 0);
  WL_MUST(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_MODIFY,
                        AT_FDCWD, ignored) == 0);
  if (queued) touch(marked);
  object_fd = fan;
}

// Reads every event queued; returns how many named path (by their fd) with
// all of mask, and how many named `not_path`.
static int read_events(int fan, const char *path, uint64_t mask, const char *not_path, int *bad) {
  char buf[65536];
  int found = 0;
  for (;;) {
    ssize_t n = read(fan, buf, sizeof buf);
    if (n <= 0) break;
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->fd < 0) continue;
      char link[64], target[4096] = {0};
      snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
      ssize_t len = readlink(link, target, sizeof target - 1);
      if (len > 0 && !strcmp(target, path) && (m->mask & mask) == mask && m->pid == getpid()) found++;
      if (len > 0 && !strcmp(target, not_path)) (*bad)++;
      int fl = fcntl(m->fd, F_GETFL);
      WL_CHECK((fl & O_ACCMODE) == O_RDWR, "an event's fd is not O_RDWR (event_f_flags lost): %#x", fl);
      close(m->fd);
    }
  }
  return found;
}

static void verify_fanotify(void) {
  int fl = fcntl(object_fd, F_GETFL);
  WL_CHECK(fl >= 0 && (fl & O_NONBLOCK), "fanotify fd is no longer nonblocking");
  int bad = 0;
  WL_CHECK(read_events(object_fd, marked, 0, ignored, &bad) == 0, "events queued before any change");
  touch(marked);
  WL_CHECK(read_events(object_fd, marked, FAN_MODIFY | FAN_CLOSE_WRITE, ignored, &bad) == 1,
           "no FAN_MODIFY|FAN_CLOSE_WRITE event for the marked file");
  touch(on_mount);
  WL_CHECK(read_events(object_fd, on_mount, FAN_MODIFY, ignored, &bad) == 1,
           "no FAN_MODIFY event for a file of the marked mount");
  touch(ignored);
  touch(ignored);
  WL_CHECK(read_events(object_fd, ignored, FAN_MODIFY, ignored, &bad) == 0 && bad == 0,
           "events for the file whose FAN_MODIFY is ignored (%d)", bad);
}

// ---- BPF maps ------------------------------------------------------------------------

static long bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

static int map_create(int type, int key, int value, int max, int flags, const char *name) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = type;
  a.key_size = key;
  a.value_size = value;
  a.max_entries = max;
  a.map_flags = flags;
  strncpy(a.map_name, name, sizeof a.map_name - 1);
  return (int)bpf(BPF_MAP_CREATE, &a);
}

static long map_update(int fd, const void *key, const void *value, uint64_t flags) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = fd;
  a.key = (uintptr_t)key;
  a.value = (uintptr_t)value;
  a.flags = flags;
  return bpf(BPF_MAP_UPDATE_ELEM, &a);
}

static long map_lookup(int fd, const void *key, void *value) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = fd;
  a.key = (uintptr_t)key;
  a.value = (uintptr_t)value;
  return bpf(BPF_MAP_LOOKUP_ELEM, &a);
}

static int ncpus;
static int bpf_fds[5];
enum { MAP_ARRAY, MAP_HASH, MAP_PERCPU, MAP_LRU, MAP_FROZEN };

static uint64_t value_of(uint64_t key, int cpu, int which) { return wl_pattern(key * 131 + (uint64_t)cpu, which); }

static void setup_bpf_map(void) {
  ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
  bpf_fds[MAP_ARRAY] = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 64, 0, "cryo_array");
  bpf_fds[MAP_HASH] = map_create(BPF_MAP_TYPE_HASH, 8, 16, 128, BPF_F_NO_PREALLOC, "cryo_hash");
  bpf_fds[MAP_PERCPU] = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 8, 0, "cryo_percpu");
  bpf_fds[MAP_LRU] = map_create(BPF_MAP_TYPE_LRU_HASH, 4, 8, 32, 0, "cryo_lru");
  bpf_fds[MAP_FROZEN] = map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 4, BPF_F_RDONLY_PROG, "cryo_frozen");
  for (int i = 0; i < 5; i++) WL_MUST(bpf_fds[i] >= 0);
  for (uint32_t k = 0; k < 64; k += 3) {
    uint64_t v = value_of(k, 0, MAP_ARRAY);
    WL_MUST(map_update(bpf_fds[MAP_ARRAY], &k, &v, BPF_ANY) == 0);
  }
  for (uint64_t k = 1000; k < 1100; k += 7) {
    uint64_t v[2] = {value_of(k, 0, MAP_HASH), value_of(k, 1, MAP_HASH)};
    WL_MUST(map_update(bpf_fds[MAP_HASH], &k, v, BPF_NOEXIST) == 0);
  }
  uint64_t per[1024];
  for (uint32_t k = 0; k < 8; k++) {
    for (int c = 0; c < ncpus; c++) per[c] = value_of(k, c, MAP_PERCPU);
    WL_MUST(map_update(bpf_fds[MAP_PERCPU], &k, per, BPF_ANY) == 0);
  }
  for (uint32_t k = 5; k < 25; k++) {
    uint64_t v = value_of(k, 0, MAP_LRU);
    WL_MUST(map_update(bpf_fds[MAP_LRU], &k, &v, BPF_ANY) == 0);
  }
  for (uint32_t k = 0; k < 4; k++) {
    uint32_t v = 0xf00d0000 + k;
    WL_MUST(map_update(bpf_fds[MAP_FROZEN], &k, &v, BPF_ANY) == 0);
  }
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = bpf_fds[MAP_FROZEN];
  WL_MUST(bpf(BPF_MAP_FREEZE, &a) == 0);
  object_fd = bpf_fds[MAP_HASH];
}

static void check_info(int which, int type, int key, int value, int max, int flags, const char *name) {
  struct bpf_map_info info;
  memset(&info, 0, sizeof info);
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.info.bpf_fd = bpf_fds[which];
  a.info.info_len = sizeof info;
  a.info.info = (uintptr_t)&info;
  if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0) {
    wl_fail("map %s: BPF_OBJ_GET_INFO_BY_FD: %s", name, strerror(errno));
    return;
  }
  WL_CHECK((int)info.type == type && (int)info.key_size == key && (int)info.value_size == value &&
               (int)info.max_entries == max && (int)info.map_flags == flags && !strcmp(info.name, name),
           "map %s is now type %u key %u value %u max %u flags %#x name %s", name, info.type, info.key_size,
           info.value_size, info.max_entries, info.map_flags, info.name);
}

static void verify_bpf_map(void) {
  check_info(MAP_ARRAY, BPF_MAP_TYPE_ARRAY, 4, 8, 64, 0, "cryo_array");
  check_info(MAP_HASH, BPF_MAP_TYPE_HASH, 8, 16, 128, BPF_F_NO_PREALLOC, "cryo_hash");
  check_info(MAP_PERCPU, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 8, 0, "cryo_percpu");
  check_info(MAP_LRU, BPF_MAP_TYPE_LRU_HASH, 4, 8, 32, 0, "cryo_lru");
  check_info(MAP_FROZEN, BPF_MAP_TYPE_ARRAY, 4, 4, 4, BPF_F_RDONLY_PROG, "cryo_frozen");
  for (uint32_t k = 0; k < 64; k++) {
    uint64_t v = 1, want = k % 3 == 0 ? value_of(k, 0, MAP_ARRAY) : 0;
    WL_CHECK(map_lookup(bpf_fds[MAP_ARRAY], &k, &v) == 0 && v == want, "array[%u] = %#lx, want %#lx", k,
             (unsigned long)v, (unsigned long)want);
  }
  for (uint64_t k = 990; k < 1110; k++) {
    uint64_t v[2] = {0, 0};
    long r = map_lookup(bpf_fds[MAP_HASH], &k, v);
    if (k >= 1000 && k < 1100 && (k - 1000) % 7 == 0)
      WL_CHECK(r == 0 && v[0] == value_of(k, 0, MAP_HASH) && v[1] == value_of(k, 1, MAP_HASH), "hash[%lu] lost",
               (unsigned long)k);
    else
      WL_CHECK(r < 0 && errno == ENOENT, "hash[%lu] exists", (unsigned long)k);
  }
  uint64_t per[1024];
  for (uint32_t k = 0; k < 8; k++) {
    WL_CHECK(map_lookup(bpf_fds[MAP_PERCPU], &k, per) == 0, "percpu[%u]: %s", k, strerror(errno));
    for (int c = 0; c < ncpus; c++)
      WL_CHECK(per[c] == value_of(k, c, MAP_PERCPU), "percpu[%u] on cpu %d = %#lx", k, c, (unsigned long)per[c]);
  }
  for (uint32_t k = 0; k < 30; k++) {
    uint64_t v = 0;
    long r = map_lookup(bpf_fds[MAP_LRU], &k, &v);
    if (k >= 5 && k < 25)
      WL_CHECK(r == 0 && v == value_of(k, 0, MAP_LRU), "lru[%u] lost", k);
    else
      WL_CHECK(r < 0, "lru[%u] exists", k);
  }
  for (uint32_t k = 0; k < 4; k++) {
    uint32_t v = 0;
    WL_CHECK(map_lookup(bpf_fds[MAP_FROZEN], &k, &v) == 0 && v == 0xf00d0000 + k, "frozen[%u] = %#x", k, v);
  }
  uint32_t k0 = 0, v0 = 1;
  WL_CHECK(map_update(bpf_fds[MAP_FROZEN], &k0, &v0, BPF_ANY) < 0 && errno == EPERM,
           "the frozen map takes updates from user space");
  // The others still work.
  uint64_t k = 5000, v[2] = {7, 8};
  WL_CHECK(map_update(bpf_fds[MAP_HASH], &k, v, BPF_NOEXIST) == 0, "hash map update: %s", strerror(errno));
}

static void setup_bpf_prog(void) {
  struct bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT},
  };
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  a.insns = (uintptr_t)insns;
  a.insn_cnt = 2;
  a.license = (uintptr_t) "GPL";
  strncpy(a.prog_name, "cryo_prog", sizeof a.prog_name - 1);
  object_fd = (int)bpf(BPF_PROG_LOAD, &a);
  WL_MUST(object_fd >= 0);
}

// ---- hugetlb memfd, private mappings of shared objects ------------------------------

#define HUGE (2UL << 20)
static int huge_fd;
static char *huge_map;

#define HUGE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

// The KernelPageSize of the mapping at addr, in kB (-1: not found).
static long kernel_page_kb(const void *addr) {
  static char smaps[1 << 18];
  ssize_t n = wl_read_file("/proc/self/smaps", smaps, sizeof smaps - 1);
  if (n <= 0) return -1;
  smaps[n] = 0;
  char start[32];
  snprintf(start, sizeof start, "\n%lx-", (unsigned long)addr);
  char *at = strstr(smaps, start);
  if (!at && !strncmp(smaps, start + 1, strlen(start + 1))) at = smaps;
  char *ps = at ? strstr(at, "KernelPageSize:") : NULL;
  return ps ? strtol(ps + 15, NULL, 10) : -1;
}

// The path /proc/self/maps shows for the mapping at addr ("" if none).
static const char *map_name(const void *addr) {
  static char maps[1 << 16], name[256];
  name[0] = 0;
  ssize_t n = wl_read_file("/proc/self/maps", maps, sizeof maps - 1);
  if (n <= 0) return name;
  maps[n] = 0;
  char start[32];
  snprintf(start, sizeof start, "%lx-", (unsigned long)addr);
  for (char *line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    if (strncmp(line, start, strlen(start))) continue;
    char *slash = strchr(line, '/');
    char *end = strchr(line, '\n');
    if (slash && (!end || slash < end)) snprintf(name, sizeof name, "%.*s", (int)((end ? end : slash + strlen(slash)) - slash), slash);
    break;
  }
  return name;
}

static void setup_hugetlb_memfd(void) {
  huge_fd = memfd_create("cryo-huge", MFD_HUGETLB | MFD_CLOEXEC | MFD_ALLOW_SEALING);
  WL_MUST(huge_fd >= 0);
  WL_MUST(ftruncate(huge_fd, 2 * HUGE) == 0);
  WL_MUST(fcntl(huge_fd, F_ADD_SEALS, HUGE_SEALS) == 0);
  huge_map = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, huge_fd, 0);
  WL_MUST(huge_map != MAP_FAILED);
  wl_fill(huge_map, HUGE, 0x68756765);  // the second huge page stays untouched
  object_fd = huge_fd;
  snprintf(ready_extra, sizeof ready_extra, "map=%p", (void *)huge_map);
}

static void verify_hugetlb_memfd(void) {
  struct statfs fs;
  WL_CHECK(fstatfs(huge_fd, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC_, "the memfd is no longer on hugetlbfs");
  struct stat st;
  WL_CHECK(fstat(huge_fd, &st) == 0 && st.st_size == (off_t)(2 * HUGE), "the memfd's size changed");
  char link[64], target[256] = {0};
  snprintf(link, sizeof link, "/proc/self/fd/%d", huge_fd);
  WL_CHECK(readlink(link, target, sizeof target - 1) > 0 && !strcmp(target, "/memfd:cryo-huge (deleted)"),
           "the memfd is now %s", target);
  long bad = wl_check_fill(huge_map, HUGE, 0x68756765);
  WL_CHECK(bad < 0, "the huge page mapping lost its data at %ld", bad);
  // The mapping and the fd still share the file.
  uint64_t word = 0;
  WL_CHECK(pread(huge_fd, &word, 8, 64) == 8 && word == *(uint64_t *)(huge_map + 64), "fd and mapping differ");
  strcpy(huge_map + HUGE + 100, "after restore");
  char back[16] = {0};
  WL_CHECK(pread(huge_fd, back, 13, (off_t)HUGE + 100) == 13 && !strcmp(back, "after restore"),
           "a write to the second huge page did not reach the memfd");
  WL_CHECK(kernel_page_kb(huge_map) == 2048, "the mapping is no longer of 2 MiB pages");
  int seals = fcntl(huge_fd, F_GET_SEALS);
  WL_CHECK(seals == HUGE_SEALS, "the memfd's seals are %#x, want %#x", seals, HUGE_SEALS);
}

// Anonymous huge pages (MAP_HUGETLB), private and shared: the first huge page
// of each written, the second never touched.
static char *huge_private, *huge_shared;

static void setup_hugetlb_anon(void) {
  huge_private = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  huge_shared = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  WL_MUST(huge_private != MAP_FAILED && huge_shared != MAP_FAILED);
  wl_fill(huge_private, HUGE, 0x70726976);
  wl_fill(huge_shared, HUGE, 0x73686172);
  snprintf(ready_extra, sizeof ready_extra, "private=%p shared=%p", (void *)huge_private, (void *)huge_shared);
}

static void verify_hugetlb_anon(void) {
  char *maps[2] = {huge_private, huge_shared};
  uint64_t seeds[2] = {0x70726976, 0x73686172};
  for (int i = 0; i < 2; i++) {
    const char *what = i ? "shared" : "private";
    WL_CHECK(kernel_page_kb(maps[i]) == 2048, "the %s mapping is not of 2 MiB pages", what);
    WL_CHECK(!strcmp(map_name(maps[i]), "/anon_hugepage (deleted)"), "the %s mapping is now '%s'", what,
             map_name(maps[i]));
    long bad = wl_check_fill(maps[i], HUGE, seeds[i]);
    WL_CHECK(bad < 0, "the %s huge pages lost their data at %ld", what, bad);
    for (size_t at = HUGE; at < 2 * HUGE; at += PAGE)
      if (maps[i][at]) {
        wl_fail("the %s mapping's untouched huge page holds data at %zu", what, at);
        break;
      }
    strcpy(maps[i] + HUGE + 7, "still writable");
  }
}

// System V segments of huge pages (SHM_HUGETLB): one attached, written, and
// removed (IPC_RMID: gone with its last attach); in an IPC namespace of the
// tree's own (DIR "ns"), a second one made by key, written and detached.
#define HUGE_SHM_KEY 0x0c71b001
static char *huge_shm;
static int huge_shm_id, huge_loose_id = -1;

static void setup_sysv_huge(void) {
  huge_shm_id = shmget(IPC_PRIVATE, 2 * HUGE, IPC_CREAT | SHM_HUGETLB | 0600);
  WL_MUST(huge_shm_id >= 0);
  huge_shm = shmat(huge_shm_id, NULL, 0);
  WL_MUST(huge_shm != (void *)-1);
  WL_MUST(shmctl(huge_shm_id, IPC_RMID, NULL) == 0);
  wl_fill(huge_shm, HUGE + 3 * PAGE, 0x73797376);
  if (!strcmp(dir, "ns")) {
    huge_loose_id = shmget(HUGE_SHM_KEY, HUGE, IPC_CREAT | IPC_EXCL | SHM_HUGETLB | 0640);
    WL_MUST(huge_loose_id >= 0);
    char *loose = shmat(huge_loose_id, NULL, 0);
    WL_MUST(loose != (void *)-1);
    for (size_t i = 0; i < 5 * PAGE; i++) loose[i] = (char)(i * 7 + 3);  // attached elsewhere later
    WL_MUST(shmdt(loose) == 0);
  }
  snprintf(ready_extra, sizeof ready_extra, "shm=%d loose=%d", huge_shm_id, huge_loose_id);
}

static void verify_sysv_huge(void) {
  WL_CHECK(kernel_page_kb(huge_shm) == 2048, "the segment's mapping is not of 2 MiB pages (%ld kB)",
           kernel_page_kb(huge_shm));
  long bad = wl_check_fill(huge_shm, HUGE + 3 * PAGE, 0x73797376);
  WL_CHECK(bad < 0, "the segment lost its data at %ld", bad);
  struct shmid_ds ds;
  WL_CHECK(shmctl(huge_shm_id, IPC_STAT, &ds) == 0 && ds.shm_segsz == 2 * HUGE && ds.shm_nattch == 1,
           "segment %d: %s, size %zu", huge_shm_id, strerror(errno), (size_t)ds.shm_segsz);
  strcpy(huge_shm + 2 * HUGE - 64, "still writable");
  if (huge_loose_id >= 0) {
    WL_CHECK(shmget(HUGE_SHM_KEY, 0, 0) == huge_loose_id, "key %#x finds %d", HUGE_SHM_KEY, shmget(HUGE_SHM_KEY, 0, 0));
    char *loose = shmat(huge_loose_id, NULL, SHM_RDONLY);
    if (loose == (void *)-1) {
      wl_fail("attach the loose segment: %s", strerror(errno));
    } else {
      WL_CHECK(kernel_page_kb(loose) == 2048, "the loose segment is not of 2 MiB pages");
      for (size_t i = 0; i < HUGE; i++)
        if (loose[i] != (i < 5 * PAGE ? (char)(i * 7 + 3) : 0)) {
          wl_fail("the loose segment lost its data at %zu", i);
          break;
        }
      shmdt(loose);
    }
    shmctl(huge_loose_id, IPC_RMID, NULL);
  }
}

static int shm_fds[2];
static char *shm_maps[2];

static void setup_private_shm(void) {
  char path[4096];
  snprintf(path, sizeof path, "/dev/shm/cryo-kobjects-%d", (int)getpid());
  shm_fds[0] = memfd_create("cryo-private", MFD_CLOEXEC);
  shm_fds[1] = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  for (int i = 0; i < 2; i++) {
    WL_MUST(shm_fds[i] >= 0);
    WL_MUST(ftruncate(shm_fds[i], 8 * PAGE) == 0);
    char *shared = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fds[i], 0);
    WL_MUST(shared != MAP_FAILED);
    for (int p = 0; p < 8; p++) snprintf(shared + p * PAGE, 64, "file %d page %d", i, p);
    munmap(shared, 8 * PAGE);
    shm_maps[i] = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, shm_fds[i], 0);
    WL_MUST(shm_maps[i] != MAP_FAILED);
    for (int p = 0; p < 8; p += 2) snprintf(shm_maps[i] + p * PAGE, 64, "private %d page %d", i, p);
    for (int p = 1; p < 8; p += 2) WL_MUST(shm_maps[i][p * PAGE] == 'f');  // read: still the file's page
  }
  object_fd = shm_fds[0];
  snprintf(ready_extra, sizeof ready_extra, "shm_path=%s", path);
}

static void verify_private_shm(void) {
  for (int i = 0; i < 2; i++) {
    char want[64];
    for (int p = 0; p < 8; p++) {
      if (p % 2 == 0)
        snprintf(want, sizeof want, "private %d page %d", i, p);
      else
        snprintf(want, sizeof want, "file %d page %d", i, p);
      WL_CHECK(!strcmp(shm_maps[i] + p * PAGE, want), "object %d page %d holds '%.40s', want '%s'", i, p,
               shm_maps[i] + p * PAGE, want);
    }
    // Pages never written privately still show what the file holds now ...
    WL_CHECK(pwrite(shm_fds[i], "changed", 8, 3 * PAGE) == 8, "pwrite");
    WL_CHECK(!strcmp(shm_maps[i] + 3 * PAGE, "changed"), "object %d: page 3 no longer follows the file", i);
    // ... and privately written ones do not.
    WL_CHECK(pwrite(shm_fds[i], "changed", 8, 2 * PAGE) == 8, "pwrite");
    WL_CHECK(strcmp(shm_maps[i] + 2 * PAGE, "changed") != 0, "object %d: a private page follows the file", i);
  }
}

// A MAP_SHARED|MAP_ANONYMOUS object `shared` (8 pages, also mapped by a child),
// seen through MAP_PRIVATE views: `whole` (all of it), `tail` (from page 4);
// and a second object of 4 pages that only its view `alone` still maps.
static char *pa_shared, *pa_whole, *pa_tail, *pa_alone;
static pid_t pa_child = -1;
static int pa_go[2], pa_done[2];

static char *private_view(char *object, size_t pages, off_t offset, size_t view_pages) {
  char path[128];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)object,
           (unsigned long)object + pages * PAGE);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  WL_MUST(fd >= 0);
  char *view = mmap(NULL, view_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, offset);
  WL_MUST(view != MAP_FAILED);
  close(fd);
  return view;
}

static void setup_private_anon(void) {
  pa_shared = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  WL_MUST(pa_shared != MAP_FAILED);
  for (int p = 0; p < 8; p++) snprintf(pa_shared + p * PAGE, 64, "object page %d", p);
  pa_whole = private_view(pa_shared, 8, 0, 8);
  pa_tail = private_view(pa_shared, 8, 4 * PAGE, 4);
  // Even pages written in the view (page 6 with zeros, over the object's text);
  // page 1 read (mapped, still the object's), the other odd ones never touched.
  for (int p = 0; p < 8; p += 2) snprintf(pa_whole + p * PAGE, 64, "whole page %d", p);
  memset(pa_whole + 6 * PAGE, 0, PAGE);
  WL_MUST(pa_whole[PAGE] == 'o');
  snprintf(pa_tail + PAGE, 64, "tail page 1");  // the object's page 5
  char *second = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  WL_MUST(second != MAP_FAILED);
  for (int p = 0; p < 4; p++) snprintf(second + p * PAGE, 64, "second page %d", p);
  pa_alone = private_view(second, 4, 0, 4);
  snprintf(pa_alone, 64, "alone page 0");
  munmap(second, 4 * PAGE);
  // The child writes to the object when told (after the restore).
  WL_MUST(pipe2(pa_go, O_CLOEXEC) == 0 && pipe2(pa_done, O_CLOEXEC) == 0);
  pa_child = fork();
  WL_MUST(pa_child >= 0);
  if (pa_child == 0) {
    char c;
    if (read(pa_go[0], &c, 1) != 1) _exit(3);
    snprintf(pa_shared + 3 * PAGE, 64, "child wrote 3");
    snprintf(pa_shared + 4 * PAGE, 64, "child wrote 4");
    _exit(write(pa_done[1], "d", 1) == 1 ? 0 : 4);
  }
}

static void expect_page(const char *what, const char *page, const char *want) {
  WL_CHECK(!strcmp(page, want), "%s holds '%.40s', want '%s'", what, page, want);
}

static void verify_private_anon(void) {
  char want[64], what[64];
  for (int p = 0; p < 8; p++) {
    snprintf(what, sizeof what, "view page %d", p);
    if (p == 6) {
      int zero = 1;
      for (size_t i = 0; i < PAGE; i++) zero &= pa_whole[6 * PAGE + i] == 0;
      WL_CHECK(zero, "view page 6 is no longer the zeros written in it: '%.40s'", pa_whole + 6 * PAGE);
      continue;
    }
    snprintf(want, sizeof want, p % 2 ? "object page %d" : "whole page %d", p);
    expect_page(what, pa_whole + p * PAGE, want);
  }
  expect_page("tail page 0", pa_tail, "object page 4");
  expect_page("tail page 1", pa_tail + PAGE, "tail page 1");
  expect_page("alone page 0", pa_alone, "alone page 0");
  expect_page("alone page 1", pa_alone + PAGE, "second page 1");
  // The object is still shared, with the child too: what is written to it
  // shows in the views where they wrote nothing of their own.
  snprintf(pa_shared + PAGE, 64, "later page 1");
  snprintf(pa_shared + 2 * PAGE, 64, "later page 2");
  snprintf(pa_shared + 5 * PAGE, 64, "later page 5");
  expect_page("view page 1 after a write to the object", pa_whole + PAGE, "later page 1");
  expect_page("view page 2 (its own) after a write to the object", pa_whole + 2 * PAGE, "whole page 2");
  expect_page("tail page 1 (its own) after a write to the object", pa_tail + PAGE, "tail page 1");
  char c;
  WL_CHECK(write(pa_go[1], "g", 1) == 1 && read(pa_done[0], &c, 1) == 1, "the child did not write");
  int status = 0;
  WL_CHECK(waitpid(pa_child, &status, 0) == pa_child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child failed (status %#x)", status);
  expect_page("view page 3 after the child's write", pa_whole + 3 * PAGE, "child wrote 3");
  expect_page("view page 4 (its own) after the child's write", pa_whole + 4 * PAGE, "whole page 4");
  expect_page("tail page 0 after the child's write", pa_tail, "child wrote 4");
  // The object only the view maps, written through the view's map_files.
  char path[128];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)pa_alone,
           (unsigned long)pa_alone + 4 * PAGE);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  WL_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  if (fd < 0) return;
  WL_CHECK(pwrite(fd, "later", 6, 0) == 6 && pwrite(fd, "later", 6, 2 * PAGE) == 6, "pwrite: %s", strerror(errno));
  close(fd);
  expect_page("alone page 0 (its own) after a write to the object", pa_alone, "alone page 0");
  expect_page("alone page 2 after a write to the object", pa_alone + 2 * PAGE, "later");
  // A write in a view stays there.
  snprintf(pa_whole + 7 * PAGE, 64, "whole page 7");
  expect_page("the object's page 7 after a write in the view", pa_shared + 7 * PAGE, "object page 7");
}

// A MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB object of 2 huge pages and its MAP_PRIVATE
// view: huge page 0 written in the view (copied whole), huge page 1 only read.
static char *ph_shared, *ph_view;

static void setup_private_huge(void) {
  ph_shared = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  WL_MUST(ph_shared != MAP_FAILED);
  for (int p = 0; p < 2; p++) snprintf(ph_shared + p * HUGE + PAGE, 64, "object huge page %d", p);
  ph_view = private_view(ph_shared, 2 * HUGE / PAGE, 0, 2 * HUGE / PAGE);
  snprintf(ph_view + 2 * PAGE, 64, "view huge page 0");
  WL_MUST(ph_view[HUGE + PAGE] == 'o');
}

static void verify_private_huge(void) {
  struct statfs fs;
  char path[128];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)ph_view, (unsigned long)ph_view + 2 * HUGE);
  WL_CHECK(statfs(path, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC_ && fs.f_bsize == (long)HUGE,
           "the view is no longer of huge pages (%s)", strerror(errno));
  expect_page("view huge page 0, written in it", ph_view + 2 * PAGE, "view huge page 0");
  expect_page("view huge page 0, copied from the object", ph_view + PAGE, "object huge page 0");
  expect_page("view huge page 1", ph_view + HUGE + PAGE, "object huge page 1");
  snprintf(ph_shared + HUGE + PAGE, 64, "later huge page 1");
  snprintf(ph_shared + PAGE, 64, "later huge page 0");
  expect_page("view huge page 1 after a write to the object", ph_view + HUGE + PAGE, "later huge page 1");
  expect_page("view huge page 0 (its own) after a write to the object", ph_view + PAGE, "object huge page 0");
  snprintf(ph_view + HUGE + 3 * PAGE, 64, "view wrote");
  WL_CHECK(ph_shared[HUGE + 3 * PAGE] == 0, "a write in the view reached the object");
}

// ---- AIO -----------------------------------------------------------------------------

static aio_context_t aio_ctx;
static int aio_file, aio_pipe[2];
static char aio_bufs[8][64];
#define AIO_DONE 3

static long io_submit1(struct iocb *cb) {
  struct iocb *list[1] = {cb};
  return syscall(SYS_io_submit, aio_ctx, 1, list);
}

static void aio_read_at(int index, off_t offset) {
  struct iocb cb;
  memset(&cb, 0, sizeof cb);
  cb.aio_lio_opcode = IOCB_CMD_PREAD;
  cb.aio_fildes = (uint32_t)aio_file;
  cb.aio_buf = (uintptr_t)aio_bufs[index];
  cb.aio_nbytes = 16;
  cb.aio_offset = offset;
  cb.aio_data = 0xa10000 + (uint64_t)index;
  WL_MUST(io_submit1(&cb) == 1);
}

// A second context, small, whose events not reaped wrap around the end of its
// ring (reaped by moving the ring's head from user space, as libaio may), and a
// child forked after both: contexts are per mm, it has none of them.
static aio_context_t aio_ctx2;
static pid_t aio_child = -1;
#define AIO2_WRAP 6

static void submit_to(aio_context_t ctx, uint64_t data, off_t offset, char *buf) {
  struct iocb cb;
  memset(&cb, 0, sizeof cb);
  cb.aio_lio_opcode = IOCB_CMD_PREAD;
  cb.aio_fildes = (uint32_t)aio_file;
  cb.aio_buf = (uintptr_t)buf;
  cb.aio_nbytes = 16;
  cb.aio_offset = offset;
  cb.aio_data = data;
  struct iocb *list[1] = {&cb};
  WL_MUST(syscall(SYS_io_submit, ctx, 1, list) == 1);
}

struct wl_aio_ring {
  unsigned id, nr, head, tail, magic, compat, incompat, header_length;
};

static char aio2_bufs[AIO2_WRAP][16];

static void setup_aio_second(void) {
  WL_MUST(syscall(SYS_io_setup, 1, &aio_ctx2) == 0);
  struct wl_aio_ring *ring = (struct wl_aio_ring *)aio_ctx2;
  unsigned nr = ring->nr;
  // Completions reaped until the next ones wrap: head near the end, tail past 0.
  char scratch[16];
  for (unsigned i = 0; i < nr - AIO2_WRAP / 2; i++) {
    submit_to(aio_ctx2, 1, 0, scratch);
    ring->head = ring->tail;  // reaped from user space
  }
  for (int i = 0; i < AIO2_WRAP; i++) submit_to(aio_ctx2, 0xb20000 + (uint64_t)i, (20 + i) * 16, aio2_bufs[i]);
  WL_MUST(ring->tail < ring->head);
  int ready[2];
  WL_MUST(pipe2(ready, O_CLOEXEC) == 0);
  aio_child = fork();
  WL_MUST(aio_child >= 0);
  if (aio_child == 0) {
    // Contexts are not inherited (fork copies the rings' mappings, not the
    // contexts): neither id works here, before or after a restore.
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    WL_MUST(write(ready[1], "r", 1) == 1);
    int sig;
    sigwait(&usr2, &sig);
    struct io_event ev;
    struct timespec none = {0, 0};
    int bad = syscall(SYS_io_getevents, aio_ctx, 1, 1, &ev, &none) != -1 || errno != EINVAL;
    bad |= syscall(SYS_io_getevents, aio_ctx2, 1, 1, &ev, &none) != -1 || errno != EINVAL;
    _exit(bad ? 1 : 0);
  }
  char c;
  WL_MUST(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  close(ready[1]);
}

static void verify_aio_second(void) {
  struct wl_aio_ring *ring = (struct wl_aio_ring *)aio_ctx2;
  WL_CHECK(ring->tail < ring->head, "the second ring no longer wraps: head %u tail %u", ring->head, ring->tail);
  struct io_event ev[AIO2_WRAP + 1];
  struct timespec none = {0, 0};
  long got = syscall(SYS_io_getevents, aio_ctx2, 1, AIO2_WRAP + 1, ev, &none);
  WL_CHECK(got == AIO2_WRAP, "the second context has %ld completions, want %d", got, AIO2_WRAP);
  for (long i = 0; i < got && i < AIO2_WRAP; i++) {
    char want[17];
    snprintf(want, sizeof want, "aio line %05ld\n", 20 + i);
    WL_CHECK(ev[i].data == 0xb20000 + (uint64_t)i && ev[i].res == 16 && !memcmp(aio2_bufs[i], want, 16),
             "second context, completion %ld: data %#llx '%.16s'", i, (unsigned long long)ev[i].data, aio2_bufs[i]);
  }
  // It still takes requests: as many as its size allows, each completed once.
  char buf[16];
  for (unsigned i = 0; i < ring->nr / 2; i++) {
    submit_to(aio_ctx2, 0xc30000 + i, 5 * 16, buf);
    got = syscall(SYS_io_getevents, aio_ctx2, 1, 2, ev, NULL);
    if (got != 1 || ev[0].data != 0xc30000 + i) {
      wl_fail("second context, new request %u: %ld events, data %#llx", i, got, (unsigned long long)ev[0].data);
      break;
    }
  }
  WL_CHECK(syscall(SYS_io_destroy, aio_ctx2) == 0, "io_destroy of the second: %s", strerror(errno));
  int status = 0;
  WL_CHECK(kill(aio_child, SIGUSR2) == 0 && waitpid(aio_child, &status, 0) == aio_child, "the child is gone");
  WL_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child saw an AIO context (status %#x)", status);
}

// aio_watch: a thread compares both rings with what they held when set up.
#define AIO_CRYO_TAG 0x6372796f2d61696fULL
struct ring_view {
  aio_context_t ctx;
  struct wl_aio_ring header;
  struct io_event events[16];
};
static struct ring_view aio_views[2];
static volatile int aio_watch_stop;
static char aio_watch_seen[256];
static pthread_t aio_watcher;

static int ring_differs(struct ring_view *v, char *why, size_t size) {
  struct wl_aio_ring now = *(volatile struct wl_aio_ring *)v->ctx;
  if (now.head != v->header.head || now.tail != v->header.tail) {
    snprintf(why, size, "ring %#lx: head %u tail %u, was %u %u", (unsigned long)v->ctx, now.head, now.tail,
             v->header.head, v->header.tail);
    return 1;
  }
  struct io_event *events = (struct io_event *)(v->ctx + sizeof(struct wl_aio_ring));
  for (unsigned i = v->header.head, k = 0; i != v->header.tail && k < 16; i = (i + 1) % v->header.nr, k++) {
    struct io_event e = ((volatile struct io_event *)events)[i];
    if (memcmp(&e, &v->events[k], sizeof e)) {
      snprintf(why, size, "ring %#lx: completion %u now has data %#llx%s", (unsigned long)v->ctx, i,
               (unsigned long long)e.data, e.data == AIO_CRYO_TAG ? " (cryo's)" : "");
      return 1;
    }
  }
  return 0;
}

static void *watch_rings(void *arg) {
  (void)arg;
  while (!aio_watch_stop) {
    for (int r = 0; r < 2 && !aio_watch_seen[0]; r++) ring_differs(&aio_views[r], aio_watch_seen, sizeof aio_watch_seen);
    struct timespec nap = {0, 200 * 1000};
    nanosleep(&nap, NULL);
  }
  return NULL;
}

static void start_aio_watch(void) {
  aio_context_t ctxs[2] = {aio_ctx, aio_ctx2};
  for (int r = 0; r < 2; r++) {
    struct ring_view *v = &aio_views[r];
    v->ctx = ctxs[r];
    v->header = *(struct wl_aio_ring *)v->ctx;
    struct io_event *events = (struct io_event *)(v->ctx + sizeof(struct wl_aio_ring));
    for (unsigned i = v->header.head, k = 0; i != v->header.tail && k < 16; i = (i + 1) % v->header.nr, k++)
      v->events[k] = events[i];
  }
  // The watcher takes no signal: the trigger is the main thread's.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  WL_MUST(pthread_create(&aio_watcher, NULL, watch_rings, NULL) == 0);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void verify_aio_watch(void) {
  aio_watch_stop = 1;
  pthread_join(aio_watcher, NULL);
  WL_CHECK(!aio_watch_seen[0], "the watching thread saw a ring change: %s", aio_watch_seen);
}

static void setup_aio(int inflight) {
  WL_MUST(syscall(SYS_io_setup, 32, &aio_ctx) == 0);
  char path[4096];
  snprintf(path, sizeof path, "%s/aio-data", dir);
  aio_file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(aio_file >= 0);
  for (int i = 0; i < 64; i++) {
    char line[16];
    snprintf(line, sizeof line, "aio line %05d\n", i);
    WL_MUST(wl_write_all(aio_file, line, 16) == 0);
  }
  // Two reaped (the ring's head moves), then three left in the ring.
  struct io_event ev[8];
  for (int i = 0; i < 2; i++) aio_read_at(i, i * 16);
  WL_MUST(syscall(SYS_io_getevents, aio_ctx, 2, 2, ev, NULL) == 2);
  for (int i = 0; i < AIO_DONE; i++) aio_read_at(2 + i, (10 + i) * 16);
  if (inflight) {
    WL_MUST(pipe2(aio_pipe, O_CLOEXEC) == 0);
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_lio_opcode = IOCB_CMD_POLL;
    cb.aio_fildes = (uint32_t)aio_pipe[0];
    cb.aio_buf = POLLIN;
    WL_MUST(io_submit1(&cb) == 1);
  } else {
    setup_aio_second();
  }
  snprintf(ready_extra, sizeof ready_extra, "aio_ctx=%#lx aio_ctx2=%#lx", (unsigned long)aio_ctx,
           (unsigned long)aio_ctx2);
}

static void verify_aio(void) {
  struct io_event ev[8];
  struct timespec none = {0, 0};
  long got = syscall(SYS_io_getevents, aio_ctx, 1, 8, ev, &none);
  WL_CHECK(got == AIO_DONE, "io_getevents found %ld completions, want %d (%s)", got, AIO_DONE,
           got < 0 ? strerror(errno) : "");
  for (long i = 0; i < got && i < AIO_DONE; i++) {
    char want[17];
    snprintf(want, sizeof want, "aio line %05ld\n", 10 + i);
    WL_CHECK(ev[i].data == 0xa10002 + (uint64_t)i && ev[i].res == 16, "completion %ld: data %#llx res %lld", i,
             (unsigned long long)ev[i].data, (long long)ev[i].res);
    WL_CHECK(!memcmp(aio_bufs[2 + i], want, 16), "completion %ld read '%.16s'", i, aio_bufs[2 + i]);
  }
  // The context still takes requests, by its old id.
  aio_read_at(7, 40 * 16);
  got = syscall(SYS_io_getevents, aio_ctx, 1, 8, ev, NULL);
  WL_CHECK(got == 1 && ev[0].data == 0xa10007 && !memcmp(aio_bufs[7], "aio line 00040\n", 15),
           "a new request after restore: %ld", got);
  verify_aio_second();
  WL_CHECK(syscall(SYS_io_destroy, aio_ctx) == 0, "io_destroy: %s", strerror(errno));
}

// ---- main ------------------------------------------------------------------------------

int main(int argc, char **argv) {
  const char *usage = "READY REPORT KIND [DIR]";
  const char *ready = wl_arg(argc, argv, 1, usage);
  const char *report = wl_arg(argc, argv, 2, usage);
  kind = wl_arg(argc, argv, 3, usage);
  dir = argc > 4 ? argv[4] : "/tmp";
  wl_install_trigger();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sa.sa_flags = SA_NODEFER;
  WL_MUST(sigaction(SIGSEGV, &sa, NULL) == 0);

  if (!strcmp(kind, "membarrier")) setup_membarrier();
  else if (!strcmp(kind, "no_vdso")) setup_no_vdso();
  else if (!strcmp(kind, "guard")) setup_guard();
  else if (!strcmp(kind, "sealed")) setup_sealed();
  else if (!strcmp(kind, "dispatch")) setup_dispatch(0);
  else if (!strcmp(kind, "dispatch_blocked")) setup_dispatch(1);
  else if (!strcmp(kind, "secret_fd")) setup_secret(1);
  else if (!strcmp(kind, "secret_map")) setup_secret(0);
  else if (!strcmp(kind, "fanotify")) setup_fanotify(0);
  else if (!strcmp(kind, "fanotify_queued")) setup_fanotify(1);
  else if (!strcmp(kind, "bpf_map")) setup_bpf_map();
  else if (!strcmp(kind, "bpf_prog")) setup_bpf_prog();
  else if (!strcmp(kind, "hugetlb_memfd")) setup_hugetlb_memfd();
  else if (!strcmp(kind, "hugetlb_anon")) setup_hugetlb_anon();
  else if (!strcmp(kind, "sysv_huge")) setup_sysv_huge();
  else if (!strcmp(kind, "private_shm")) setup_private_shm();
  else if (!strcmp(kind, "private_anon")) setup_private_anon();
  else if (!strcmp(kind, "private_huge")) setup_private_huge();
  else if (!strcmp(kind, "aio")) setup_aio(0);
  else if (!strcmp(kind, "aio_inflight")) setup_aio(1);
  else if (!strcmp(kind, "aio_watch")) {
    setup_aio(0);
    start_aio_watch();
  } else {
    fprintf(stderr, "unknown kind %s\n", kind);
    return 2;
  }

  // No glibc call that could go through the vDSO from here on (no_vdso).
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, &old);
  wl_ready(ready, "pid=%d object_fd=%d %s", (int)getpid(), object_fd, ready_extra);
  while (!wl_triggered) sigsuspend(&old);

  if (!strcmp(kind, "membarrier")) verify_membarrier();
  else if (!strcmp(kind, "no_vdso")) verify_no_vdso();
  else if (!strcmp(kind, "guard")) verify_guard();
  else if (!strcmp(kind, "sealed")) verify_sealed();
  else if (!strcmp(kind, "dispatch") || !strcmp(kind, "dispatch_blocked")) verify_dispatch();
  else if (!strcmp(kind, "secret_fd") || !strcmp(kind, "secret_map")) verify_secret();
  else if (!strcmp(kind, "fanotify")) verify_fanotify();
  else if (!strcmp(kind, "bpf_map")) verify_bpf_map();
  else if (!strcmp(kind, "hugetlb_memfd")) verify_hugetlb_memfd();
  else if (!strcmp(kind, "hugetlb_anon")) verify_hugetlb_anon();
  else if (!strcmp(kind, "sysv_huge")) verify_sysv_huge();
  else if (!strcmp(kind, "private_shm")) verify_private_shm();
  else if (!strcmp(kind, "private_anon")) verify_private_anon();
  else if (!strcmp(kind, "private_huge")) verify_private_huge();
  else if (!strcmp(kind, "aio")) verify_aio();
  else if (!strcmp(kind, "aio_watch")) {
    verify_aio_watch();
    verify_aio();
  }
  // fanotify_queued, bpf_prog, aio_inflight: refused; they only show they run on.
  return wl_finish(report);
}
