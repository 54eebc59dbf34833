// Memory that changes between a pre-dump and the dump after it.
//
//   incremental READY REPORT STEPPED
//
// Builds regions of known patterns, says READY, then on SIGUSR2 changes them
// (rewrites some pages, zaps some with MADV_DONTNEED, zeroes one, unmaps a
// region, maps a new one, moves one with mremap, makes part of a region
// read-only, forks a child that writes a page of its own) and writes STEPPED. On SIGUSR1 it checks everything it
// expects (the child checks its own memory too) and reports.
#include "workload.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MIB (1024 * 1024)
#define PAGE 4096
#define A_SIZE (32 * MIB)
#define B_SIZE (4 * MIB)
#define C_SIZE (2 * MIB)
#define E_SIZE (1 * MIB)
#define EVERY 64
#define A_CUT (A_SIZE / PAGE / 2 + 4)  // a page of A no step writes

static char *a, *b, *c, *e, *e_moved;
static pid_t child;

static int wait_signal(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  for (;;) {
    int sig = sigwaitinfo(&set, NULL);
    if (sig > 0) return sig;
  }
}

static int page_zero(const char *p) {
  for (size_t i = 0; i < PAGE; i++)
    if (p[i]) return 0;
  return 1;
}

// The value expected of each page of A after the step.
static void check_a(int stepped, int in_child) {
  for (size_t page = 0; page < A_SIZE / PAGE; page++) {
    char *p = a + page * PAGE;
    if (stepped && ((page >= 100 && page < 104) || page == 200)) {
      WL_CHECK(page_zero(p), "A page %zu is not zero", page);
      continue;
    }
    uint64_t seed = 1;
    if (stepped && page % EVERY == 0) seed = 3;
    if (in_child && page == 1) seed = 6;
    long bad = wl_check_fill(p, PAGE, seed);
    WL_CHECK(bad < 0, "A page %zu (seed %lu) differs at %ld", page, (unsigned long)seed, bad);
  }
}

static void check_moved(void) {
  const uint64_t *p = (const uint64_t *)e_moved;
  for (size_t i = 0; i < E_SIZE / 8; i++)
    if (p[i] != wl_pattern((uintptr_t)(e + i * 8), 5)) {
      wl_fail("moved region differs at %zu", i * 8);
      return;
    }
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  WL_MUST(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
  a = mmap(NULL, A_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  b = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  e = mmap(NULL, E_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(a != MAP_FAILED && b != MAP_FAILED && e != MAP_FAILED);
  wl_fill(a, A_SIZE, 1);
  wl_fill(b, B_SIZE, 2);
  wl_fill(e, E_SIZE, 5);
  int uffd = -1;  // "uffd": the tree holds a userfaultfd of its own
  if (argc > 4 && strcmp(argv[4], "uffd") == 0) WL_MUST((uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1)) >= 0);
  wl_ready(argv[1], "a=%p uffd=%d", (void *)a, uffd);

  int stepped = 0;
  for (;;) {
    int sig = wait_signal();
    if (sig == SIGUSR1) break;
    if (stepped) continue;
    stepped = 1;
    for (size_t page = 0; page < A_SIZE / PAGE; page += EVERY) wl_fill(a + page * PAGE, PAGE, 3);
    WL_MUST(madvise(a + 100 * PAGE, 4 * PAGE, MADV_DONTNEED) == 0);
    memset(a + 200 * PAGE, 0, PAGE);
    WL_MUST(munmap(b, B_SIZE) == 0);
    c = mmap(NULL, C_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(c != MAP_FAILED);
    wl_fill(c, C_SIZE, 4);
    // Away from its old place, which stays a hole.
    e_moved = mmap(NULL, E_SIZE + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    WL_MUST(e_moved != MAP_FAILED);
    e_moved = mremap(e, E_SIZE, E_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, e_moved + PAGE);
    WL_MUST(e_moved != MAP_FAILED);
    // A's second half but its first pages read-only from here on: one
    // mapping becomes two, inside runs the pre-dump stored whole (no page
    // written on either side of the cut: its pages come from the parent).
    WL_MUST(mprotect(a + A_CUT * PAGE, A_SIZE - A_CUT * PAGE, PROT_READ) == 0);
    child = fork();
    WL_MUST(child >= 0);
    if (child == 0) {
      wl_fill(a + PAGE, PAGE, 6);
      wl_write_file(argv[3], "STEPPED\n");
      while (wait_signal() != SIGUSR1) {
      }
      check_a(1, 1);
      _exit(wl_fail_count ? 1 : 0);
    }
  }
  check_a(stepped, 0);
  if (stepped) {
    WL_CHECK(wl_check_fill(c, C_SIZE, 4) < 0, "the region mapped after the pre-dump differs");
    check_moved();
    int status = 0;
    kill(child, SIGUSR1);
    WL_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the child found its memory changed (status %d)", status);
  }
  return wl_finish(argv[2]);
}
