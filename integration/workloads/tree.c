// tree: a process tree of some depth, with sessions, process groups, a zombie, a
// stopped task, and tasks blocked in read, poll, wait4, nanosleep and sigsuspend.
//
//   tree READY REPORT
//
// The root R (started as a session leader) builds:
//   R   main thread in sigsuspend; T1 blocked in read(pipe); T2 in poll(pipe, 60 s);
//       T3 in a clock_nanosleep loop
//   ├─ Z      exited with status 42, not reaped before the trigger (a zombie)
//   ├─ A      own process group; blocked in wait4(A1)
//   │  └─ A1     in A's group; blocked in wait4(A1a)
//   │     └─ A1a   setsid(): own session; blocked in wait4(A1a1)
//   │        └─ A1a1  in A1a's session; blocked in read(pipe)
//   ├─ B      joined A's process group; blocked in poll(pipe, no timeout)
//   ├─ C      nanosleep(50 ms) loop
//   └─ S      stopped by SIGSTOP
// READY lists "NAME=pid". On SIGUSR1 R wakes every task; each checks its pid, ppid,
// pgid and sid against what it saw before and sends "NAME ok" or "NAME FAIL why"
// through a results pipe; R collects them, reaps everyone (Z must give 42) and
// writes REPORT.
#include "workload.h"

#include <poll.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/wait.h>

struct ids {
  pid_t pid, ppid, pgid, sid;
};

static struct ids ids_now(void) {
  struct ids i = {getpid(), getppid(), getpgrp(), getsid(0)};
  return i;
}

static int results_fd;  // write end of the results pipe (every task)
static int ready_fd;    // write end of the ready pipe (every task)

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

static void announce(const char *name) {
  char line[64];
  int n = snprintf(line, sizeof line, "%s=%d\n", name, (int)getpid());
  WL_MUST(wl_write_all(ready_fd, line, (size_t)n) == 0);
}

static void set_name(const char *name) {
  char comm[16];
  snprintf(comm, sizeof comm, "tree-%s", name);
  prctl(PR_SET_NAME, comm, 0, 0, 0);
}

// Compares the ids a task has now with those it recorded before the dump and
// sends its verdict; returns the exit code for the task.
static int verdict(const char *name, struct ids want, const char *extra_failure) {
  struct ids got = ids_now();
  char why[400] = "";
  if (got.pid != want.pid || got.ppid != want.ppid || got.pgid != want.pgid || got.sid != want.sid)
    snprintf(why, sizeof why, "ids pid/ppid/pgid/sid %d/%d/%d/%d, want %d/%d/%d/%d", got.pid, got.ppid, got.pgid,
             got.sid, want.pid, want.ppid, want.pgid, want.sid);
  if (extra_failure && extra_failure[0]) {
    size_t used = strlen(why);
    snprintf(why + used, sizeof why - used, "%s%s", used ? "; " : "", extra_failure);
  }
  if (why[0]) {
    say("%s FAIL %s", name, why);
    return 1;
  }
  say("%s ok", name);
  return 0;
}

static int wait_child(pid_t child, char *why, size_t size) {
  int status = 0;
  pid_t w;
  while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
  }
  if (w != child) {
    snprintf(why, size, "wait4(%d): %s", (int)child, strerror(errno));
    return -1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    snprintf(why, size, "child %d ended with status 0x%x", (int)child, status);
    return -1;
  }
  return 0;
}

// ---- the tasks --------------------------------------------------------------------------

static int go_leaf[2], go_b[2], go_t1[2], go_t2[2];

static int run_a1a1(void) {
  set_name("A1a1");
  struct ids want = ids_now();
  announce("A1a1");
  char c;
  ssize_t n;
  while ((n = read(go_leaf[0], &c, 1)) < 0 && errno == EINTR) {
  }
  return verdict("A1a1", want, n == 1 && c == 'g' ? "" : "read on the pipe did not return the byte");
}

static int run_a1a(void) {
  WL_MUST(setsid() == getpid());
  set_name("A1a");
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) _exit(run_a1a1());
  struct ids want = ids_now();
  announce("A1a");
  char why[200] = "";
  wait_child(child, why, sizeof why);
  return verdict("A1a", want, why);
}

static int run_a1(void) {
  set_name("A1");
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) _exit(run_a1a());
  struct ids want = ids_now();
  announce("A1");
  char why[200] = "";
  wait_child(child, why, sizeof why);
  return verdict("A1", want, why);
}

static int run_a(void) {
  setpgid(0, 0);
  set_name("A");
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) _exit(run_a1());
  struct ids want = ids_now();
  announce("A");
  char why[200] = "";
  wait_child(child, why, sizeof why);
  return verdict("A", want, why);
}

