// attrs: signal state and per-process attributes.
//
//   attrs READY REPORT CWD
//
// Builds: handlers with flags and masks for several signals (one SIG_IGN, one with
// SA_RESETHAND|SA_NODEFER, one SA_ONSTACK); a different blocked mask in each of
// three threads; signals left pending while blocked (a real-time signal queued to
// one thread with a value, two queued to the process with values, a SIGWINCH to the
// main thread); an alternate signal stack in one thread; rlimits, umask 027, a cwd,
// thread names, timer slack, child-subreaper and no_new_privs. It records
// personality, /proc/self/{cmdline,environ,exe,auxv} as it starts (run it under
// `setarch -R` to see ADDR_NO_RANDOMIZE come back).
// On SIGUSR1 it checks that all of it is unchanged and that every pending signal is
// delivered, with its value, to the right thread once unblocked.
#include "workload.h"

#include <limits.h>
#include <stdatomic.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define SIG_T1 (SIGRTMIN + 2)      // queued to T1 only
#define SIG_SHARED (SIGRTMIN + 3)  // queued twice to the process
#define NSIG_MAX 65

// ---- handlers -----------------------------------------------------------------------

struct delivery {
  int signo;
  int value;
  pid_t tid;
};
static struct delivery deliveries[16];
static atomic_int ndeliveries;
static volatile sig_atomic_t winch_count, term_count;
static volatile uintptr_t usr2_stack_addr;
static volatile pid_t usr2_tid;

static void on_rt(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  int i = atomic_fetch_add(&ndeliveries, 1);
  if (i < 16) deliveries[i] = (struct delivery){sig, si->si_value.sival_int, gettid()};
}
static void on_usr2(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)si, (void)uc;
  int local = 0;
  usr2_stack_addr = (uintptr_t)&local;
  usr2_tid = gettid();
}
static void on_winch(int sig) {
  (void)sig;
  winch_count++;
}
static void on_term(int sig) {
  (void)sig;
  term_count++;
}

static void install(int sig, void (*handler)(int), void (*action)(int, siginfo_t *, void *), int flags,
                    const int *mask_sigs) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  if (action) {
    sa.sa_sigaction = action;
    flags |= SA_SIGINFO;
  } else {
    sa.sa_handler = handler;
  }
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  for (const int *s = mask_sigs; s && *s; s++) sigaddset(&sa.sa_mask, *s);
  WL_MUST(sigaction(sig, &sa, NULL) == 0);
}

static unsigned long long mask_bits(const sigset_t *set) {
  unsigned long long bits;
  memcpy(&bits, set, sizeof bits);  // the kernel's 64-bit mask
  return bits;
}

static int same_action(const struct sigaction *a, const struct sigaction *b) {
  return a->sa_handler == b->sa_handler && a->sa_flags == b->sa_flags &&
         memcmp(&a->sa_mask, &b->sa_mask, 8) == 0;  // the kernel's 64-bit mask
}

// ---- recorded state -----------------------------------------------------------------

struct thread_info {
  const char *name;
  pid_t tid;
  sigset_t blocked;
  atomic_int go, done;
};
static struct thread_info t1 = {"attrs-T1", 0, {{0}}, 0, 0}, t2 = {"attrs-T2", 0, {{0}}, 0, 0};
static stack_t t2_altstack;

static void check_mask(const char *who, const sigset_t *want) {
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  if (memcmp(&now, want, 8) != 0)
    wl_fail("%s: blocked mask %#llx, want %#llx", who, mask_bits(&now), mask_bits(want));
}

static void check_comm(const char *want) {
  char name[17] = {0};
  prctl(PR_GET_NAME, name, 0, 0, 0);
  WL_CHECK(strcmp(name, want) == 0, "thread name '%s', want '%s'", name, want);
}

