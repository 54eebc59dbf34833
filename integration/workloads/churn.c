// churn: threads and children come and go all the time, so a dump meets tasks that
// are being created or are exiting.
//
//   churn READY REPORT PROGRESS [--spawn]
//
// Three threads each loop: create a short-lived thread and join it, fork a child that
// exits with a known status and reap it (with --spawn also posix_spawn /bin/true,
// which uses a CLONE_VFORK child). PROGRESS holds the loop counts. On SIGUSR1 it
// checks that every loop kept going and never saw a wrong status, then reports.
#include "workload.h"

#include <spawn.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define NLOOPS 3

extern char **environ;

static _Atomic uint64_t loops[NLOOPS];
static _Atomic uint64_t short_lived;
static atomic_int stop;
static int want_spawn;

static void *short_thread(void *arg) {
  (void)arg;
  atomic_fetch_add(&short_lived, 1);
  return NULL;
}

static void *loop_main(void *arg) {
  int index = (int)(intptr_t)arg;
  wl_block_trigger();
  while (!atomic_load(&stop)) {
    pthread_t t;
    int e = pthread_create(&t, NULL, short_thread, NULL);
    if (e != 0) {
      wl_fail("loop %d: pthread_create: %s", index, strerror(e));
      break;
    }
    pthread_join(t, NULL);
    pid_t child = fork();
    if (child < 0) {
      wl_fail("loop %d: fork: %s", index, strerror(errno));
      break;
    }
    if (child == 0) _exit(40 + index);
    int status = 0;
    pid_t w;
    while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
    }
    if (w != child || !WIFEXITED(status) || WEXITSTATUS(status) != 40 + index) {
      wl_fail("loop %d: child %d gave status 0x%x (waitpid %d: %s)", index, (int)child, status, (int)w,
              w < 0 ? strerror(errno) : "ok");
      break;
    }
    if (want_spawn) {
      pid_t sp;
      char *args[] = {"/bin/true", NULL};
      e = posix_spawn(&sp, "/bin/true", NULL, NULL, args, environ);
      if (e != 0) {
        wl_fail("loop %d: posix_spawn: %s", index, strerror(e));
        break;
      }
      while ((w = waitpid(sp, &status, 0)) < 0 && errno == EINTR) {
      }
      if (w != sp || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        wl_fail("loop %d: /bin/true gave status 0x%x", index, status);
        break;
      }
    }
    atomic_fetch_add(&loops[index], 1);
    wl_sleep_ms(1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *usage = "READY REPORT PROGRESS [--spawn]";
  const char *ready_path = wl_arg(argc, argv, 1, usage);
  const char *report_path = wl_arg(argc, argv, 2, usage);
  const char *progress_path = wl_arg(argc, argv, 3, usage);
  want_spawn = argc > 4 && !strcmp(argv[4], "--spawn");
  wl_install_trigger();
  pthread_t threads[NLOOPS];
  for (int i = 0; i < NLOOPS; i++) WL_MUST(pthread_create(&threads[i], NULL, loop_main, (void *)(intptr_t)i) == 0);
  int progress = open(progress_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(progress >= 0);
  wl_ready(ready_path, "pid=%d", (int)getpid());
  while (!wl_triggered) {
    char line[256];
    int n = snprintf(line, sizeof line, "%llu %llu %llu", (unsigned long long)atomic_load(&loops[0]),
                     (unsigned long long)atomic_load(&loops[1]), (unsigned long long)atomic_load(&loops[2]));
    memset(line + n, ' ', 127 - (size_t)n);
    line[127] = '\n';
    if (pwrite(progress, line, 128, 0) != 128) wl_fail("progress write: %s", strerror(errno));
    wl_sleep_ms(20);
  }
  uint64_t before[NLOOPS];
  for (int i = 0; i < NLOOPS; i++) before[i] = atomic_load(&loops[i]);
  wl_sleep_ms(300);
  for (int i = 0; i < NLOOPS; i++)
    WL_CHECK(atomic_load(&loops[i]) > before[i], "loop %d stopped at %llu", i, (unsigned long long)before[i]);
  atomic_store(&stop, 1);
  for (int i = 0; i < NLOOPS; i++) pthread_join(threads[i], NULL);
  // Nothing may be left: every child was reaped by its loop.
  int status;
  pid_t w = waitpid(-1, &status, WNOHANG);
  WL_CHECK(w <= 0, "an unexpected child %d was left (status 0x%x)", (int)w, status);
  return wl_finish(report_path);
}
