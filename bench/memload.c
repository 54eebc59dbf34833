// memload: the bench's workload and its baselines.
//
//   memload hold MIB READY   touch MIB MiB with a pattern, write READY, sleep forever
//   memload memcpy MIB       print {"hot_s":..,"cold_s":..}: memcpy of MIB MiB into memory
//                            already faulted in, and into fresh memory (page faults included)
//   memload write PATH MIB [fsync]
//                            print {"write_s":..}: write() MIB MiB to a new file (from a
//                            buffer in the cache), then fdatasync it if asked (timed too)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *map(size_t len) {
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return p;
}

// Every word different, so no page is all zero (and no page can be deduplicated).
static void fill(char *p, size_t len) {
  uint64_t *w = (uint64_t *)p;
  for (size_t i = 0; i < len / 8; i++) w[i] = (i * 0x9e3779b97f4a7c15ULL) | 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: memload hold MIB READY | memcpy MIB | write PATH MIB [fsync]\n");
    return 2;
  }
  if (!strcmp(argv[1], "hold") && argc == 4) {
    size_t len = (size_t)atol(argv[2]) << 20;
    char *p = len ? map(len) : NULL;
    if (p) fill(p, len);
    FILE *f = fopen(argv[3], "w");
    if (!f) return 1;
    fprintf(f, "READY pid=%d\n", (int)getpid());
    fclose(f);
    for (;;) pause();
  }
  if (!strcmp(argv[1], "memcpy")) {
    // The source is at most 64 MiB (in the cache), copied again and again: the memory the
    // baseline takes is then what a restore of the process takes, not twice that.
    size_t len = (size_t)atol(argv[2]) << 20, part = len < (64 << 20) ? len : 64 << 20;
    char *src = map(part), *dst = map(len);
    fill(src, part);
    double t0 = now();
    for (size_t off = 0; off < len; off += part)  // into fresh memory: faults every page in
      memcpy(dst + off, src, len - off < part ? len - off : part);
    double cold = now() - t0;
    t0 = now();
    for (size_t off = 0; off < len; off += part)  // into memory that is there
      memcpy(dst + off, src, len - off < part ? len - off : part);
    double hot = now() - t0;
    printf("{\"hot_s\":%.6f,\"cold_s\":%.6f,\"check\":%d}\n", hot, cold, dst[len / 2]);
    return 0;
  }
  if (!strcmp(argv[1], "write") && (argc == 4 || (argc == 5 && !strcmp(argv[4], "fsync")))) {
    size_t len = (size_t)atol(argv[3]) << 20, chunk = 1 << 20;
    char *buf = map(chunk);
    fill(buf, chunk);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
      perror(argv[2]);
      return 1;
    }
    double t0 = now();
    for (size_t off = 0; off < len; off += chunk) {
      buf[0] = (char)off;
      if (write(fd, buf, chunk) != (ssize_t)chunk) {
        perror("write");
        return 1;
      }
    }
    if (argc == 5 && fdatasync(fd) < 0) {
      perror("fdatasync");
      return 1;
    }
    double took = now() - t0;
    close(fd);
    printf("{\"write_s\":%.6f}\n", took);
    return 0;
  }
  fprintf(stderr, "memload: bad arguments\n");
  return 2;
}
