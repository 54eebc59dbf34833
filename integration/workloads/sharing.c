// sharing: what processes of a tree share with each other.
//
//   sharing MODE READY REPORT
//
// cow: the root R maps 64 MiB, fills it and forks C0, C1, C2; each child
//   writes a few pages of its own; C0 forks G after its writes, and G writes
//   a few pages too; R writes a few pages after the forks (some where C1
//   wrote). Every other page stays shared copy-on-write by all five.
//   READY gives addr= and the pids. On SIGUSR1, R writes one more page and
//   wakes the others; each writes a page of its own too, then checks every
//   page of the 64 MiB (its own writes, its parent's writes from before its
//   fork, nobody else's) and tells R through a results pipe; R checks its
//   own and writes REPORT.
// zombie_pgid: R forks A (its own process group, waits), Z1 (its own group,
//   exits 7), Z2 (joins A's group, exits 9) and Z3 (joins the group of L, a
//   child of R that exits and is reaped, then exits 11); R reaps none of the
//   zombies. On SIGUSR1 R checks their groups with getpgid, then reaps all.
// thread_creds: (run as root) thread U takes uids 1000/1001/1002 and gids
//   2000/2001/2002 by raw syscalls (its own only), thread K drops
//   CAP_NET_RAW from its effective and permitted sets by a raw capset,
//   thread S enters seccomp strict mode and waits in read; child P enters
//   strict mode too and waits in read. On SIGUSR1 each thread checks its own
//   credentials (the main thread still has root's), S echoes a byte and
//   exits, and P, woken, calls getpid and must die of SIGKILL.
#include "workload.h"

#include <linux/capability.h>
#include <sched.h>
#include <linux/seccomp.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define NPAGES 16384UL  // 64 MiB

static int results_fd;
static int done_fd;

// A process's view of the region: which seed each page was written with.
struct view {
  const char *name;
  unsigned char seed[NPAGES];
};

static void write_pages(char *mem, struct view *v, size_t first, size_t count, unsigned char seed) {
  for (size_t i = first; i < first + count; i++) {
    wl_fill(mem + i * PAGE, PAGE, seed);
    v->seed[i] = seed;
  }
}

// Checks every page; returns the number of bad pages (the first few named).
static int check_view(const char *mem, const struct view *v, char *why, size_t why_len) {
  int bad = 0;
  why[0] = '\0';
  for (size_t i = 0; i < NPAGES; i++) {
    if (wl_check_fill(mem + i * PAGE, PAGE, v->seed[i]) < 0) continue;
    if (bad++ < 4) {
      size_t used = strlen(why);
      snprintf(why + used, why_len - used, " page %zu (want seed %u)", i, v->seed[i]);
    }
  }
  return bad;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (wl_write_all(results_fd, line, (size_t)n) != 0) _exit(99);
}

static void wait_trigger(void) {
  sigset_t none;
  sigemptyset(&none);
  while (!wl_triggered) sigsuspend(&none);
}

// A child: after the trigger, one more page of its own, then the check.
static void child_after_trigger(char *mem, struct view *v, size_t own_page, unsigned char seed, pid_t wake) {
  wait_trigger();
  int status = 0;
  if (wake > 0) {
    kill(wake, SIGUSR1);
    waitpid(wake, &status, 0);
  }
  write_pages(mem, v, own_page, 1, seed);
  char why[512];
  int bad = check_view(mem, v, why, sizeof why);
  if (bad)
    say("%s FAIL %d bad pages:%s", v->name, bad, why);
  else
    say("%s ok", v->name);
  _exit(bad || (wake > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) ? 1 : 0);
}

static pid_t fork_child(void) {
  pid_t pid = fork();
  WL_MUST(pid >= 0);
  return pid;
}

static void done(void) { WL_MUST(write(done_fd, "x", 1) == 1); }

