// remapper: a process whose mappings change without pause while it runs, for
// a dump that reads some of them before the freeze (dump -R: smaps read while
// the tree runs serves the frozen dump only if the mappings are still those).
//
//   remapper READY REPORT PROGRESS MIB CHURN
//
// Holds MIB MiB whose pages it keeps writing (each write counted in the page
// it lands in), and a ring of small regions it keeps replacing: it unmaps the
// oldest, maps a new one with MAP_NORESERVE (VmFlags "nr": set by mmap, shown
// only by smaps) and fills it with a pattern of its own, one region every
// 100 us, for as long as the file CHURN exists (a restored copy stops at its
// next region, keeping those of the image). Writes the number of regions
// made so far to PROGRESS now and then. On SIGUSR1: every region holds its pattern and its mapping shows "nr", and
// the page counts add up to the writes made.
#include <sys/mman.h>

#include "workload.h"

#define SLOTS 15  // odd: a slot's regions alternate their flags
#define REGION_PAGES 7
#define PAGE 4096

struct region {
  uint64_t *addr;
  uint64_t serial;
};

static volatile sig_atomic_t triggered;
static void on_trigger(int sig) { (void)sig; triggered = 1; }

static uint64_t pattern(uint64_t serial, size_t word) { return (serial << 20) ^ (word * 0x9e3779b97f4a7c15ULL); }

// The VmFlags of the mapping holding addr, from /proc/self/smaps.
static int flags_of(uint64_t addr, char *flags, size_t size) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int inside = 0, found = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = addr >= start && addr < end;
    } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      size_t len = strlen(line + 8);
      if (len >= size) len = size - 1;
      memcpy(flags, line + 8, len);
      flags[len] = 0;
      found = 0;
      break;
    }
  }
  fclose(f);
  return found;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: remapper READY REPORT PROGRESS MIB CHURN\n");
    return 2;
  }
  const char *ready = argv[1], *report = argv[2], *progress = argv[3], *churn = argv[5];
  size_t pages = (size_t)atol(argv[4]) * 256;
  uint64_t *big = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(big != MAP_FAILED);
  for (size_t p = 0; p < pages; p++) {
    big[p * 512] = p;
    big[p * 512 + 1] = 0;
  }
  // The count goes into one file, open all along, in place (fixed width): a
  // temporary file renamed over it each time would be open under its
  // temporary name whenever a dump -R caught it writing, and the original,
  // running on, renames it away before the restore opens it again.
  int progress_fd = open(progress, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WL_MUST(progress_fd >= 0);
  struct sigaction sa = {0};
  sa.sa_handler = on_trigger;
  WL_MUST(sigaction(SIGUSR1, &sa, NULL) == 0);
  static struct region ring[SLOTS];
  uint64_t made = 0, writes = 0, seed = 88172645463325252ULL;
  wl_ready(ready, "pid=%d", (int)getpid());
  while (!triggered) {
    if (access(churn, F_OK) != 0) {  // until the trigger
      struct timespec wait = {0, 10000000};
      nanosleep(&wait, NULL);
      continue;
    }
    struct region *r = &ring[made % SLOTS];
    if (r->addr) WL_MUST(munmap(r->addr, REGION_PAGES * PAGE) == 0);
    int noreserve = made % 2 == 0 ? MAP_NORESERVE : 0;
    r->addr = mmap(NULL, REGION_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | noreserve, -1, 0);
    WL_MUST(r->addr != MAP_FAILED);
    r->serial = made++;
    for (size_t w = 0; w < REGION_PAGES * PAGE / 8; w++) r->addr[w] = pattern(r->serial, w);
    for (int i = 0; i < 8; i++) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      big[(seed % pages) * 512 + 1]++;
      writes++;
    }
    if (made % 64 == 0) {
      char text[32];
      int len = snprintf(text, sizeof text, "%020lu\n", (unsigned long)made);
      WL_MUST(pwrite(progress_fd, text, (size_t)len, 0) == len);
    }
    struct timespec pause = {0, 100000};
    nanosleep(&pause, NULL);
  }

  for (int s = 0; s < SLOTS; s++) {
    struct region *r = &ring[s];
    if (!r->addr) continue;
    size_t wrong = 0;
    for (size_t w = 0; w < REGION_PAGES * PAGE / 8; w++) wrong += r->addr[w] != pattern(r->serial, w);
    WL_CHECK(wrong == 0, "region %lu at %p: %zu words not its pattern", (unsigned long)r->serial, (void *)r->addr, wrong);
    char flags[256] = "";
    WL_CHECK(flags_of((uint64_t)r->addr, flags, sizeof flags) == 0, "region at %p: not in smaps", (void *)r->addr);
    int want = r->serial % 2 == 0, has = strstr(flags, " nr") != NULL;
    WL_CHECK(has == want, "region %lu at %p: VmFlags%s %s nr (mapped %s MAP_NORESERVE)", (unsigned long)r->serial,
             (void *)r->addr, strtok(flags, "\n"), has ? "with" : "without", want ? "with" : "without");
  }
  uint64_t counted = 0;
  size_t moved = 0;
  for (size_t p = 0; p < pages; p++) {
    counted += big[p * 512 + 1];
    moved += big[p * 512] != p;
  }
  WL_CHECK(moved == 0, "%zu pages of the big mapping are not where they were", moved);
  WL_CHECK(counted == writes, "the pages count %lu writes, %lu were made", (unsigned long)counted,
           (unsigned long)writes);
  return wl_finish(report);
}
