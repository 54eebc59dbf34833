// Memory written all the time, each write logged, for dumps that copy memory
// while the process runs (dump --leave-running).
//
//   scribbler READY REPORT PROGRESS FILE
//
// Maps a private anonymous region, a shared anonymous one and a private
// mapping of FILE, forks a child (which shares the private pages copy-on-write
// until either writes them), says READY, and then both write pages without
// pause, in bursts on 1 ms ticks: write number `seq` goes to a page picked
// from seq (and the writer), fills it with a pattern of (seq, page) whose
// first word is seq, and then the log (an array of the last seq of each
// page, in private memory too) takes it. The parent publishes seq in PROGRESS. On SIGUSR1 each checks,
// between two writes, that every page holds exactly what the log says was
// last written to it, and the log agrees with seq: a page (or a page of the
// log) restored from an earlier moment than the rest shows. The parent
// reports for both.
#include "workload.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define PRIVATE_PAGES 8192  // 32 MiB
#define SHARED_PAGES 64
#define FILE_PAGES 64
#define BURST 32  // writes per tick

struct region {
  const char *name;
  char *mem;
  size_t pages;
  uint64_t *last;  // the seq last written to each page (0: the initial fill)
};

static struct region regions[3];
static uint64_t seq;   // writes so far
static uint64_t salt;  // which pages a write picks: differs between parent and child

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static uint64_t word(uint64_t s, size_t page, size_t i) { return mix(s * 0x9e3779b97f4a7c15ULL + page * 4099 + i) | 1; }

static void fill_page(char *p, uint64_t s, size_t page) {
  uint64_t *w = (uint64_t *)p;
  w[0] = s;
  for (size_t i = 1; i < PAGE / 8; i++) w[i] = word(s, page, i);
}

static void write_one(void) {
  seq++;
  uint64_t h = mix(seq ^ (salt << 40));
  // Mostly the private region (what write tracking covers), now and then
  // the shared one and the file's.
  struct region *r = &regions[h % 16 == 0 && regions[1].pages ? 1 : h % 16 == 1 ? 2 : 0];
  size_t page = (h >> 8) % r->pages;
  fill_page(r->mem + page * PAGE, seq, page);
  r->last[page] = seq;
}

static void check_all(const char *who) {
  uint64_t newest = 0;
  for (int k = 0; k < 3; k++) {
    struct region *r = &regions[k];
    size_t bad = 0;
    for (size_t page = 0; page < r->pages; page++) {
      uint64_t want = r->last[page];
      if (want > newest) newest = want;
      const uint64_t *w = (const uint64_t *)(r->mem + page * PAGE);
      int ok = w[0] == want;
      for (size_t i = 1; ok && i < PAGE / 8; i++) ok = w[i] == word(want, page, i);
      if (!ok && bad++ < 3)
        wl_fail("%s: %s page %zu holds write %lu, the log says %lu", who, r->name, page, (unsigned long)w[0],
                (unsigned long)want);
    }
    if (bad > 3) wl_fail("%s: %s: %zu pages differ from the log", who, r->name, bad);
  }
  WL_CHECK(newest == seq, "%s: the newest write in the log is %lu, seq is %lu", who, (unsigned long)newest,
           (unsigned long)seq);
}

static void run(const char *who, const char *progress_path) {
  double last_progress = 0;
  while (!wl_triggered) {
    for (int i = 0; i < BURST; i++) write_one();
    if (progress_path && wl_now() - last_progress > 0.05) {
      char text[64];
      snprintf(text, sizeof text, "%lu\n", (unsigned long)seq);
      wl_write_file(progress_path, text);
      last_progress = wl_now();
    }
    struct timespec tick = {0, 1000000};
    nanosleep(&tick, NULL);
  }
  check_all(who);
}

static void map_region(struct region *r, const char *name, void *mem, size_t pages) {
  WL_MUST(mem != MAP_FAILED);
  r->name = name;
  r->mem = mem;
  r->pages = pages;
  r->last = mmap(NULL, pages * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(r->last != MAP_FAILED);
  for (size_t page = 0; page < pages; page++) fill_page(r->mem + page * PAGE, 0, page);
}

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  int fd = open(argv[4], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  WL_MUST(fd >= 0 && ftruncate(fd, FILE_PAGES * PAGE) == 0);
  map_region(&regions[0], "private",
             mmap(NULL, PRIVATE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), PRIVATE_PAGES);
  map_region(&regions[1], "shared",
             mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), SHARED_PAGES);
  map_region(&regions[2], "file", mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0),
             FILE_PAGES);
  close(fd);
  wl_install_trigger();
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    // The shared region and its log (which is private) are the parent's to
    // write and check; the private pages stay shared copy-on-write with the
    // parent until either writes one.
    salt = 1;
    regions[1].pages = 0;
    run("child", NULL);
    _exit(wl_fail_count ? 1 : 0);
  }
  wl_ready(argv[1], "child=%d private=%p", (int)child, (void *)regions[0].mem);
  run("parent", argv[3]);
  int status = 0;
  kill(child, SIGUSR1);
  WL_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child found its memory differs from its log (status %d)", status);
  return wl_finish(argv[2]);
}
