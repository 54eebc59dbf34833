// pty: a terminal of the tree's own, as script, tmux or an sshd session hold it.
//
//   pty READY REPORT PROGRESS [--closed] [--fresh] [--packet] [--unlocked]
//
// The root holds the master of a new pseudo-terminal; its child leads a
// session whose controlling terminal is the slave (like a shell) and puts a
// grandchild in a group of its own in the foreground (like a job). Before
// READY, bytes are left queued both ways: the job wrote a line the root has
// not read, and the root typed input the job has not read yet — a line, a
// line ended by VEOF, one ended by VEOL and an unfinished one. The settings
// are unusual ones (window size, VEOL, IUTF8, the node's mode, exclusive,
// locked), so a default terminal cannot pass.
//
// On SIGUSR1 the root checks the pair (the same /dev/pts/N, settings), reads
// exactly the queued output and echo, lets the job read its input, finishes
// the unfinished line, and the job reports what it saw (its lines, that it
// is in the foreground of its session's controlling terminal) through the
// terminal itself, partly through a /dev/tty fd it opened before the dump.
//
// --closed: the child writes a line and exits; the root holds a master
// whose slave is closed: after restore it reads the line, then EIO.
// --fresh: the master's slave is never opened (cryo refuses that).
// --packet: the master is in packet mode.
// --unlocked: the pair is not locked (a test may open the slave from outside).
// PROGRESS counts the root's loop, as in the other workloads.
#include "workload.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

#define ROWS 37
#define COLS 113
#define VEOL_CHAR '#'
#define OUTPUT "hello from the job\n"
#define INPUT "first line\nsecond\004third#part"
// What the master must read before the job runs: its line (ONLCR) and the
// echo of the input (VEOF is not echoed).
#define QUEUED "hello from the job\r\nfirst line\r\nsecondthird#part"

static int packet_mode;

// Reads what the master has within timeout_ms, dropping packet-mode status bytes.
static size_t read_master(int master, char *buf, size_t size, int timeout_ms) {
  size_t got = 0;
  double until = wl_now() + timeout_ms / 1000.0;
  while (got < size - 1 && wl_now() < until) {
    struct pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0 || !(p.revents & POLLIN)) continue;
    char chunk[4097];
    ssize_t n = read(master, chunk, sizeof chunk);
    if (n <= 0) break;
    size_t skip = packet_mode ? 1 : 0;
    if (packet_mode && chunk[0] != TIOCPKT_DATA) wl_fail("packet status byte %#x", chunk[0]);
    for (ssize_t i = (ssize_t)skip; i < n && got < size - 1; i++) buf[got++] = chunk[i];
  }
  buf[got] = '\0';
  return got;
}

// Reads until `want` has been seen (or timeout); true when it was.
static int expect_master(int master, const char *want, int timeout_ms) {
  char buf[8192];
  size_t got = 0;
  double until = wl_now() + timeout_ms / 1000.0;
  while (wl_now() < until && !strstr(buf, want)) {
    got += read_master(master, buf + got, sizeof buf - got, 50);
    buf[got] = '\0';
  }
  if (strstr(buf, want)) return 1;
  wl_fail("the master read [%s], not [%s]", buf, want);
  return 0;
}