static int run_b(pid_t group) {
  WL_MUST(setpgid(0, group) == 0);
  set_name("B");
  struct ids want = ids_now();
  announce("B");
  struct pollfd p = {go_b[0], POLLIN, 0};
  int n;
  while ((n = poll(&p, 1, -1)) < 0 && errno == EINTR) {
  }
  return verdict("B", want, n == 1 && (p.revents & POLLIN) ? "" : "poll did not report the pipe readable");
}

static int run_c(void) {
  set_name("C");
  struct ids want = ids_now();
  announce("C");
  long iterations = 0;
  while (!wl_triggered) {
    wl_sleep_ms(50);
    iterations++;
  }
  double start = wl_now();
  for (int i = 0; i < 6; i++) wl_sleep_ms(50);
  double took = wl_now() - start;
  char why[200] = "";
  if (took < 0.29 || took > 3.0) snprintf(why, sizeof why, "6 sleeps of 50 ms took %.3f s", took);
  if (iterations == 0) snprintf(why, sizeof why, "the nanosleep loop never ran");
  return verdict("C", want, why);
}

static int run_s(void) {
  set_name("S");
  struct ids want = ids_now();
  announce("S");
  raise(SIGSTOP);
  // Continued by the root at the trigger, which sends SIGUSR1 right after SIGCONT.
  while (!wl_triggered) wl_sleep_ms(5);
  return verdict("S", want, "");
}

// ---- the root's threads -----------------------------------------------------------------

static atomic_int threads_ready, stop_t3;
static pid_t thread_tids[3];

static void *t1_main(void *arg) {
  (void)arg;
  wl_block_trigger();
  prctl(PR_SET_NAME, "tree-T1", 0, 0, 0);
  thread_tids[0] = gettid();
  atomic_fetch_add(&threads_ready, 1);
  char c;
  ssize_t n;
  while ((n = read(go_t1[0], &c, 1)) < 0 && errno == EINTR) {
  }
  WL_CHECK(n == 1 && c == 'g', "T1: read on the pipe returned %zd", n);
  WL_CHECK(gettid() == thread_tids[0], "T1: tid %d, want %d", (int)gettid(), (int)thread_tids[0]);
  return NULL;
}

static void *t2_main(void *arg) {
  (void)arg;
  wl_block_trigger();
  prctl(PR_SET_NAME, "tree-T2", 0, 0, 0);
  thread_tids[1] = gettid();
  atomic_fetch_add(&threads_ready, 1);
  struct pollfd p = {go_t2[0], POLLIN, 0};
  int n;
  // A long timeout: it must still be running (not expire at once, not hang).
  while ((n = poll(&p, 1, 60000)) < 0 && errno == EINTR) {
  }
  WL_CHECK(n == 1, "T2: poll returned %d (0 means the 60 s timeout expired)", n);
  WL_CHECK(gettid() == thread_tids[1], "T2: tid %d, want %d", (int)gettid(), (int)thread_tids[1]);
  return NULL;
}

static void *t3_main(void *arg) {
  (void)arg;
  wl_block_trigger();
  prctl(PR_SET_NAME, "tree-T3", 0, 0, 0);
  thread_tids[2] = gettid();
  atomic_fetch_add(&threads_ready, 1);
  long iterations = 0;
  while (!atomic_load(&stop_t3)) {
    struct timespec ts = {0, 20000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
    }
    iterations++;
  }
  WL_CHECK(iterations > 0, "T3: the clock_nanosleep loop never ran");
  WL_CHECK(gettid() == thread_tids[2], "T3: tid %d, want %d", (int)gettid(), (int)thread_tids[2]);
  return NULL;
}

// ---- the root ---------------------------------------------------------------------------

#define NTASKS 7  // A A1 A1a A1a1 B C S