static int run_cow(const char *ready, const char *report) {
  int results[2], dones[2];
  WL_MUST(pipe(results) == 0 && pipe(dones) == 0);
  results_fd = results[1];
  done_fd = dones[1];
  char *mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  static struct view v;
  v.name = "R";
  write_pages(mem, &v, 0, NPAGES, 1);
  wl_install_trigger();
  pid_t kids[3], grandchild = 0;
  for (int i = 0; i < 3; i++) {
    kids[i] = fork_child();
    if (kids[i] == 0) {
      static const char* names[] = {"C0", "C1", "C2"};
      v.name = names[i];
      write_pages(mem, &v, 1000 * (size_t)(i + 1), 4, (unsigned char)(100 + i));
      pid_t g = 0;
      if (i == 0) {
        g = fork_child();
        if (g == 0) {
          v.name = "G";
          write_pages(mem, &v, 5000, 4, 200);
          done();
          child_after_trigger(mem, &v, 9004, 201, 0);
        }
        write_pages(mem, &v, 6000, 2, 100);  // after G's fork: not G's
        char line[32];
        int n = snprintf(line, sizeof line, "G=%d\n", (int)g);
        WL_MUST(wl_write_all(results_fd, line, (size_t)n) == 0);
      }
      done();
      child_after_trigger(mem, &v, 9001 + (size_t)i, (unsigned char)(110 + i), g);
    }
  }
  write_pages(mem, &v, 7000, 4, 2);
  write_pages(mem, &v, 2000, 2, 2);  // where C1 wrote its own
  close(done_fd);
  close(dones[1]);
  for (int i = 0; i < 5 - 1; i++) {
    char c;
    WL_MUST(read(dones[0], &c, 1) == 1);
  }
  char line[64] = {0};
  // C0 said which pid its child has.
  size_t len = 0;
  while (len < sizeof line - 1) {
    WL_MUST(read(results[0], line + len, 1) == 1);
    if (line[len++] == '\n') break;
  }
  WL_MUST(sscanf(line, "G=%d", &grandchild) == 1);
  wl_ready(ready, "addr=0x%lx R=%d C0=%d C1=%d C2=%d G=%d", (unsigned long)mem, (int)getpid(), (int)kids[0],
           (int)kids[1], (int)kids[2], (int)grandchild);
  wait_trigger();
  write_pages(mem, &v, 8000, 1, 3);
  for (int i = 0; i < 3; i++) kill(kids[i], SIGUSR1);
  for (int i = 0; i < 3; i++) {
    int status;
    WL_MUST(waitpid(kids[i], &status, 0) == kids[i]);
    WL_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "C%d ended with status 0x%x", i, status);
  }
  close(results_fd);
  char text[4096];
  ssize_t got = 0, n;
  while ((n = read(results[0], text + got, sizeof text - 1 - (size_t)got)) > 0) got += n;
  text[got] = '\0';
  int oks = 0;
  for (char* l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
    if (strstr(l, " ok"))
      oks++;
    else
      wl_fail("%s", l);
  }
  WL_CHECK(oks == 4, "%d of 4 children said ok", oks);
  char why[512];
  int bad = check_view(mem, &v, why, sizeof why);
  WL_CHECK(bad == 0, "R: %d bad pages:%s", bad, why);
  return wl_finish(report);
}