// The job: reads its lines once told (a byte on go), answers through the terminal.
static int job_main(int go, pid_t session) {
  int early_tty = open("/dev/tty", O_RDWR);  // its controlling terminal by that name
  WL_MUST(early_tty >= 0);
  WL_MUST(wl_write_all(1, OUTPUT, strlen(OUTPUT)) == 0);
  char c;
  WL_MUST(read(go, &c, 1) == 1);
  char problems[2048] = "";
  const char *want[] = {"first line\n", "second", "third#", "part end\n"};
  for (int i = 0; i < 4; i++) {
    char line[256];
    ssize_t n = read(0, line, sizeof line - 1);
    line[n > 0 ? n : 0] = '\0';
    if (n < 0 || strcmp(line, want[i]))
      snprintf(problems + strlen(problems), sizeof problems - strlen(problems), "line %d is [%s] ", i, line);
    if (i == 2) WL_MUST(wl_write_all(early_tty, "ask\n", 4) == 0);  // the root then finishes the last line
  }
  if (tcgetpgrp(0) != getpgrp()) snprintf(problems + strlen(problems), 200, "not in the foreground ");
  if (getsid(0) != session || tcgetsid(0) != session) snprintf(problems + strlen(problems), 200, "session ");
  char link[64], target[64] = "";
  snprintf(link, sizeof link, "/proc/self/fd/%d", early_tty);
  if (readlink(link, target, sizeof target - 1) < 0 || strcmp(target, "/dev/tty"))
    snprintf(problems + strlen(problems), 200, "the /dev/tty fd is [%s] ", target);
  int excl = 0;
  if (ioctl(0, TIOCGEXCL, &excl) != 0 || !excl) snprintf(problems + strlen(problems), 200, "not exclusive ");
  int tty = open("/dev/tty", O_RDWR);
  if (tty < 0) snprintf(problems + strlen(problems), 200, "no controlling terminal ");
  struct termios t;
  if (tcgetattr(0, &t) != 0 || t.c_cc[VEOL] != VEOL_CHAR || !(t.c_iflag & IUTF8) || !(t.c_lflag & ECHO))
    snprintf(problems + strlen(problems), 200, "termios ");
  char out[2300];
  snprintf(out, sizeof out, "job %s%s\n", problems[0] ? "FAIL " : "OK", problems);
  WL_MUST(wl_write_all(1, out, strlen(out)) == 0);
  return 0;
}

