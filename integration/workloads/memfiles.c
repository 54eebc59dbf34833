// memfiles: memory layouts and open files.
//
//   memfiles READY REPORT WORKDIR [--madv-guard]
//
// Memory: a data file mapped MAP_PRIVATE and partly modified (copy-on-write pages
// next to untouched file pages), a file mapped MAP_SHARED, a PROT_NONE reservation,
// a brk heap grown with sbrk and filled, a RW region with a PROT_NONE guard page in
// the middle, a read-only anonymous region with contents, and (with --madv-guard)
// a MADV_GUARD_INSTALL guard page.
// Files at fixed fd numbers: a regular file with an offset and a dup sharing it, an
// O_APPEND|O_CLOEXEC log, a directory, /dev/null, /dev/zero, both ends of a named FIFO
// with 300 unread bytes, a 128 KiB pipe with 70000 unread bytes, and a file whose
// description is shared with a child (the child moves the offset after restore).
// On SIGUSR1 it checks everything and writes REPORT.
#include "workload.h"

#include <dirent.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define DATA_PAGES 16
#define FILE_SEED 0x66696c65ULL
#define COW_SEED 0x636f77ULL
#define BRK_SEED 0x62726bULL
#define GUARD_SEED 0x67756172ULL
#define RO_SEED 0x726fULL
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

enum {
  FD_REG = 40,
  FD_REG_DUP = 41,
  FD_APPEND = 42,
  FD_DIR = 43,
  FD_NULL = 44,
  FD_ZERO = 45,
  FD_FIFO_R = 46,
  FD_FIFO_W = 47,
  FD_PIPE_R = 48,
  FD_PIPE_W = 49,
  FD_SHARED = 50,
  FD_DATA = 51,
};

static const char *workdir;

static void place(int fd, int target) {
  WL_MUST(fd >= 0);
  if (fd == target) return;
  WL_MUST(dup3(fd, target, 0) == target);
  close(fd);
}

static char path_buf[4096];
static const char *in_workdir(const char *name) {
  snprintf(path_buf, sizeof path_buf, "%s/%s", workdir, name);
  return path_buf;
}

// File contents depend on the file offset (the mapping address may differ).
static uint64_t file_word(size_t index) { return wl_pattern(index * 8, FILE_SEED); }
static unsigned char byte_at(size_t i, unsigned seed) { return (unsigned char)((i * 13 + seed) & 0xff); }

// ---- fault probing ---------------------------------------------------------------------

static sigjmp_buf fault_jump;
static volatile int faulting;

static void on_segv(int sig) {
  (void)sig;
  if (faulting) siglongjmp(fault_jump, 1);
  _exit(98);
}

// 1 if reading (or writing) addr faults.
static int faults(volatile char *addr, int write) {
  faulting = 1;
  if (sigsetjmp(fault_jump, 1)) {
    faulting = 0;
    return 1;
  }
  if (write)
    *addr = 1;
  else
    (void)*addr;
  faulting = 0;
  return 0;
}

// The perms /proc/self/maps shows for the mapping that contains addr, and its path.
static int maps_line(void *addr, char perms[5], char *path, size_t path_size) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[1024];
  int found = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char p[5];
    int off = 0;
    if (sscanf(line, "%lx-%lx %4s %*s %*s %*s%n", &lo, &hi, p, &off) < 3) continue;
    if ((uintptr_t)addr < lo || (uintptr_t)addr >= hi) continue;
    memcpy(perms, p, 5);
    char *name = line + off;
    while (*name == ' ') name++;
    name[strcspn(name, "\n")] = 0;
    snprintf(path, path_size, "%s", name);
    found = 0;
    break;
  }
  fclose(f);
  return found;
}

static void expect_maps(const char *what, void *addr, const char *want_perms, const char *want_path_suffix) {
  char perms[5] = "", path[1024] = "";
  if (maps_line(addr, perms, path, sizeof path) != 0) {
    wl_fail("%s: %p not mapped", what, addr);
    return;
  }
  WL_CHECK(strcmp(perms, want_perms) == 0, "%s: perms %s, want %s", what, perms, want_perms);
  if (want_path_suffix) {
    size_t n = strlen(path), m = strlen(want_path_suffix);
    WL_CHECK(n >= m && strcmp(path + n - m, want_path_suffix) == 0, "%s: maps names '%s', want '...%s'", what, path,
             want_path_suffix);
  }
}

