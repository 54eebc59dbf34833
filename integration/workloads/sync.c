// sync: threads blocked on futexes across the dump, and a robust mutex.
//
//   sync READY REPORT
//
// Threads wait in pthread_mutex_lock on a robust process-shared mutex held by a child,
// pthread_cond_wait, pthread_cond_timedwait (60 s ahead), sem_wait,
// pthread_barrier_wait, and a raw FUTEX_WAIT with a 60 s relative timeout. On SIGUSR1
// the main thread wakes each of them; the child exits still holding the robust mutex,
// so the waiter must get EOWNERDEAD (the child's robust list must have survived).
#include "workload.h"

#include <linux/futex.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct shared {
  pthread_mutex_t robust;
  atomic_int child_locked;
};

static struct shared *sh;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER, timed_cond = PTHREAD_COND_INITIALIZER;
static int cond_go, timed_go;
static sem_t sem;
static pthread_barrier_t barrier;
static _Atomic uint32_t futex_word;
static atomic_int waiting;

static void *robust_waiter(void *arg) {
  (void)arg;
  wl_block_trigger();
  atomic_fetch_add(&waiting, 1);
  int e = pthread_mutex_lock(&sh->robust);
  WL_CHECK(e == EOWNERDEAD, "robust mutex: lock gave %d (%s), want EOWNERDEAD", e, strerror(e));
  if (e == EOWNERDEAD) pthread_mutex_consistent(&sh->robust);
  if (e == 0 || e == EOWNERDEAD) pthread_mutex_unlock(&sh->robust);
  return NULL;
}

static void *cond_waiter(void *arg) {
  (void)arg;
  wl_block_trigger();
  pthread_mutex_lock(&lock);
  atomic_fetch_add(&waiting, 1);
  while (!cond_go) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void *timed_waiter(void *arg) {
  (void)arg;
  wl_block_trigger();
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 60;
  pthread_mutex_lock(&lock);
  atomic_fetch_add(&waiting, 1);
  int e = 0;
  while (!timed_go && e == 0) e = pthread_cond_timedwait(&timed_cond, &lock, &deadline);
  pthread_mutex_unlock(&lock);
  WL_CHECK(timed_go, "pthread_cond_timedwait returned %d (%s) before the signal", e, strerror(e));
  return NULL;
}

static void *sem_waiter(void *arg) {
  (void)arg;
  wl_block_trigger();
  atomic_fetch_add(&waiting, 1);
  while (sem_wait(&sem) != 0 && errno == EINTR) {
  }
  return NULL;
}

static void *barrier_waiter(void *arg) {
  (void)arg;
  wl_block_trigger();
  atomic_fetch_add(&waiting, 1);
  pthread_barrier_wait(&barrier);
  return NULL;
}

static void *futex_waiter(void *arg) {
  (void)arg;
  wl_block_trigger();
  atomic_fetch_add(&waiting, 1);
  double start = wl_now();
  long r;
  do {
    struct timespec timeout = {60, 0};
    r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &timeout, NULL, 0);
  } while (atomic_load(&futex_word) == 0 && (r == 0 || errno == EINTR || errno == EAGAIN));
  WL_CHECK(atomic_load(&futex_word) == 1, "FUTEX_WAIT ended (%ld, %s) after %.1f s without the wake", r,
           strerror(errno), wl_now() - start);
  return NULL;
}

int main(int argc, char **argv) {
  const char *ready_path = wl_arg(argc, argv, 1, "READY REPORT");
  const char *report_path = wl_arg(argc, argv, 2, "READY REPORT");
  wl_install_trigger();
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  WL_MUST(sh != MAP_FAILED);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  WL_MUST(pthread_mutex_init(&sh->robust, &attr) == 0);
  WL_MUST(sem_init(&sem, 0, 0) == 0);
  WL_MUST(pthread_barrier_init(&barrier, NULL, 2) == 0);

  // The child holds the robust mutex and dies holding it when told to.
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    WL_MUST(pthread_mutex_lock(&sh->robust) == 0);
    atomic_store(&sh->child_locked, 1);
    while (!wl_triggered) wl_sleep_ms(10);
    _exit(0);  // without unlocking: the kernel hands the mutex on with FUTEX_OWNER_DIED
  }
  while (!atomic_load(&sh->child_locked)) wl_sleep_ms(1);

  void *(*mains[])(void *) = {robust_waiter, cond_waiter, timed_waiter, sem_waiter, barrier_waiter, futex_waiter};
  enum { N = sizeof mains / sizeof mains[0] };
  pthread_t threads[N];
  for (int i = 0; i < N; i++) WL_MUST(pthread_create(&threads[i], NULL, mains[i], NULL) == 0);
  while (atomic_load(&waiting) < N) wl_sleep_ms(1);
  wl_sleep_ms(100);  // let them block
  wl_ready(ready_path, "pid=%d child=%d", (int)getpid(), (int)child);
  while (!wl_triggered) wl_sleep_ms(10);

  double start = wl_now();
  kill(child, SIGUSR1);
  int status;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  pthread_mutex_lock(&lock);
  cond_go = timed_go = 1;
  pthread_cond_broadcast(&cond);
  pthread_cond_broadcast(&timed_cond);
  pthread_mutex_unlock(&lock);
  sem_post(&sem);
  pthread_barrier_wait(&barrier);
  atomic_store(&futex_word, 1);
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  const char *names[N] = {"robust mutex", "cond_wait", "cond_timedwait", "sem_wait", "barrier", "futex"};
  for (int i = 0; i < N; i++) {
    // A thread that did not wake within 10 s is reported by name (then we give up on it).
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    int e = pthread_timedjoin_np(threads[i], NULL, &deadline);
    WL_CHECK(e == 0, "the %s waiter did not wake (%s)", names[i], strerror(e));
  }
  WL_CHECK(wl_now() - start < 10, "waking everyone took %.1f s", wl_now() - start);
  return wl_finish(report_path);
}
