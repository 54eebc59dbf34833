// ia32: a 32-bit x86 program with no libc (built by test_unsupported.py with
// clang -m32 -nostdlib -static: Debian's gcc has no 32-bit libraries), which
// appends a count to stdout every 10 ms with int $0x80 syscalls.

// write(2) and nanosleep(2) of the i386 syscall table.
enum { kWrite = 4, kNanosleep = 162 };

static long syscall3(long nr, long a, long b, long c) {
  long ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return ret;
}

void _start(void) {
  struct {
    long sec, nsec;
  } tick = {0, 10 * 1000 * 1000};
  for (unsigned count = 1;; count++) {
    char digits[16], line[16];
    int n = 0, len = 0;
    for (unsigned v = count; v || !n; v /= 10) digits[n++] = (char)('0' + v % 10);
    while (n) line[len++] = digits[--n];
    line[len++] = '\n';
    syscall3(kWrite, 1, (long)line, len);
    syscall3(kNanosleep, (long)&tick, 0, 0);
  }
}
