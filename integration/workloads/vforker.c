// vforker: a parent blocked in vfork() while its child sleeps (before any exec), the
// state a shell or posix_spawn leaves for a moment, held here for good.
//
//   vforker READY
//
// The child writes READY (raw syscalls only: it shares the parent's memory) and sleeps.
#include "workload.h"

#include <sys/syscall.h>

int main(int argc, char **argv) {
  const char *ready_path = wl_arg(argc, argv, 1, "READY");
  static char text[64];
  int n = snprintf(text, sizeof text, "READY pid=%d\n", (int)getpid());
  pid_t child = vfork();
  if (child == 0) {
    int fd = (int)syscall(SYS_open, ready_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    syscall(SYS_write, fd, text, n);
    syscall(SYS_close, fd);
    struct timespec ts = {100000, 0};
    for (;;) syscall(SYS_nanosleep, &ts, NULL);
  }
  return 0;
}