static int run_zombie_pgid(const char *ready, const char *report) {
  wl_install_trigger();
  pid_t a = fork_child();
  if (a == 0) {
    WL_MUST(setpgid(0, 0) == 0);
    wait_trigger();
    _exit(0);
  }
  WL_MUST(setpgid(a, a) == 0 || errno == EACCES);
  pid_t z1 = fork_child();
  if (z1 == 0) {
    WL_MUST(setpgid(0, 0) == 0);
    _exit(7);
  }
  pid_t z2 = fork_child();
  if (z2 == 0) {
    while (getpgid(a) != a) wl_sleep_ms(1);
    WL_MUST(setpgid(0, a) == 0);
    _exit(9);
  }
  int go[2];
  WL_MUST(pipe(go) == 0);
  pid_t l = fork_child();
  if (l == 0) {
    WL_MUST(setpgid(0, 0) == 0);
    char c;
    WL_MUST(read(go[0], &c, 1) == 1);
    _exit(0);
  }
  WL_MUST(setpgid(l, l) == 0 || errno == EACCES);
  pid_t z3 = fork_child();
  if (z3 == 0) {
    WL_MUST(setpgid(0, l) == 0);
    _exit(11);
  }
  siginfo_t si;
  WL_MUST(waitid(P_PID, (id_t)z3, &si, WEXITED | WNOWAIT) == 0);
  WL_MUST(write(go[1], "x", 1) == 1);
  int st;
  WL_MUST(waitpid(l, &st, 0) == l);
  for (pid_t z = z1; z; z = z == z1 ? z2 : 0) WL_MUST(waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT) == 0);
  WL_MUST(getpgid(z1) == z1 && getpgid(z2) == a && getpgid(z3) == l);
  wl_ready(ready, "A=%d Z1=%d Z2=%d Z3=%d", (int)a, (int)z1, (int)z2, (int)z3);
  wait_trigger();
  WL_CHECK(getpgid(z1) == z1, "zombie Z1 is in group %d, want %d", (int)getpgid(z1), (int)z1);
  WL_CHECK(getpgid(z2) == a, "zombie Z2 is in group %d, want A's %d", (int)getpgid(z2), (int)a);
  WL_CHECK(getpgid(z3) == l, "zombie Z3 is in group %d, want %d (its leader is gone)", (int)getpgid(z3), (int)l);
  kill(a, SIGUSR1);
  int status;
  WL_CHECK(waitpid(z3, &status, 0) == z3 && WIFEXITED(status) && WEXITSTATUS(status) == 11, "Z3 status 0x%x", status);
  WL_CHECK(waitpid(z1, &status, 0) == z1 && WIFEXITED(status) && WEXITSTATUS(status) == 7, "Z1 status 0x%x", status);
  WL_CHECK(waitpid(z2, &status, 0) == z2 && WIFEXITED(status) && WEXITSTATUS(status) == 9, "Z2 status 0x%x", status);
  WL_CHECK(waitpid(a, &status, 0) == a && WIFEXITED(status) && WEXITSTATUS(status) == 0, "A status 0x%x", status);
  return wl_finish(report);
}

struct creds_thread {
  int wake[2];
  int echo[2];  // S only
  atomic_int ok;
};

static int raw_getres(long nr, unsigned *a, unsigned *b, unsigned *c) { return (int)syscall(nr, a, b, c); }

static uint64_t caps_of(int which) {  // 0 effective, 1 permitted
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) != 0) return 0;
  return which == 0 ? ((uint64_t)d[1].effective << 32 | d[0].effective) : ((uint64_t)d[1].permitted << 32 | d[0].permitted);
}

static void wait_wake(struct creds_thread *t) {
  char c;
  while (read(t->wake[0], &c, 1) < 0 && errno == EINTR) {
  }
}

static void *uid_thread(void *arg) {
  struct creds_thread *t = arg;
  wl_block_trigger();
  WL_MUST(syscall(SYS_setresgid, 2000, 2001, 2002) == 0);
  WL_MUST(syscall(SYS_setresuid, 1000, 1001, 1002) == 0);
  atomic_store(&t->ok, 1);
  wait_wake(t);
  unsigned r, e, s;
  WL_CHECK(raw_getres(SYS_getresuid, &r, &e, &s) == 0 && r == 1000 && e == 1001 && s == 1002,
           "thread U has uids %u/%u/%u, want 1000/1001/1002", r, e, s);
  WL_CHECK(raw_getres(SYS_getresgid, &r, &e, &s) == 0 && r == 2000 && e == 2001 && s == 2002,
           "thread U has gids %u/%u/%u, want 2000/2001/2002", r, e, s);
  return NULL;
}

static void *cap_thread(void *arg) {
  struct creds_thread *t = arg;
  wl_block_trigger();
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  WL_MUST(syscall(SYS_capget, &h, d) == 0);
  d[0].effective &= ~(1u << CAP_NET_RAW);
  d[0].permitted &= ~(1u << CAP_NET_RAW);
  WL_MUST(syscall(SYS_capset, &h, d) == 0);
  atomic_store(&t->ok, 1);
  wait_wake(t);
  WL_CHECK(!(caps_of(0) & (1u << CAP_NET_RAW)) && !(caps_of(1) & (1u << CAP_NET_RAW)),
           "thread K has CAP_NET_RAW again (effective %llx)", (unsigned long long)caps_of(0));
  WL_CHECK(caps_of(0) & (1u << CAP_SYS_ADMIN), "thread K lost CAP_SYS_ADMIN");
  return NULL;
}

