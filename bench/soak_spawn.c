// soak_spawn REPORT PROG ARGS...: runs PROG, waits for it and writes
// "PID WAIT-STATUS MAXRSS-KIB WALL-NS" to REPORT; exits 0 unless it could not.
//
// bench/soak.py compiles it and runs cryo through it to read cryo's peak RSS: a process
// forked straight from Python starts with Python's RSS as its high-water mark (fork copies
// the pages' count, exec keeps the mark), so its ru_maxrss says nothing under ~13 MiB.
// Forked from this small program, cryo's mark starts near zero.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: soak_spawn REPORT PROG ARGS...\n");
    return 2;
  }
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    perror("soak_spawn: fork");
    return 127;
  }
  if (pid == 0) {
    // The soak kills this process when cryo hangs: cryo goes with it.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    execv(argv[2], argv + 2);
    perror("soak_spawn: exec");
    _exit(127);
  }
  int status;
  struct rusage usage;
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) {
      perror("soak_spawn: wait4");
      return 127;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  long long wall_ns = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
  FILE *report = fopen(argv[1], "w");
  if (!report) {
    perror("soak_spawn: report");
    return 127;
  }
  fprintf(report, "%d %d %ld %lld\n", pid, status, usage.ru_maxrss, wall_ns);
  return fclose(report) == 0 ? 0 : 127;
}