int main(int argc, char **argv) {
  const char *ready_path = wl_arg(argc, argv, 1, "READY REPORT");
  const char *report_path = wl_arg(argc, argv, 2, "READY REPORT");
  if (getsid(0) != getpid()) WL_MUST(setsid() == getpid());
  prctl(PR_SET_NAME, "tree-R", 0, 0, 0);
  wl_install_trigger();
  int res[2], rdy[2];
  WL_MUST(pipe(res) == 0 && pipe(rdy) == 0);
  WL_MUST(pipe(go_leaf) == 0 && pipe(go_b) == 0 && pipe(go_t1) == 0 && pipe(go_t2) == 0);
  results_fd = res[1];
  ready_fd = rdy[1];

  // Block the trigger while forking, so that sigsuspend can wait for it.
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  sigset_t child_mask = old;

  pid_t z = fork();
  WL_MUST(z >= 0);
  if (z == 0) _exit(42);

#define SPAWN(var, call)                             \
  pid_t var = fork();                                \
  WL_MUST(var >= 0);                                 \
  if (var == 0) {                                    \
    sigprocmask(SIG_SETMASK, &child_mask, NULL);     \
    _exit(call);                                     \
  }
  SPAWN(a, run_a());
  setpgid(a, a);  // also from the parent, so that B can join the group at once
  SPAWN(b, run_b(a));
  SPAWN(c, run_c());
  SPAWN(s, run_s());

  pthread_t t1, t2, t3;
  WL_MUST(pthread_create(&t1, NULL, t1_main, NULL) == 0);
  WL_MUST(pthread_create(&t2, NULL, t2_main, NULL) == 0);
  WL_MUST(pthread_create(&t3, NULL, t3_main, NULL) == 0);

  // Everyone announced itself; S is stopped; Z is a zombie.
  char names[1024] = "";
  size_t used = 0;
  for (int got = 0; got < NTASKS;) {
    char buf[256];
    ssize_t n = read(rdy[0], buf, sizeof buf - 1);
    WL_MUST(n > 0);
    buf[n] = 0;
    for (char *p = buf; *p; p++)
      if (*p == '\n') {
        got++;
        *p = ' ';
      }
    used += (size_t)snprintf(names + used, sizeof names - used, "%s", buf);
  }
  int status;
  WL_MUST(waitpid(s, &status, WUNTRACED) == s && WIFSTOPPED(status));
  siginfo_t si;
  memset(&si, 0, sizeof si);
  WL_MUST(waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT) == 0 && si.si_pid == z);
  while (atomic_load(&threads_ready) < 3) wl_sleep_ms(1);
  struct ids root_ids = ids_now();
  wl_ready(ready_path, "pid=%d Z=%d %stids=%d,%d,%d", (int)getpid(), (int)z, names, (int)thread_tids[0],
           (int)thread_tids[1], (int)thread_tids[2]);

  while (!wl_triggered) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);

  // The zombie is still there, with its status.
  memset(&si, 0, sizeof si);
  int zr = waitid(P_PID, (id_t)z, &si, WEXITED | WNOHANG | WNOWAIT);
  WL_CHECK(zr == 0 && si.si_pid == z && si.si_code == CLD_EXITED && si.si_status == 42,
           "zombie %d: waitid gave %d (errno %d), pid %d code %d status %d", (int)z, zr, zr ? errno : 0,
           (int)si.si_pid, si.si_code, si.si_status);

  // Wake everyone.
  WL_MUST(write(go_leaf[1], "g", 1) == 1);
  WL_MUST(write(go_b[1], "g", 1) == 1);
  WL_MUST(write(go_t1[1], "g", 1) == 1);
  WL_MUST(write(go_t2[1], "g", 1) == 1);
  atomic_store(&stop_t3, 1);
  kill(c, SIGUSR1);
  kill(s, SIGCONT);
  kill(s, SIGUSR1);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  pthread_join(t3, NULL);

  // Collect the verdicts.
  int verdicts = 0;
  char buf[4096];
  size_t have = 0;
  double deadline = wl_now() + 15;
  while (verdicts < NTASKS && wl_now() < deadline) {
    struct pollfd p = {res[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = read(res[0], buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = 0;
    char *line;
    while ((line = strchr(buf, '\n')) != NULL) {
      *line = 0;
      verdicts++;
      if (!strstr(buf, " ok")) wl_fail("%s", buf);
      have -= (size_t)(line + 1 - buf);
      memmove(buf, line + 1, have + 1);
    }
  }
  WL_CHECK(verdicts == NTASKS, "only %d of %d tasks reported", verdicts, NTASKS);

  struct {
    pid_t pid;
    int code;
    const char *name;
  } kids[] = {{z, 42, "Z"}, {a, 0, "A"}, {b, 0, "B"}, {c, 0, "C"}, {s, 0, "S"}};
  for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++) {
    pid_t w;
    while ((w = waitpid(kids[i].pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (w != kids[i].pid)
      wl_fail("waitpid(%s %d): %s", kids[i].name, (int)kids[i].pid, strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != kids[i].code)
      wl_fail("%s ended with status 0x%x, want exit %d", kids[i].name, status, kids[i].code);
  }
  struct ids now = ids_now();
  WL_CHECK(now.pid == root_ids.pid && now.pgid == root_ids.pgid && now.sid == root_ids.sid,
           "root ids pid/pgid/sid %d/%d/%d, want %d/%d/%d", now.pid, now.pgid, now.sid, root_ids.pid, root_ids.pgid,
           root_ids.sid);
  return wl_finish(report_path);
}