static void *strict_thread(void *arg) {
  struct creds_thread *t = arg;
  wl_block_trigger();
  atomic_store(&t->ok, (int)syscall(SYS_gettid));
  WL_MUST(syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL) == 0);
  char c;
  // Only read, write and exit from here on.
  while (syscall(SYS_read, t->wake[0], &c, 1) != 1) {
  }
  syscall(SYS_write, t->echo[1], "s", 1);
  syscall(SYS_exit, 0);
  return NULL;
}

static int run_thread_creds(const char *ready, const char *report) {
  wl_install_trigger();
  static struct creds_thread u, k, s;
  for (struct creds_thread *t = &u; t; t = t == &u ? &k : t == &k ? &s : NULL)
    WL_MUST(pipe(t->wake) == 0 && pipe(t->echo) == 0);
  pthread_t tu, tk, ts;
  WL_MUST(pthread_create(&tu, NULL, uid_thread, &u) == 0);
  WL_MUST(pthread_create(&tk, NULL, cap_thread, &k) == 0);
  WL_MUST(pthread_create(&ts, NULL, strict_thread, &s) == 0);
  int to_p[2];
  WL_MUST(pipe(to_p) == 0);
  pid_t p = fork_child();
  if (p == 0) {
    WL_MUST(syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL) == 0);
    char c;
    while (syscall(SYS_read, to_p[0], &c, 1) != 1) {
    }
    syscall(SYS_getpid);  // strict mode kills
    syscall(SYS_exit, 0);
  }
  while (!atomic_load(&u.ok) || !atomic_load(&k.ok) || !atomic_load(&s.ok)) wl_sleep_ms(1);
  char status_path[64], text[4096];
  snprintf(status_path, sizeof status_path, "/proc/self/task/%d/status", atomic_load(&s.ok));
  for (;;) {  // S is in strict mode once its status says so
    ssize_t n = wl_read_file(status_path, text, sizeof text - 1);
    text[n > 0 ? n : 0] = '\0';
    if (strstr(text, "\nSeccomp:\t1\n")) break;
    wl_sleep_ms(2);
  }
  wl_ready(ready, "P=%d", (int)p);
  wait_trigger();
  ssize_t got = wl_read_file(status_path, text, sizeof text - 1);
  text[got > 0 ? got : 0] = '\0';
  WL_CHECK(strstr(text, "\nSeccomp:\t1\n") != NULL, "thread S is not in seccomp strict mode");
  unsigned r, e, sv;
  WL_CHECK(raw_getres(SYS_getresuid, &r, &e, &sv) == 0 && r == 0 && e == 0 && sv == 0, "the main thread has uids %u/%u/%u",
           r, e, sv);
  WL_CHECK(caps_of(0) & (1u << CAP_NET_RAW), "the main thread lost CAP_NET_RAW");
  snprintf(status_path, sizeof status_path, "/proc/%d/status", (int)p);
  ssize_t n = wl_read_file(status_path, text, sizeof text - 1);
  text[n > 0 ? n : 0] = '\0';
  WL_CHECK(strstr(text, "\nSeccomp:\t1\n") != NULL, "P is not in seccomp strict mode");
  for (struct creds_thread *t = &u; t; t = t == &u ? &k : t == &k ? &s : NULL) WL_MUST(write(t->wake[1], "w", 1) == 1);
  char c = 0;
  WL_CHECK(read(s.echo[0], &c, 1) == 1 && c == 's', "thread S did not echo");
  pthread_join(tu, NULL);
  pthread_join(tk, NULL);
  pthread_join(ts, NULL);
  WL_MUST(write(to_p[1], "w", 1) == 1);
  int status;
  WL_CHECK(waitpid(p, &status, 0) == p && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
           "P in strict mode was not killed by getpid (status 0x%x)", status);
  return wl_finish(report);
}