// The session leader: the slave as controlling terminal and stdio, the job in the foreground.
static int leader_main(const char *slave_name, int go_read) {
  WL_MUST(setsid() == getpid());
  int slave = open(slave_name, O_RDWR);  // a session leader's first terminal becomes its own
  WL_MUST(slave >= 0);
  for (int fd = 0; fd < 3; fd++) WL_MUST(dup2(slave, fd) == fd);
  close(slave);
  struct termios t;
  WL_MUST(tcgetattr(0, &t) == 0);
  t.c_cc[VEOL] = VEOL_CHAR;
  t.c_iflag |= IUTF8;
  WL_MUST(tcsetattr(0, TCSANOW, &t) == 0);
  WL_MUST(ioctl(0, TIOCEXCL) == 0);
  pid_t job = fork();
  WL_MUST(job >= 0);
  if (job == 0) {
    WL_MUST(setpgid(0, 0) == 0);
    _exit(job_main(go_read, getsid(0)));
  }
  setpgid(job, job);
  signal(SIGTTOU, SIG_IGN);
  WL_MUST(tcsetpgrp(0, job) == 0);
  int status;
  while (waitpid(job, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv) {
  const char *usage = "READY REPORT PROGRESS [--closed] [--fresh] [--packet] [--unlocked]";
  const char *ready = wl_arg(argc, argv, 1, usage), *report = wl_arg(argc, argv, 2, usage);
  const char *progress = wl_arg(argc, argv, 3, usage);
  int closed = 0, fresh = 0, unlocked = 0;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--closed")) closed = 1;
    else if (!strcmp(argv[i], "--fresh")) fresh = 1;
    else if (!strcmp(argv[i], "--packet")) packet_mode = 1;
    else if (!strcmp(argv[i], "--unlocked")) unlocked = 1;
  }
  wl_install_trigger();
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  WL_MUST(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0);
  int index = -1;
  WL_MUST(ioctl(master, TIOCGPTN, &index) == 0);
  char slave_name[64];
  snprintf(slave_name, sizeof slave_name, "/dev/pts/%d", index);
  struct winsize ws = {ROWS, COLS, 5, 7};
  WL_MUST(ioctl(master, TIOCSWINSZ, &ws) == 0);
  WL_MUST(chmod(slave_name, 0604) == 0);
  if (packet_mode) WL_MUST(ioctl(master, TIOCPKT, &(int){1}) == 0);
  int go[2];
  WL_MUST(pipe(go) == 0);
  pid_t child = -1;
  if (closed) {
    child = fork();
    WL_MUST(child >= 0);
    if (child == 0) {
      int s = open(slave_name, O_RDWR | O_NOCTTY);
      WL_MUST(s >= 0 && wl_write_all(s, "bye\n", 4) == 0);
      _exit(0);
    }
    WL_MUST(waitpid(child, NULL, 0) == child);
    child = -1;
  } else if (!fresh) {
    child = fork();
    WL_MUST(child >= 0);
    if (child == 0) {
      close(master);
      close(go[1]);
      _exit(leader_main(slave_name, go[0]));
    }
    // Wait until the job is in the foreground and has written its line.
    double until = wl_now() + 10;
    char buf[64];
    int seen = 0;
    while (wl_now() < until && !seen) {
      struct pollfd p = {master, POLLIN, 0};
      seen = poll(&p, 1, 20) == 1 && (p.revents & POLLIN);
      wl_sleep_ms(20);
    }
    WL_MUST(seen);
    (void)buf;
    // The root types its input now, read by nobody before the trigger.
    WL_MUST(wl_write_all(master, INPUT, strlen(INPUT)) == 0);
    wl_sleep_ms(50);
    if (!unlocked) WL_MUST(ioctl(master, TIOCSPTLCK, &(int){1}) == 0);
  }
  close(go[0]);
  wl_ready(ready, "index=%d child=%d", index, (int)child);

  unsigned long count = 0;
  while (!wl_triggered) {
    char text[64];
    snprintf(text, sizeof text, "%lu\n", ++count);
    wl_write_file(progress, text);
    wl_sleep_ms(20);
  }

  int now = -1, value = -1;
  WL_CHECK(ioctl(master, TIOCGPTN, &now) == 0 && now == index, "pts number %d, was %d", now, index);
  struct winsize got;
  WL_CHECK(ioctl(master, TIOCGWINSZ, &got) == 0 && got.ws_row == ROWS && got.ws_col == COLS && got.ws_xpixel == 5 &&
               got.ws_ypixel == 7,
           "window size %dx%d", got.ws_row, got.ws_col);
  struct stat st;
  WL_CHECK(stat(slave_name, &st) == 0 && (st.st_mode & 07777) == 0604, "%s has mode %o", slave_name, st.st_mode & 07777);
  WL_CHECK(ioctl(master, TIOCGPKT, &value) == 0 && value == packet_mode, "packet mode %d", value);
  char buf[8192];
  if (closed) {
    size_t n = read_master(master, buf, sizeof buf, 500);
    WL_CHECK(n == 5 && !memcmp(buf, "bye\r\n", 5), "the master read [%s], not bye", buf);
    struct pollfd p = {master, POLLIN, 0};
    WL_CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLHUP), "no POLLHUP on a master whose slave is closed");
    errno = 0;
    WL_CHECK(read(master, buf, 10) < 0 && errno == EIO, "read of a master whose slave is closed: %s", strerror(errno));
  } else if (!fresh) {
    WL_CHECK(ioctl(master, TIOCGPTLCK, &value) == 0 && value == !unlocked, "the pair's lock is %d", value);
    // Unlocked again: the job opens /dev/tty (a failed open of a slave would mark it TTY_IO_ERROR).
    WL_MUST(ioctl(master, TIOCSPTLCK, &(int){0}) == 0);
    struct termios t;
    WL_CHECK(tcgetattr(master, &t) == 0 && t.c_cc[VEOL] == VEOL_CHAR && (t.c_iflag & IUTF8), "termios of the pair");
    // Exactly the queued output, nothing lost or doubled.
    size_t n = read_master(master, buf, sizeof buf, 300);
    WL_CHECK(n == strlen(QUEUED) && !memcmp(buf, QUEUED, n), "queued on the master: [%s], want [%s]", buf, QUEUED);
    WL_MUST(write(go[1], "g", 1) == 1);
    if (expect_master(master, "ask\r\n", 5000)) {
      WL_MUST(wl_write_all(master, " end\n", 5) == 0);
      expect_master(master, "job OK\r\n", 5000);
    }
    int status = 0;
    WL_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "the session leader ended with %#x", status);
  }
  return wl_finish(report);
}