// The set of open fds, as a bitmap of the first 256.
static void open_fds(unsigned char set[256]) {
  memset(set, 0, 256);
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != self && fd < 256) set[fd] = 1;
  }
  closedir(d);
}

// Grows the main thread's stack by about `kib` KiB below where it is now: the stack
// mapping must still grow down after restore.
static __attribute__((noinline)) long grow_stack(int kib) {
  volatile char chunk[16 * 1024];
  for (size_t i = 0; i < sizeof chunk; i += 512) chunk[i] = (char)i;
  long sum = chunk[512];
  if (kib > 16) sum += grow_stack(kib - 16);
  return sum;
}

static void *idle_thread(void *arg) {
  (void)arg;
  wl_block_trigger();
  for (;;) wl_sleep_ms(1000);
  return NULL;
}

int main(int argc, char **argv) {
  const char *usage = "READY REPORT WORKDIR [--madv-guard]";
  const char *ready_path = wl_arg(argc, argv, 1, usage);
  const char *report_path = wl_arg(argc, argv, 2, usage);
  workdir = wl_arg(argc, argv, 3, usage);
  int want_madv_guard = argc > 4 && !strcmp(argv[4], "--madv-guard");
  wl_install_trigger();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sa.sa_flags = SA_NODEFER;
  WL_MUST(sigaction(SIGSEGV, &sa, NULL) == 0);

  // ---- memory ----
  int data = open(in_workdir("data.bin"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(data >= 0);
  static uint64_t words[DATA_PAGES * PAGE / 8];
  for (size_t i = 0; i < DATA_PAGES * PAGE / 8; i++) words[i] = file_word(i);
  WL_MUST(wl_write_all(data, words, sizeof words) == 0);
  char *priv = mmap(NULL, DATA_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, data, 0);
  WL_MUST(priv != MAP_FAILED);
  const int cow_pages[] = {2, 3, 10};
  for (int i = 0; i < 3; i++) wl_fill(priv + cow_pages[i] * PAGE, PAGE, COW_SEED);
  WL_MUST(lseek(data, 5 * PAGE, SEEK_SET) == (off_t)(5 * PAGE));
  place(data, FD_DATA);

  int sh = open(in_workdir("shared.bin"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(sh >= 0 && ftruncate(sh, 4 * PAGE) == 0);
  char *shared_map = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sh, 0);
  WL_MUST(shared_map != MAP_FAILED);
  close(sh);
  strcpy(shared_map + PAGE, "written before the dump");

  char *none = mmap(NULL, 8 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(none != MAP_FAILED);

  char *guarded = mmap(NULL, 5 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(guarded != MAP_FAILED);
  wl_fill(guarded, 5 * PAGE, GUARD_SEED);
  WL_MUST(mprotect(guarded + 2 * PAGE, PAGE, PROT_NONE) == 0);

  char *ro = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(ro != MAP_FAILED);
  wl_fill(ro, 4 * PAGE, RO_SEED);
  WL_MUST(mprotect(ro, 4 * PAGE, PROT_READ) == 0);

  char *madv = NULL;
  if (want_madv_guard) {
    madv = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(madv != MAP_FAILED);
    wl_fill(madv, 4 * PAGE, GUARD_SEED + 1);
    if (madvise(madv + PAGE, PAGE, MADV_GUARD_INSTALL) == 0) {
      WL_MUST(faults(madv + PAGE, 0));
    } else {
      fprintf(stderr, "MADV_GUARD_INSTALL: %s (kernel older than 6.13?)\n", strerror(errno));
      munmap(madv, 4 * PAGE);
      madv = NULL;  // READY says madv=(nil): nothing to test
    }
  }

  pthread_t idle;
  WL_MUST(pthread_create(&idle, NULL, idle_thread, NULL) == 0);

  // ---- files ----
  int reg = open(in_workdir("reg.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  char text[1000];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
  WL_MUST(reg >= 0 && wl_write_all(reg, text, sizeof text) == 0);
  WL_MUST(lseek(reg, 123, SEEK_SET) == 123);
  place(reg, FD_REG);
  WL_MUST(dup2(FD_REG, FD_REG_DUP) == FD_REG_DUP);
  int app = open(in_workdir("app.log"), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  WL_MUST(app >= 0 && wl_write_all(app, "line1\n", 6) == 0);
  WL_MUST(dup3(app, FD_APPEND, O_CLOEXEC) == FD_APPEND);
  close(app);
  place(open(workdir, O_RDONLY | O_DIRECTORY), FD_DIR);
  place(open("/dev/null", O_WRONLY), FD_NULL);
  place(open("/dev/zero", O_RDONLY), FD_ZERO);
  WL_MUST(mkfifo(in_workdir("fifo"), 0600) == 0);
  place(open(in_workdir("fifo"), O_RDONLY | O_NONBLOCK), FD_FIFO_R);
  place(open(in_workdir("fifo"), O_WRONLY), FD_FIFO_W);
  unsigned char fifo_data[300];
  for (size_t i = 0; i < sizeof fifo_data; i++) fifo_data[i] = byte_at(i, 5);
  WL_MUST(wl_write_all(FD_FIFO_W, fifo_data, sizeof fifo_data) == 0);
  int p[2];
  WL_MUST(pipe(p) == 0);
  place(p[0], FD_PIPE_R);
  place(p[1], FD_PIPE_W);
  WL_MUST(fcntl(FD_PIPE_W, F_SETPIPE_SZ, 128 * 1024) >= 128 * 1024);
  static unsigned char pipe_data[70000];
  for (size_t i = 0; i < sizeof pipe_data; i++) pipe_data[i] = byte_at(i, 9);
  WL_MUST(wl_write_all(FD_PIPE_W, pipe_data, sizeof pipe_data) == 0);
  place(open(in_workdir("shared_off.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644), FD_SHARED);
  WL_MUST(wl_write_all(FD_SHARED, text, sizeof text) == 0);

  // The heap, last, so that nothing moves the break after we record it.
  char *heap = sbrk(0);
  WL_MUST(sbrk(3 << 20) == heap);
  wl_fill(heap, 3 << 20, BRK_SEED);
  char *brk_end = sbrk(0);

  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    while (!wl_triggered) wl_sleep_ms(10);
    _exit(lseek(FD_SHARED, 777, SEEK_SET) == 777 ? 0 : 1);
  }

  unsigned char fds0[256];
  open_fds(fds0);
  wl_ready(ready_path, "pid=%d child=%d priv=%p none=%p guarded=%p ro=%p heap=%p brk=%p madv=%p", (int)getpid(),
           (int)child, (void *)priv, (void *)none, (void *)guarded, (void *)ro, (void *)heap, (void *)brk_end,
           (void *)madv);
  while (!wl_triggered) wl_sleep_ms(10);

  // ---- verify memory ----
  WL_CHECK(sbrk(0) == brk_end, "brk is %p, want %p", sbrk(0), (void *)brk_end);
  long bad = wl_check_fill(heap, 3 << 20, BRK_SEED);
  WL_CHECK(bad < 0, "brk heap broken at offset %ld", bad);
  char *more = sbrk(65536);
  WL_CHECK(more == brk_end, "sbrk(64 KiB) returned %p, want %p", (void *)more, (void *)brk_end);
  if (more == brk_end) {
    WL_CHECK(!faults(more + 65535, 1), "grown heap not writable");
    sbrk(-65536);
  }

  for (int page = 0; page < DATA_PAGES; page++) {
    int cow = page == 2 || page == 3 || page == 10;
    if (cow) {
      WL_CHECK(wl_check_fill(priv + page * PAGE, PAGE, COW_SEED) < 0, "private file mapping: modified page %d lost",
               page);
    } else {
      const uint64_t *w = (const uint64_t *)(priv + page * PAGE);
      for (size_t i = 0; i < PAGE / 8; i++)
        if (w[i] != file_word(page * PAGE / 8 + i)) {
          wl_fail("private file mapping: file page %d differs at word %zu", page, i);
          break;
        }
    }
  }
  expect_maps("private file mapping", priv, "rw-p", "/data.bin");

  WL_CHECK(strcmp(shared_map + PAGE, "written before the dump") == 0, "shared file mapping lost its contents");
  strcpy(shared_map + 2 * PAGE, "written after the restore");
  char from_file[64] = {0};
  int shf = open(in_workdir("shared.bin"), O_RDONLY);
  WL_CHECK(shf >= 0 && pread(shf, from_file, 25, 2 * PAGE) == 25 && strcmp(from_file, "written after the restore") == 0,
           "a write to the MAP_SHARED file mapping did not reach the file ('%s')", from_file);
  if (shf >= 0) close(shf);
  expect_maps("shared file mapping", shared_map, "rw-s", "/shared.bin");

  expect_maps("PROT_NONE region", none, "---p", NULL);
  WL_CHECK(faults(none + 3 * PAGE, 0), "PROT_NONE region readable");

  for (int page = 0; page < 5; page++) {
    if (page == 2) continue;
    WL_CHECK(wl_check_fill(guarded + page * PAGE, PAGE, GUARD_SEED) < 0, "guarded region: page %d broken", page);
  }
  WL_CHECK(faults(guarded + 2 * PAGE, 0), "guard page readable");
  expect_maps("guard page", guarded + 2 * PAGE, "---p", NULL);
  expect_maps("page before the guard", guarded, "rw-p", NULL);

  WL_CHECK(wl_check_fill(ro, 4 * PAGE, RO_SEED) < 0, "read-only region lost its contents");
  WL_CHECK(faults(ro + PAGE, 1), "read-only region writable");
  expect_maps("read-only region", ro, "r--p", NULL);

  if (madv) {
    WL_CHECK(faults(madv + PAGE, 0), "MADV_GUARD_INSTALL guard page is readable after restore");
    WL_CHECK(wl_check_fill(madv, PAGE, GUARD_SEED + 1) < 0 && wl_check_fill(madv + 2 * PAGE, 2 * PAGE, GUARD_SEED + 1) < 0,
             "pages around the MADV_GUARD_INSTALL guard broken");
  }

  // The stack still grows (2 MiB below the READY depth).
  grow_stack(2048);
  expect_maps("main stack", (void *)&bad, "rw-p", "[stack]");

  // ---- verify files ----
  unsigned char fds_now[256];
  open_fds(fds_now);
  for (int fd = 0; fd < 256; fd++)
    if (fds_now[fd] != fds0[fd]) wl_fail("fd %d is %s now", fd, fds_now[fd] ? "open" : "closed");

  WL_CHECK(lseek(FD_REG, 0, SEEK_CUR) == 123, "regular file offset %ld, want 123", (long)lseek(FD_REG, 0, SEEK_CUR));
  char got[10];
  WL_CHECK(read(FD_REG, got, 10) == 10 && memcmp(got, text + 123, 10) == 0, "regular file: wrong data at offset 123");
  WL_CHECK(lseek(FD_REG_DUP, 0, SEEK_CUR) == 133, "dup'ed fd does not share the offset (%ld, want 133)",
           (long)lseek(FD_REG_DUP, 0, SEEK_CUR));
  WL_CHECK((fcntl(FD_REG, F_GETFL) & O_ACCMODE) == O_RDWR, "regular file not O_RDWR");

  int fl = fcntl(FD_APPEND, F_GETFL);
  WL_CHECK(fl >= 0 && (fl & O_APPEND), "O_APPEND lost (flags %#o)", fl);
  WL_CHECK(fcntl(FD_APPEND, F_GETFD) == FD_CLOEXEC, "FD_CLOEXEC lost on the log");
  WL_CHECK(fcntl(FD_REG, F_GETFD) == 0, "FD_CLOEXEC appeared on fd %d", FD_REG);
  WL_CHECK(write(FD_APPEND, "line2\n", 6) == 6, "write to the log failed");
  char log[64] = {0};
  char log_path[4096];
  snprintf(log_path, sizeof log_path, "%s", in_workdir("app.log"));
  wl_read_file(log_path, log, sizeof log - 1);
  WL_CHECK(strcmp(log, "line1\nline2\n") == 0, "O_APPEND log holds '%s'", log);

  struct stat st, st2;
  WL_CHECK(fstat(FD_DIR, &st) == 0 && S_ISDIR(st.st_mode), "directory fd is not a directory");
  WL_CHECK(stat(workdir, &st2) == 0 && st.st_ino == st2.st_ino && st.st_dev == st2.st_dev,
           "directory fd names another directory");
  int at = openat(FD_DIR, "reg.txt", O_RDONLY);
  WL_CHECK(at >= 0, "openat(directory fd) failed: %s", strerror(errno));
  if (at >= 0) close(at);

  WL_CHECK(fstat(FD_NULL, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "fd %d is not /dev/null",
           FD_NULL);
  WL_CHECK(write(FD_NULL, "x", 1) == 1, "write to /dev/null failed");
  WL_CHECK(fstat(FD_ZERO, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 5), "fd %d is not /dev/zero",
           FD_ZERO);
  char zeros[100];
  memset(zeros, 1, sizeof zeros);
  WL_CHECK(read(FD_ZERO, zeros, sizeof zeros) == sizeof zeros && zeros[0] == 0 && zeros[99] == 0,
           "/dev/zero read no zeros");

  WL_CHECK(fstat(FD_FIFO_R, &st) == 0 && S_ISFIFO(st.st_mode) && stat(in_workdir("fifo"), &st2) == 0 &&
               st.st_ino == st2.st_ino,
           "FIFO fd is not the named FIFO");
  fl = fcntl(FD_FIFO_R, F_GETFL);
  WL_CHECK((fl & O_ACCMODE) == O_RDONLY && (fl & O_NONBLOCK), "FIFO reader flags %#o", fl);
  WL_CHECK((fcntl(FD_FIFO_W, F_GETFL) & O_ACCMODE) == O_WRONLY, "FIFO writer not O_WRONLY");
  unsigned char fifo_got[400];
  ssize_t n = read(FD_FIFO_R, fifo_got, sizeof fifo_got);
  WL_CHECK(n == 300 && memcmp(fifo_got, fifo_data, 300) == 0, "FIFO held %zd bytes, want 300 of its data", n);
  WL_CHECK(wl_write_all(FD_FIFO_W, "ping", 4) == 0 && read(FD_FIFO_R, fifo_got, 10) == 4 && !memcmp(fifo_got, "ping", 4),
           "FIFO ends not connected to each other");

  int pipe_size = fcntl(FD_PIPE_R, F_GETPIPE_SZ);
  WL_CHECK(pipe_size >= 128 * 1024, "pipe capacity %d, want 128 KiB", pipe_size);
  fcntl(FD_PIPE_R, F_SETFL, O_NONBLOCK);
  static unsigned char pipe_got[80000];
  size_t total = 0;
  while (total < sizeof pipe_got) {
    n = read(FD_PIPE_R, pipe_got + total, sizeof pipe_got - total);
    if (n <= 0) break;
    total += (size_t)n;
  }
  WL_CHECK(total == sizeof pipe_data && memcmp(pipe_got, pipe_data, sizeof pipe_data) == 0,
           "pipe held %zu bytes, want %zu of its data", total, sizeof pipe_data);
  WL_CHECK(write(FD_PIPE_W, "x", 1) == 1 && read(FD_PIPE_R, pipe_got, 1) == 1, "pipe ends not connected");

  WL_CHECK(lseek(FD_DATA, 0, SEEK_CUR) == (off_t)(5 * PAGE), "data file offset %ld", (long)lseek(FD_DATA, 0, SEEK_CUR));

  kill(child, SIGUSR1);
  int status = 0;
  pid_t w;
  while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
  }
  WL_CHECK(w == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
  WL_CHECK(lseek(FD_SHARED, 0, SEEK_CUR) == 777,
           "the file description is no longer shared with the child (offset %ld, want 777)",
           (long)lseek(FD_SHARED, 0, SEEK_CUR));
  return wl_finish(report_path);
}