// clone_files / clone_fs: R makes a child C with clone(CLONE_FILES) or
// clone(CLONE_FS) (its memory its own). On SIGUSR1 R opens a file (or
// changes directory to /) and C must see it: the table is still shared.
static int clone_pipe[2];
static int clone_fs_mode;

static int clone_child(void *arg) {
  (void)arg;
  int fd = -1;
  WL_MUST(read(clone_pipe[0], &fd, sizeof fd) == sizeof fd);
  if (clone_fs_mode) {
    char cwd[256];
    return getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") == 0 ? 0 : 1;
  }
  return fcntl(fd, F_GETFD) >= 0 ? 0 : 1;
}

static int run_clone(const char *ready, const char *report, int flag) {
  wl_install_trigger();
  clone_fs_mode = flag == CLONE_FS;
  WL_MUST(pipe(clone_pipe) == 0);
  static char stack[1 << 16] __attribute__((aligned(16)));
  pid_t c = clone(clone_child, stack + sizeof stack, flag | SIGCHLD, NULL);
  WL_MUST(c > 0);
  wl_ready(ready, "C=%d", (int)c);
  wait_trigger();
  int fd = -1;
  if (clone_fs_mode)
    WL_MUST(chdir("/") == 0);
  else
    WL_MUST((fd = open("/dev/null", O_RDONLY)) >= 0);
  WL_MUST(write(clone_pipe[1], &fd, sizeof fd) == sizeof fd);
  int status;
  WL_CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child does not share the %s (status 0x%x)", clone_fs_mode ? "cwd" : "fd table", status);
  return wl_finish(report);
}

// clone_siblings: R makes C1 and C2 with clone(CLONE_FILES), then takes
// an fd table of its own (unshare): the siblings share one their parent
// does not, which cryo cannot clone again. On SIGUSR1 both end.
static int sibling_child(void *arg) {
  (void)arg;
  char c;
  return read(clone_pipe[0], &c, 1) == 1 ? 0 : 1;
}

static int run_clone_siblings(const char *ready, const char *report) {
  wl_install_trigger();
  WL_MUST(pipe(clone_pipe) == 0);
  static char stacks[2][1 << 16] __attribute__((aligned(16)));
  pid_t c1 = clone(sibling_child, stacks[0] + sizeof stacks[0], CLONE_FILES | SIGCHLD, NULL);
  pid_t c2 = clone(sibling_child, stacks[1] + sizeof stacks[1], CLONE_FILES | SIGCHLD, NULL);
  WL_MUST(c1 > 0 && c2 > 0);
  WL_MUST(unshare(CLONE_FILES) == 0);
  wl_ready(ready, "C1=%d C2=%d", (int)c1, (int)c2);
  wait_trigger();
  WL_MUST(write(clone_pipe[1], "xx", 2) == 2);
  for (int i = 0; i < 2; i++) {
    int status;
    pid_t got = wait(&status);
    WL_CHECK(got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "a sibling failed (status 0x%x)", status);
  }
  return wl_finish(report);
}

int main(int argc, char **argv) {
  const char *usage = "cow|zombie_pgid|thread_creds|clone_files|clone_fs|clone_siblings READY REPORT";
  const char *mode = wl_arg(argc, argv, 1, usage);
  const char *ready = wl_arg(argc, argv, 2, usage);
  const char *report = wl_arg(argc, argv, 3, usage);
  if (strcmp(mode, "cow") == 0) return run_cow(ready, report);
  if (strcmp(mode, "zombie_pgid") == 0) return run_zombie_pgid(ready, report);
  if (strcmp(mode, "thread_creds") == 0) return run_thread_creds(ready, report);
  if (strcmp(mode, "clone_files") == 0) return run_clone(ready, report, CLONE_FILES);
  if (strcmp(mode, "clone_fs") == 0) return run_clone(ready, report, CLONE_FS);
  if (strcmp(mode, "clone_siblings") == 0) return run_clone_siblings(ready, report);
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