static void *t1_main(void *arg) {
  (void)arg;
  prctl(PR_SET_NAME, t1.name, 0, 0, 0);
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIG_T1);
  sigaddset(&m, SIG_SHARED);
  sigaddset(&m, SIGINT);
  sigaddset(&m, SIGUSR1);
  pthread_sigmask(SIG_SETMASK, &m, NULL);
  pthread_sigmask(SIG_BLOCK, NULL, &t1.blocked);
  t1.tid = gettid();
  while (!atomic_load(&t1.go)) wl_sleep_ms(10);

  WL_CHECK(gettid() == t1.tid, "T1: tid changed");
  check_comm(t1.name);
  check_mask("T1", &t1.blocked);
  sigset_t pending;
  sigpending(&pending);
  WL_CHECK(sigismember(&pending, SIG_T1), "T1: SIGRTMIN+2 no longer pending");
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIG_T1);
  int before = atomic_load(&ndeliveries);
  pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);  // delivered here, on return
  int after = atomic_load(&ndeliveries);
  WL_CHECK(after == before + 1, "T1: unblocking SIGRTMIN+2 delivered %d signals, want 1", after - before);
  if (after == before + 1) {
    struct delivery d = deliveries[before];
    WL_CHECK(d.signo == SIG_T1 && d.value == 1111 && d.tid == t1.tid,
             "T1: got signal %d value %d in tid %d, want SIGRTMIN+2 value 1111 in %d", d.signo, d.value, (int)d.tid,
             (int)t1.tid);
  }
  atomic_store(&t1.done, 1);
  return NULL;
}

static void *t2_main(void *arg) {
  (void)arg;
  prctl(PR_SET_NAME, t2.name, 0, 0, 0);
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIG_SHARED);
  sigaddset(&m, SIGRTMIN + 4);
  sigaddset(&m, SIGQUIT);
  sigaddset(&m, SIGUSR1);
  pthread_sigmask(SIG_SETMASK, &m, NULL);
  pthread_sigmask(SIG_BLOCK, NULL, &t2.blocked);
  stack_t ss;
  ss.ss_size = 64 * 1024;
  ss.ss_sp = malloc(ss.ss_size);
  ss.ss_flags = 0;
  WL_MUST(ss.ss_sp && sigaltstack(&ss, NULL) == 0);
  WL_MUST(sigaltstack(NULL, &t2_altstack) == 0);
  t2.tid = gettid();
  while (!atomic_load(&t2.go)) wl_sleep_ms(10);

  WL_CHECK(gettid() == t2.tid, "T2: tid changed");
  check_comm(t2.name);
  check_mask("T2", &t2.blocked);
  stack_t now;
  WL_MUST(sigaltstack(NULL, &now) == 0);
  WL_CHECK(now.ss_sp == t2_altstack.ss_sp && now.ss_size == t2_altstack.ss_size &&
               now.ss_flags == t2_altstack.ss_flags,
           "T2: sigaltstack %p+%zu flags %d, want %p+%zu flags %d", now.ss_sp, now.ss_size, now.ss_flags,
           t2_altstack.ss_sp, t2_altstack.ss_size, t2_altstack.ss_flags);
  usr2_stack_addr = 0;
  syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2);
  uintptr_t lo = (uintptr_t)t2_altstack.ss_sp, hi = lo + t2_altstack.ss_size;
  WL_CHECK(usr2_tid == t2.tid, "T2: SIGUSR2 handler ran in %d", (int)usr2_tid);
  WL_CHECK(usr2_stack_addr >= lo && usr2_stack_addr < hi, "T2: SIGUSR2 handler ran on %#lx, not on the altstack",
           (unsigned long)usr2_stack_addr);
  atomic_store(&t2.done, 1);
  return NULL;
}

// ---- helpers for the recorded files ---------------------------------------------------

struct blob {
  char data[65536];
  ssize_t len;
};
static struct blob cmdline0, environ0, auxv0;
static char exe0[PATH_MAX], cwd0[PATH_MAX];

static void read_blob(const char *path, struct blob *b) {
  b->len = wl_read_file(path, b->data, sizeof b->data);
  WL_MUST(b->len >= 0);
}

static void check_blob(const char *path, const struct blob *want) {
  static struct blob now;
  read_blob(path, &now);
  WL_CHECK(now.len == want->len && memcmp(now.data, want->data, (size_t)now.len) == 0,
           "%s changed (%zd bytes, was %zd)", path, now.len, want->len);
}

static unsigned read_umask(void) {
  char buf[4096];
  ssize_t n = wl_read_file("/proc/self/status", buf, sizeof buf - 1);
  if (n < 0) return 0777;
  buf[n] = 0;
  char *p = strstr(buf, "Umask:");
  return p ? (unsigned)strtoul(p + 6, NULL, 8) : 0777;
}

static const char *absolute(const char *path, char out[PATH_MAX]) {
  if (path[0] == '/') return path;
  char here[PATH_MAX];
  WL_MUST(getcwd(here, sizeof here) != NULL);
  snprintf(out, PATH_MAX, "%.2000s/%.2000s", here, path);
  return out;
}

int main(int argc, char **argv) {
  const char *usage = "READY REPORT CWD";
  const char *ready_path = wl_arg(argc, argv, 1, usage);
  const char *report_path = wl_arg(argc, argv, 2, usage);
  const char *cwd = wl_arg(argc, argv, 3, usage);
  // READY and REPORT may be relative to where we started, and we chdir.
  static char ready_abs[PATH_MAX], report_abs[PATH_MAX];
  ready_path = absolute(ready_path, ready_abs);
  report_path = absolute(report_path, report_abs);
  wl_install_trigger();
  prctl(PR_SET_NAME, "attrs-main", 0, 0, 0);

  read_blob("/proc/self/cmdline", &cmdline0);
  read_blob("/proc/self/environ", &environ0);
  read_blob("/proc/self/auxv", &auxv0);
  WL_MUST(readlink("/proc/self/exe", exe0, sizeof exe0 - 1) > 0);
  int persona = personality(0xffffffff);

  // Process attributes.
  umask(027);
  WL_MUST(chdir(cwd) == 0);
  WL_MUST(getcwd(cwd0, sizeof cwd0) != NULL);
  struct rlimit rl;
  rl = (struct rlimit){777, 888};
  WL_MUST(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  rl = (struct rlimit){1 << 20, 2 << 20};
  WL_MUST(setrlimit(RLIMIT_CORE, &rl) == 0);
  rl = (struct rlimit){123456, 234567};
  WL_MUST(setrlimit(RLIMIT_MSGQUEUE, &rl) == 0);
  rl = (struct rlimit){3000, 4000};
  WL_MUST(setrlimit(RLIMIT_SIGPENDING, &rl) == 0);
  struct rlimit limits0[RLIM_NLIMITS];
  for (int r = 0; r < RLIM_NLIMITS; r++) WL_MUST(getrlimit(r, &limits0[r]) == 0);
  WL_MUST(prctl(PR_SET_TIMERSLACK, 54321, 0, 0, 0) == 0);
  WL_MUST(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
  WL_MUST(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);

  // Handlers.
  install(SIGUSR2, NULL, on_usr2, SA_RESTART | SA_ONSTACK, (const int[]){SIGWINCH, SIGRTMIN + 5, 0});
  install(SIGHUP, SIG_IGN, NULL, 0, NULL);
  install(SIGTERM, on_term, NULL, SA_RESETHAND | SA_NODEFER, NULL);
  install(SIGWINCH, on_winch, NULL, SA_RESTART, (const int[]){SIGUSR2, 0});
  install(SIG_T1, NULL, on_rt, 0, NULL);
  install(SIG_SHARED, NULL, on_rt, SA_RESTART, (const int[]){SIGINT, 0});
  struct sigaction actions0[NSIG_MAX];
  int have_action[NSIG_MAX] = {0};
  for (int s = 1; s < NSIG_MAX; s++) have_action[s] = sigaction(s, NULL, &actions0[s]) == 0;

  // Masks: the main thread blocks the shared signal and SIGWINCH.
  sigset_t main_mask;
  sigemptyset(&main_mask);
  sigaddset(&main_mask, SIG_SHARED);
  sigaddset(&main_mask, SIGWINCH);
  sigaddset(&main_mask, SIGPIPE);
  pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
  pthread_sigmask(SIG_BLOCK, NULL, &main_mask);

  pthread_t th1, th2;
  WL_MUST(pthread_create(&th1, NULL, t1_main, NULL) == 0);
  WL_MUST(pthread_create(&th2, NULL, t2_main, NULL) == 0);
  while (!t1.tid || !t2.tid) wl_sleep_ms(1);

  // Pending signals: to T1 with a value, twice to the process, SIGWINCH to main.
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = SIG_T1;
  si.si_code = SI_QUEUE;
  si.si_pid = getpid();
  si.si_uid = getuid();
  si.si_value.sival_int = 1111;
  WL_MUST(syscall(SYS_rt_tgsigqueueinfo, getpid(), t1.tid, SIG_T1, &si) == 0);
  WL_MUST(sigqueue(getpid(), SIG_SHARED, (union sigval){.sival_int = 2222}) == 0);
  WL_MUST(sigqueue(getpid(), SIG_SHARED, (union sigval){.sival_int = 3333}) == 0);
  WL_MUST(syscall(SYS_tgkill, getpid(), gettid(), SIGWINCH) == 0);

  wl_ready(ready_path, "pid=%d tids=%d,%d personality=%#x", (int)getpid(), (int)t1.tid, (int)t2.tid, persona);
  while (!wl_triggered) wl_sleep_ms(10);

  // ---- verify ----
  check_comm("attrs-main");
  check_mask("main", &main_mask);
  stack_t no_altstack;
  WL_CHECK(sigaltstack(NULL, &no_altstack) == 0 && (no_altstack.ss_flags & SS_DISABLE),
           "main: an alternate signal stack appeared (%p+%zu): the restorer's own?", no_altstack.ss_sp,
           no_altstack.ss_size);
  // One line for all the signals whose action changed, with the first as an example.
  char changed[512] = "", example[256] = "";
  size_t used = 0;
  for (int s = 1; s < NSIG_MAX; s++) {
    struct sigaction now;
    int ok = sigaction(s, NULL, &now) == 0;
    if (ok != have_action[s]) {
      wl_fail("sigaction(%d) %s now", s, ok ? "works" : "fails");
    } else if (ok && !same_action(&now, &actions0[s])) {
      used += (size_t)snprintf(changed + used, sizeof changed - used, "%s%d", used ? "," : "", s);
      if (used >= sizeof changed) used = sizeof changed - 1;
      if (!example[0])
        snprintf(example, sizeof example, "signal %d: handler %p flags %#x mask %#llx, want %p flags %#x mask %#llx",
                 s, (void *)now.sa_handler, now.sa_flags, mask_bits(&now.sa_mask), (void *)actions0[s].sa_handler,
                 actions0[s].sa_flags, mask_bits(&actions0[s].sa_mask));
    }
  }
  WL_CHECK(!changed[0], "sigaction of signals %s changed (%s)", changed, example);
  for (int r = 0; r < RLIM_NLIMITS; r++) {
    struct rlimit now;
    getrlimit(r, &now);
    WL_CHECK(now.rlim_cur == limits0[r].rlim_cur && now.rlim_max == limits0[r].rlim_max,
             "rlimit %d is %llu/%llu, want %llu/%llu", r, (unsigned long long)now.rlim_cur,
             (unsigned long long)now.rlim_max, (unsigned long long)limits0[r].rlim_cur,
             (unsigned long long)limits0[r].rlim_max);
  }
  unsigned mask_now = read_umask();
  WL_CHECK(mask_now == 027, "umask %03o, want 027", mask_now);
  char cwd_now[PATH_MAX] = "";
  WL_CHECK(getcwd(cwd_now, sizeof cwd_now) && strcmp(cwd_now, cwd0) == 0, "cwd '%s', want '%s'", cwd_now, cwd0);
  int persona_now = personality(0xffffffff);
  WL_CHECK(persona_now == persona, "personality %#x, want %#x", persona_now, persona);
  WL_CHECK(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == 54321, "timer slack %d", (int)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
  int subreaper = 0;
  prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
  WL_CHECK(subreaper == 1, "child subreaper flag lost");
  WL_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs lost");
  check_blob("/proc/self/cmdline", &cmdline0);
  check_blob("/proc/self/environ", &environ0);
  check_blob("/proc/self/auxv", &auxv0);
  char exe_now[PATH_MAX] = "";
  WL_CHECK(readlink("/proc/self/exe", exe_now, sizeof exe_now - 1) > 0 && strcmp(exe_now, exe0) == 0,
           "/proc/self/exe is '%s', want '%s'", exe_now, exe0);
  // The vDSO clocks still work after the move.
  struct timespec mono1, mono2, real;
  clock_gettime(CLOCK_MONOTONIC, &mono1);
  clock_gettime(CLOCK_REALTIME, &real);
  struct timeval tv;
  gettimeofday(&tv, NULL);
  clock_gettime(CLOCK_MONOTONIC, &mono2);
  WL_CHECK(mono2.tv_sec > mono1.tv_sec || (mono2.tv_sec == mono1.tv_sec && mono2.tv_nsec >= mono1.tv_nsec),
           "CLOCK_MONOTONIC went back");
  long skew = (long)tv.tv_sec - (long)real.tv_sec;
  WL_CHECK(skew >= 0 && skew <= 1 && labs((long)real.tv_sec - (long)time(NULL)) <= 1, "realtime clocks disagree");

  // Pending in main: SIGWINCH (per thread) and two SIGRTMIN+3 (process-wide).
  sigset_t pending;
  sigpending(&pending);
  WL_CHECK(sigismember(&pending, SIGWINCH), "SIGWINCH no longer pending");
  WL_CHECK(sigismember(&pending, SIG_SHARED), "SIGRTMIN+3 no longer pending");

  atomic_store(&t1.go, 1);
  atomic_store(&t2.go, 1);
  while (!atomic_load(&t1.done) || !atomic_load(&t2.done)) wl_sleep_ms(5);
  pthread_join(th1, NULL);
  pthread_join(th2, NULL);

  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGWINCH);
  pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
  WL_CHECK(winch_count == 1, "SIGWINCH delivered %d times after unblock, want 1", (int)winch_count);
  int before = atomic_load(&ndeliveries);
  sigemptyset(&unblock);
  sigaddset(&unblock, SIG_SHARED);
  pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
  int after = atomic_load(&ndeliveries);
  WL_CHECK(after == before + 2, "unblocking SIGRTMIN+3 delivered %d signals, want 2", after - before);
  if (after == before + 2) {
    WL_CHECK(deliveries[before].value == 2222 && deliveries[before + 1].value == 3333,
             "SIGRTMIN+3 values %d, %d, want 2222, 3333", deliveries[before].value, deliveries[before + 1].value);
    WL_CHECK(deliveries[before].signo == SIG_SHARED && deliveries[before + 1].signo == SIG_SHARED,
             "wrong signals delivered (%d, %d)", deliveries[before].signo, deliveries[before + 1].signo);
  }
  // Dispositions act as recorded: SIGHUP ignored, SIGTERM caught once then reset.
  raise(SIGHUP);
  raise(SIGTERM);
  WL_CHECK(term_count == 1, "SIGTERM handler ran %d times", (int)term_count);
  struct sigaction term_now;
  sigaction(SIGTERM, NULL, &term_now);
  WL_CHECK(term_now.sa_handler == SIG_DFL, "SA_RESETHAND did not reset SIGTERM");
  return wl_finish(report_path);
}
