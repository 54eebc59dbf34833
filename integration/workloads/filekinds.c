// filekinds: open files that have no plain name to reopen them by.
//
//   filekinds READY REPORT WORKDIR KIND
//
// KIND is one of:
//   deleted_dirs     its cwd and an open directory were removed (rmdir) while in use
//   deleted_fifo     a FIFO with 100 unread bytes whose name was unlinked
//   deleted_devices  device nodes made with mknod (/dev/null's and /dev/zero's numbers,
//                    and a block device's) and unlinked while open
//   opath            O_PATH fds: a symlink (O_NOFOLLOW), a file, a directory
//   proc_files       files of /proc of its own and of its child (status, stat, a /proc
//                    directory) and namespace files (/proc/self/ns/net, the child's uts)
//   proc_outside     /proc/1/status: a file of a process outside the tree (refused)
//   reopened_ghost   a deleted file opened a second time through /proc/self/fd/N
//   leases           a read lease and a write lease (F_SETLEASE)
//   ofd_locks        an OFD write lock and an OFD read lock (F_OFD_SETLK)
//   memfd_exec       an executable in a memfd, run with fexecve and through /proc/self/fd
//   devices          devices reopened by path: /dev/kmsg (written to), a misc device
//                    (/dev/loop-control) and a block device (/dev/loop0)
//   stateful_device  /dev/cpu_dma_latency, whose open file holds a request (refused)
//   tty_device       /dev/tty, without a controlling terminal of the tree (refused)
//
// READY carries the fd numbers it holds. On SIGUSR1 it checks that each fd is still
// the file it was (kind, name as /proc shows it, contents, identity) and writes REPORT.
#include "workload.h"

#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>

#ifndef F_OFD_SETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

static const char *workdir;
static char path_buf[4096];

static const char *in_workdir(const char *name) {
  snprintf(path_buf, sizeof path_buf, "%s/%s", workdir, name);
  return path_buf;
}

// Moves fd to number `target` (fixed numbers make the fd tables easy to compare).
static int place(int fd, int target) {
  WL_MUST(fd >= 0);
  if (fd == target) return target;
  WL_MUST(dup3(fd, target, 0) == target);
  close(fd);
  return target;
}

static void read_link(const char *path, char *out, size_t size) {
  ssize_t n = readlink(path, out, size - 1);
  out[n < 0 ? 0 : n] = '\0';
}

static void fd_link(int fd, char *out, size_t size) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  read_link(proc, out, size);
}

// /proc/self/fd/N must read `want`.
static void check_link(int fd, const char *want) {
  char got[4096];
  fd_link(fd, got, sizeof got);
  WL_CHECK(strcmp(got, want) == 0, "fd %d is %s, want %s", fd, got, want);
}

static char expected[16][4096];  // what each fd's link read before the dump

static void remember_link(int slot, int fd) { fd_link(fd, expected[slot], sizeof expected[slot]); }

// ---- deleted_dirs -------------------------------------------------------------------

enum { FD_GONE_DIR = 40 };

static void setup_deleted_dirs(char *ready, size_t size) {
  char cwd_dir[2048], gone[2048];
  snprintf(cwd_dir, sizeof cwd_dir, "%s/cwd.d", workdir);
  snprintf(gone, sizeof gone, "%s/gone.d", workdir);
  WL_MUST(mkdir(cwd_dir, 0750) == 0);
  WL_MUST(mkdir(gone, 0700) == 0);
  WL_MUST(chdir(cwd_dir) == 0);
  place(open(gone, O_RDONLY | O_DIRECTORY), FD_GONE_DIR);
  WL_MUST(rmdir(cwd_dir) == 0);
  WL_MUST(rmdir(gone) == 0);
  snprintf(expected[0], sizeof expected[0], "%s (deleted)", cwd_dir);
  snprintf(expected[1], sizeof expected[1], "%s (deleted)", gone);
  snprintf(ready, size, "fds=%d", FD_GONE_DIR);
}

static void check_removed_dir(const char *what, int dirfd, const char *link, const char *want_link, mode_t mode) {
  struct stat st;
  WL_CHECK(fstat(dirfd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 0, "%s: not a removed directory", what);
  WL_CHECK((st.st_mode & 07777) == mode, "%s: mode %o, want %o", what, st.st_mode & 07777, mode);
  WL_CHECK(strcmp(link, want_link) == 0, "%s is %s, want %s", what, link, want_link);
  // Nothing can be made in a removed directory.
  errno = 0;
  WL_CHECK(openat(dirfd, "new", O_CREAT | O_WRONLY, 0600) < 0 && errno == ENOENT,
           "%s: creating a file in it gave %s", what, strerror(errno));
  char path[4096];
  snprintf(path, sizeof path, "%.*s", (int)(strlen(want_link) - strlen(" (deleted)")), want_link);
  WL_CHECK(access(path, F_OK) != 0, "%s: %s exists again", what, path);
}

static void verify_deleted_dirs(void) {
  char link[4096];
  read_link("/proc/self/cwd", link, sizeof link);
  int here = open(".", O_RDONLY | O_DIRECTORY);
  WL_CHECK(here >= 0, "open . failed: %s", strerror(errno));
  if (here >= 0) check_removed_dir("the cwd", here, link, expected[0], 0750);
  fd_link(FD_GONE_DIR, link, sizeof link);
  check_removed_dir("the open directory", FD_GONE_DIR, link, expected[1], 0700);
  char buf[4096];
  errno = 0;
  WL_CHECK(getcwd(buf, sizeof buf) == NULL && errno == ENOENT, "getcwd in a removed directory gave %s",
           errno ? strerror(errno) : buf);
}

// ---- deleted_fifo -------------------------------------------------------------------

enum { FD_FIFO_RW = 40, FD_FIFO_R = 41, FD_FIFO_W = 42 };
#define FIFO_BYTES 100

static void setup_deleted_fifo(char *ready, size_t size) {
  const char *path = in_workdir("fifo");
  WL_MUST(mkfifo(path, 0640) == 0);
  place(open(path, O_RDONLY | O_NONBLOCK), FD_FIFO_R);
  place(open(path, O_WRONLY), FD_FIFO_W);
  place(open(path, O_RDWR), FD_FIFO_RW);
  char data[FIFO_BYTES];
  for (int i = 0; i < FIFO_BYTES; i++) data[i] = (char)(i * 3 + 1);
  WL_MUST(wl_write_all(FD_FIFO_W, data, sizeof data) == 0);
  remember_link(0, FD_FIFO_RW);
  WL_MUST(unlink(path) == 0);
  snprintf(expected[0] + strlen(expected[0]), sizeof expected[0] - strlen(expected[0]), " (deleted)");
  snprintf(ready, size, "fds=%d,%d,%d", FD_FIFO_RW, FD_FIFO_R, FD_FIFO_W);
}

static void verify_deleted_fifo(void) {
  int fds[] = {FD_FIFO_RW, FD_FIFO_R, FD_FIFO_W};
  struct stat first;
  WL_CHECK(fstat(FD_FIFO_RW, &first) == 0 && S_ISFIFO(first.st_mode) && first.st_nlink == 0, "not a deleted FIFO");
  WL_CHECK((first.st_mode & 07777) == 0640, "the FIFO's mode is %o", first.st_mode & 07777);
  for (int i = 0; i < 3; i++) {
    struct stat st;
    check_link(fds[i], expected[0]);
    WL_CHECK(fstat(fds[i], &st) == 0 && st.st_ino == first.st_ino && st.st_dev == first.st_dev,
             "fd %d is another FIFO than fd %d", fds[i], FD_FIFO_RW);
  }
  char data[FIFO_BYTES + 1];
  ssize_t n = read(FD_FIFO_R, data, sizeof data);
  WL_CHECK(n == FIFO_BYTES, "read %zd buffered bytes, want %d", n, FIFO_BYTES);
  for (int i = 0; i < n && i < FIFO_BYTES; i++)
    if (data[i] != (char)(i * 3 + 1)) {
      wl_fail("buffered byte %d differs", i);
      break;
    }
  // Every end is on the one pipe: what one writes, another reads.
  WL_CHECK(write(FD_FIFO_W, "w", 1) == 1 && read(FD_FIFO_RW, data, 2) == 1 && data[0] == 'w', "W -> RW");
  WL_CHECK(write(FD_FIFO_RW, "x", 1) == 1 && read(FD_FIFO_R, data, 2) == 1 && data[0] == 'x', "RW -> R");
}

// ---- deleted_devices ----------------------------------------------------------------

enum { FD_DEV_NULL = 40, FD_DEV_ZERO = 41, FD_DEV_BLOCK = 42 };

static void setup_deleted_devices(char *ready, size_t size) {
  WL_MUST(mknod(in_workdir("null"), S_IFCHR | 0620, makedev(1, 3)) == 0);
  WL_MUST(chmod(path_buf, 0620) == 0);  // past the umask
  place(open(path_buf, O_RDWR), FD_DEV_NULL);
  remember_link(0, FD_DEV_NULL);
  WL_MUST(unlink(path_buf) == 0);
  WL_MUST(mknod(in_workdir("zero"), S_IFCHR | 0400, makedev(1, 5)) == 0);
  place(open(path_buf, O_RDONLY), FD_DEV_ZERO);
  remember_link(1, FD_DEV_ZERO);
  WL_MUST(unlink(path_buf) == 0);
  WL_MUST(mknod(in_workdir("loop"), S_IFBLK | 0600, makedev(7, 0)) == 0);
  place(open(path_buf, O_RDONLY), FD_DEV_BLOCK);
  remember_link(2, FD_DEV_BLOCK);
  WL_MUST(unlink(path_buf) == 0);
  for (int i = 0; i < 3; i++) strcat(expected[i], " (deleted)");
  snprintf(ready, size, "fds=%d,%d,%d", FD_DEV_NULL, FD_DEV_ZERO, FD_DEV_BLOCK);
}

static void check_device(int fd, int slot, mode_t type, unsigned maj, unsigned min, mode_t mode) {
  struct stat st;
  check_link(fd, expected[slot]);
  WL_CHECK(fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == type && st.st_nlink == 0, "fd %d: not a deleted node", fd);
  WL_CHECK(major(st.st_rdev) == maj && minor(st.st_rdev) == min, "fd %d is device %u:%u, want %u:%u", fd,
           major(st.st_rdev), minor(st.st_rdev), maj, min);
  WL_CHECK((st.st_mode & 07777) == mode, "fd %d: mode %o, want %o", fd, st.st_mode & 07777, mode);
}

static void verify_deleted_devices(void) {
  check_device(FD_DEV_NULL, 0, S_IFCHR, 1, 3, 0620);
  check_device(FD_DEV_ZERO, 1, S_IFCHR, 1, 5, 0400);
  check_device(FD_DEV_BLOCK, 2, S_IFBLK, 7, 0, 0600);
  WL_CHECK(write(FD_DEV_NULL, "abc", 3) == 3, "write to the null device: %s", strerror(errno));
  char buf[8] = "xxxxxxx";
  WL_CHECK(read(FD_DEV_ZERO, buf, sizeof buf) == sizeof buf && buf[0] == 0 && buf[7] == 0, "read the zero device");
  WL_CHECK((fcntl(FD_DEV_ZERO, F_GETFL) & O_ACCMODE) == O_RDONLY, "the zero device is not read-only");
}

// ---- opath --------------------------------------------------------------------------

enum { FD_PATH_LINK = 40, FD_PATH_FILE = 41, FD_PATH_DIR = 42, FD_PATH_DANGLING = 43 };

static void setup_opath(char *ready, size_t size) {
  WL_MUST(symlink("../somewhere/else", in_workdir("link")) == 0);
  place(open(path_buf, O_PATH | O_NOFOLLOW), FD_PATH_LINK);
  WL_MUST(symlink("file", in_workdir("filelink")) == 0);
  wl_write_file(in_workdir("file"), "file contents");
  place(open(path_buf, O_PATH), FD_PATH_FILE);
  WL_MUST(mkdir(in_workdir("dir"), 0755) == 0);
  wl_write_file(in_workdir("dir/inner"), "inner");
  place(open(in_workdir("dir"), O_PATH | O_DIRECTORY), FD_PATH_DIR);
  // A symlink to a file that is not there, held through the symlink itself.
  WL_MUST(symlink("/no/such/target", in_workdir("dangling")) == 0);
  place(open(path_buf, O_PATH | O_NOFOLLOW), FD_PATH_DANGLING);
  WL_MUST(fcntl(FD_PATH_DANGLING, F_SETFD, FD_CLOEXEC) == 0);
  remember_link(0, FD_PATH_LINK);
  remember_link(1, FD_PATH_FILE);
  remember_link(2, FD_PATH_DIR);
  remember_link(3, FD_PATH_DANGLING);
  snprintf(ready, size, "fds=%d,%d,%d,%d", FD_PATH_LINK, FD_PATH_FILE, FD_PATH_DIR, FD_PATH_DANGLING);
}

static void verify_opath(void) {
  int fds[] = {FD_PATH_LINK, FD_PATH_FILE, FD_PATH_DIR, FD_PATH_DANGLING};
  for (int i = 0; i < 4; i++) {
    check_link(fds[i], expected[i]);
    int fl = fcntl(fds[i], F_GETFL);
    WL_CHECK(fl >= 0 && (fl & O_PATH), "fd %d is not O_PATH (flags %o)", fds[i], fl);
  }
  WL_CHECK((fcntl(FD_PATH_DANGLING, F_GETFD) & FD_CLOEXEC) != 0, "fd %d lost FD_CLOEXEC", FD_PATH_DANGLING);
  struct stat st;
  char target[256];
  ssize_t n;
  WL_CHECK(fstat(FD_PATH_LINK, &st) == 0 && S_ISLNK(st.st_mode), "fd %d is not a symlink", FD_PATH_LINK);
  n = readlinkat(FD_PATH_LINK, "", target, sizeof target - 1);
  target[n < 0 ? 0 : n] = '\0';
  WL_CHECK(strcmp(target, "../somewhere/else") == 0, "the symlink reads '%s'", target);
  n = readlinkat(FD_PATH_DANGLING, "", target, sizeof target - 1);
  target[n < 0 ? 0 : n] = '\0';
  WL_CHECK(strcmp(target, "/no/such/target") == 0, "the dangling symlink reads '%s'", target);
  WL_CHECK(fstat(FD_PATH_FILE, &st) == 0 && S_ISREG(st.st_mode), "fd %d is not the file", FD_PATH_FILE);
  char proc[64], buf[64] = "";
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", FD_PATH_FILE);
  wl_read_file(proc, buf, sizeof buf - 1);
  WL_CHECK(strcmp(buf, "file contents") == 0, "the file reads '%s'", buf);
  WL_CHECK(fstatat(FD_PATH_DIR, "inner", &st, 0) == 0 && S_ISREG(st.st_mode), "no inner file through fd %d",
           FD_PATH_DIR);
}

// ---- proc_files / proc_outside ------------------------------------------------------

enum { FD_PROC_STATUS = 40, FD_PROC_CHILD_STAT = 41, FD_PROC_NET = 42, FD_PROC_CHILD_UTS = 43, FD_PROC_DIR = 44,
       FD_PROC_MNT = 45, FD_PROC_OUTSIDE = 46 };
static pid_t child;

static void setup_proc_files(char *ready, size_t size) {
  int go[2];
  WL_MUST(pipe(go) == 0);
  child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    char c;
    close(go[1]);
    while (read(go[0], &c, 1) != 0) {  // ends when the parent closes its end (or dies)
    }
    _exit(0);
  }
  close(go[0]);
  place(go[1], 39);
  char path[64];
  place(open("/proc/self/status", O_RDONLY), FD_PROC_STATUS);
  snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
  place(open(path, O_RDONLY), FD_PROC_CHILD_STAT);
  place(open("/proc/self/ns/net", O_RDONLY), FD_PROC_NET);
  snprintf(path, sizeof path, "/proc/%d/ns/uts", (int)child);
  place(open(path, O_RDONLY), FD_PROC_CHILD_UTS);
  place(open("/proc/thread-self", O_RDONLY | O_DIRECTORY), FD_PROC_DIR);
  place(open("/proc/self/ns/mnt", O_PATH), FD_PROC_MNT);
  for (int i = 0; i < 6; i++) remember_link(i, FD_PROC_STATUS + i);
  snprintf(ready, size, "child=%d fds=%d,%d,%d,%d,%d,%d", (int)child, FD_PROC_STATUS, FD_PROC_CHILD_STAT,
           FD_PROC_NET, FD_PROC_CHILD_UTS, FD_PROC_DIR, FD_PROC_MNT);
}

static void setup_proc_outside(char *ready, size_t size) {
  place(open("/proc/1/status", O_RDONLY), FD_PROC_OUTSIDE);
  snprintf(ready, size, "object_fd=%d", FD_PROC_OUTSIDE);
}

static void same_ns(int fd, const char *path) {
  struct stat a, b;
  WL_CHECK(fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
           "fd %d is not the namespace of %s", fd, path);
}

static void verify_proc_files(void) {
  for (int i = 0; i < 6; i++) check_link(FD_PROC_STATUS + i, expected[i]);
  char text[8192] = "", want[64];
  ssize_t n = pread(FD_PROC_STATUS, text, sizeof text - 1, 0);
  text[n < 0 ? 0 : n] = '\0';
  snprintf(want, sizeof want, "\nPid:\t%d\n", (int)getpid());
  WL_CHECK(strstr(text, want) != NULL, "fd %d does not read this process's status", FD_PROC_STATUS);
  n = pread(FD_PROC_CHILD_STAT, text, sizeof text - 1, 0);
  text[n < 0 ? 0 : n] = '\0';
  snprintf(want, sizeof want, "%d (filekinds) S %d ", (int)child, (int)getpid());
  WL_CHECK(strncmp(text, want, strlen(want)) == 0, "fd %d reads '%.40s', want '%s...'", FD_PROC_CHILD_STAT, text, want);
  same_ns(FD_PROC_NET, "/proc/self/ns/net");
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/uts", (int)child);
  same_ns(FD_PROC_CHILD_UTS, path);
  same_ns(FD_PROC_MNT, "/proc/self/ns/mnt");
  WL_CHECK(setns(FD_PROC_NET, CLONE_NEWNET) == 0, "setns through fd %d: %s", FD_PROC_NET, strerror(errno));
  int comm = openat(FD_PROC_DIR, "comm", O_RDONLY);
  n = comm < 0 ? -1 : read(comm, text, sizeof text - 1);
  text[n < 0 ? 0 : n] = '\0';
  WL_CHECK(strcmp(text, "filekinds\n") == 0, "comm through fd %d reads '%s'", FD_PROC_DIR, text);
  close(39);
  int status;
  WL_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child");
}

// ---- reopened_ghost -----------------------------------------------------------------

enum { FD_GHOST = 40, FD_GHOST_AGAIN = 41, FD_GHOST_DUP = 42 };

static void setup_reopened_ghost(char *ready, size_t size) {
  place(open(in_workdir("ghost"), O_RDWR | O_CREAT, 0640), FD_GHOST);
  WL_MUST(wl_write_all(FD_GHOST, "first part", 10) == 0);
  place(open("/proc/self/fd/40", O_RDONLY), FD_GHOST_AGAIN);
  WL_MUST(unlink(path_buf) == 0);
  place(open("/proc/self/fd/40", O_WRONLY | O_APPEND), FD_GHOST_DUP);  // a third description, after the unlink
  WL_MUST(lseek(FD_GHOST_AGAIN, 6, SEEK_SET) == 6);
  remember_link(0, FD_GHOST);
  snprintf(ready, size, "fds=%d,%d,%d", FD_GHOST, FD_GHOST_AGAIN, FD_GHOST_DUP);
}

static void verify_reopened_ghost(void) {
  struct stat a, b, c;
  for (int fd = FD_GHOST; fd <= FD_GHOST_DUP; fd++) check_link(fd, expected[0]);
  WL_CHECK(fstat(FD_GHOST, &a) == 0 && fstat(FD_GHOST_AGAIN, &b) == 0 && fstat(FD_GHOST_DUP, &c) == 0, "fstat");
  WL_CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_ino == c.st_ino, "the descriptions name two files");
  WL_CHECK(a.st_nlink == 0, "the file has %lu links", (unsigned long)a.st_nlink);
  WL_CHECK(lseek(FD_GHOST, 0, SEEK_CUR) == 10 && lseek(FD_GHOST_AGAIN, 0, SEEK_CUR) == 6, "offsets");
  WL_CHECK(wl_write_all(FD_GHOST_DUP, "+more", 5) == 0, "append");
  char buf[32] = "";
  ssize_t n = read(FD_GHOST_AGAIN, buf, sizeof buf - 1);
  buf[n < 0 ? 0 : n] = '\0';
  WL_CHECK(strcmp(buf, "part+more") == 0, "the second description reads '%s'", buf);
}

// ---- leases / ofd_locks -------------------------------------------------------------

enum { FD_LEASE_READ = 40, FD_LEASE_WRITE = 41, FD_OFD_WRITE = 42, FD_OFD_READ = 43 };

static void setup_leases(char *ready, size_t size) {
  wl_write_file(in_workdir("read-leased"), "r");
  place(open(path_buf, O_RDONLY), FD_LEASE_READ);
  WL_MUST(fcntl(FD_LEASE_READ, F_SETLEASE, F_RDLCK) == 0);
  wl_write_file(in_workdir("write-leased"), "w");
  place(open(path_buf, O_RDWR), FD_LEASE_WRITE);
  WL_MUST(fcntl(FD_LEASE_WRITE, F_SETLEASE, F_WRLCK) == 0);
  snprintf(ready, size, "fds=%d,%d", FD_LEASE_READ, FD_LEASE_WRITE);
}

static volatile sig_atomic_t lease_breaks;
static void on_lease_break(int sig) {
  (void)sig;
  lease_breaks++;
}

static void verify_leases(void) {
  WL_CHECK(fcntl(FD_LEASE_READ, F_GETLEASE) == F_RDLCK, "the read lease is %d", fcntl(FD_LEASE_READ, F_GETLEASE));
  WL_CHECK(fcntl(FD_LEASE_WRITE, F_GETLEASE) == F_WRLCK, "the write lease is %d", fcntl(FD_LEASE_WRITE, F_GETLEASE));
  // The holder is told (SIGIO) when another process opens the file it leased for writing.
  signal(SIGIO, on_lease_break);
  pid_t opener = fork();
  if (opener == 0) {
    int fd = open(in_workdir("write-leased"), O_RDONLY | O_NONBLOCK);
    _exit(fd < 0 && errno == EWOULDBLOCK ? 0 : 1);
  }
  int status;
  WL_CHECK(waitpid(opener, &status, 0) == opener && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "another process opened the write-leased file without breaking the lease");
  for (int i = 0; i < 100 && !lease_breaks; i++) wl_sleep_ms(10);
  WL_CHECK(lease_breaks > 0, "no SIGIO for the lease break");
}

static void setup_ofd_locks(char *ready, size_t size) {
  wl_write_file(in_workdir("ofd-w"), "0123456789");
  place(open(path_buf, O_RDWR), FD_OFD_WRITE);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 2, .l_len = 5};
  WL_MUST(fcntl(FD_OFD_WRITE, F_OFD_SETLK, &fl) == 0);
  wl_write_file(in_workdir("ofd-r"), "0123456789");
  place(open(path_buf, O_RDONLY), FD_OFD_READ);
  struct flock rl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  WL_MUST(fcntl(FD_OFD_READ, F_OFD_SETLK, &rl) == 0);
  snprintf(ready, size, "fds=%d,%d", FD_OFD_WRITE, FD_OFD_READ);
}

// What another open file description of the file sees when it asks for a lock.
static short conflicting(const char *name, short type, off_t start, off_t len, off_t *got_start, off_t *got_len) {
  int fd = open(in_workdir(name), O_RDWR);
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fd < 0 || fcntl(fd, F_OFD_GETLK, &fl) < 0) return -1;
  close(fd);
  *got_start = fl.l_start;
  *got_len = fl.l_len;
  return fl.l_type;
}

static void verify_ofd_locks(void) {
  off_t start = 0, len = 0;
  WL_CHECK(conflicting("ofd-w", F_RDLCK, 0, 0, &start, &len) == F_WRLCK && start == 2 && len == 5,
           "the OFD write lock on bytes 2-6 is gone (start %ld len %ld)", (long)start, (long)len);
  WL_CHECK(conflicting("ofd-w", F_WRLCK, 7, 3, &start, &len) == F_UNLCK, "bytes 7-9 are locked");
  WL_CHECK(conflicting("ofd-r", F_WRLCK, 0, 0, &start, &len) == F_RDLCK, "the OFD read lock is gone");
  WL_CHECK(conflicting("ofd-r", F_RDLCK, 0, 0, &start, &len) == F_UNLCK, "the read lock excludes readers");
  // The holder's own description may change its lock: it is the owner.
  struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  WL_CHECK(fcntl(FD_OFD_WRITE, F_OFD_SETLK, &fl) == 0, "unlock: %s", strerror(errno));
  WL_CHECK(conflicting("ofd-w", F_WRLCK, 0, 0, &start, &len) == F_UNLCK, "still locked after the owner unlocked");
}

// ---- memfd_exec ---------------------------------------------------------------------

enum { FD_EXEC_RO = 40, FD_EXEC_SEALED = 41, FD_EXEC_WRITER = 42, FD_EXEC_LATER = 43, FD_PIPE_R = 44, FD_PIPE_W = 45 };

static int copy_to_memfd(const char *src, unsigned flags) {
  int in = open(src, O_RDONLY);
  WL_MUST(in >= 0);
  int mem = (int)syscall(SYS_memfd_create, "tool", flags);
  WL_MUST(mem >= 0);
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) WL_MUST(wl_write_all(mem, buf, (size_t)n) == 0);
  close(in);
  return mem;
}

// Runs the memfd's program (true) in a child: by fexecve, or by the /proc/self/fd path.
static int run_memfd(int fd, int by_path) {
  pid_t p = fork();
  if (p == 0) {
    char *argv[] = {"true", NULL}, *envp[] = {NULL};
    if (by_path) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      execve(path, argv, envp);
    } else {
      fexecve(fd, argv, envp);
    }
    _exit(100 + errno);
  }
  int status = 0;
  if (waitpid(p, &status, 0) != p) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

static void setup_memfd_exec(char *ready, size_t size) {
  // The usual way: write the program, then keep only a read-only description.
  int mem = copy_to_memfd("/bin/true", MFD_CLOEXEC);
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", mem);
  place(open(proc, O_RDONLY | O_CLOEXEC), FD_EXEC_RO);
  close(mem);
  // Or seal it against writes (no writable mapping or fd may remain).
  mem = copy_to_memfd("/bin/true", MFD_ALLOW_SEALING);
  WL_MUST(fcntl(mem, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", mem);
  place(open(proc, O_RDONLY), FD_EXEC_SEALED);
  close(mem);
  WL_MUST(run_memfd(FD_EXEC_RO, 0) == 0);
  WL_MUST(run_memfd(FD_EXEC_SEALED, 1) == 0);
  // Still being written at the dump: its writer is closed only after the restore,
  // and then it must run (no writable description of it may be left anywhere).
  place(copy_to_memfd("/bin/true", 0), FD_EXEC_WRITER);
  place(open("/proc/self/fd/42", O_RDONLY), FD_EXEC_LATER);
  // Likewise a pipe whose write end it closes after the restore: its reader sees EOF.
  int ends[2];
  WL_MUST(pipe2(ends, O_NONBLOCK) == 0);
  place(ends[0], FD_PIPE_R);
  place(ends[1], FD_PIPE_W);
  snprintf(ready, size, "fds=%d,%d,%d,%d", FD_EXEC_RO, FD_EXEC_SEALED, FD_EXEC_WRITER, FD_EXEC_LATER);
}

static void verify_memfd_exec(void) {
  int fds[] = {FD_EXEC_RO, FD_EXEC_SEALED};
  for (int i = 0; i < 2; i++)
    for (int by_path = 0; by_path < 2; by_path++) {
      int got = run_memfd(fds[i], by_path);
      WL_CHECK(got == 0, "running the memfd at fd %d %s: %s", fds[i], by_path ? "by its path" : "with fexecve",
               got > 100 && got < 200 ? strerror(got - 100) : "it failed");
    }
  close(FD_EXEC_WRITER);
  int got = run_memfd(FD_EXEC_LATER, 0);
  WL_CHECK(got == 0, "running the memfd once its writer is closed: %s",
           got > 100 && got < 200 ? strerror(got - 100) : "it failed");
  close(FD_PIPE_W);
  char c;
  errno = 0;
  WL_CHECK(read(FD_PIPE_R, &c, 1) == 0, "no end of file on a pipe whose only writer is closed: %s", strerror(errno));
}

// ---- devices / tty_device -----------------------------------------------------------

enum { FD_KMSG = 40, FD_LOOP_CONTROL = 41, FD_LOOP0 = 42, FD_CPU_LATENCY = 43, FD_TTY = 44 };

static void setup_devices(char *ready, size_t size) {
  place(open("/dev/kmsg", O_WRONLY), FD_KMSG);  // a logger's (a reader is refused: its place in the log is lost)
  place(open("/dev/loop-control", O_RDWR), FD_LOOP_CONTROL);
  place(open("/dev/loop0", O_RDONLY), FD_LOOP0);
  for (int i = 0; i < 3; i++) remember_link(i, FD_KMSG + i);
  snprintf(ready, size, "fds=%d,%d,%d", FD_KMSG, FD_LOOP_CONTROL, FD_LOOP0);
}

static void verify_devices(void) {
  for (int i = 0; i < 3; i++) check_link(FD_KMSG + i, expected[i]);
  struct stat st;
  WL_CHECK(fstat(FD_LOOP_CONTROL, &st) == 0 && st.st_rdev == makedev(10, 237), "loop-control");
  WL_CHECK(fstat(FD_LOOP0, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == makedev(7, 0), "loop0");
  WL_CHECK((fcntl(FD_KMSG, F_GETFL) & O_ACCMODE) == O_WRONLY, "/dev/kmsg is not open for writing");
}

static void setup_stateful_device(char *ready, size_t size) {
  // Its open file holds a latency request of its own: a new open would not have it.
  place(open("/dev/cpu_dma_latency", O_RDWR), FD_CPU_LATENCY);
  snprintf(ready, size, "object_fd=%d", FD_CPU_LATENCY);
}

static void setup_tty_device(char *ready, size_t size) {
  // The test gives it a controlling terminal of its own (a pty whose master it does
  // not hold), as a shell job has.
  place(open("/dev/tty", O_RDWR), FD_TTY);
  snprintf(ready, size, "object_fd=%d", FD_TTY);
}

// ---- main ---------------------------------------------------------------------------

struct kind {
  const char *name;
  void (*setup)(char *ready, size_t size);
  void (*verify)(void);
};

static const struct kind kinds[] = {
    {"deleted_dirs", setup_deleted_dirs, verify_deleted_dirs},
    {"deleted_fifo", setup_deleted_fifo, verify_deleted_fifo},
    {"deleted_devices", setup_deleted_devices, verify_deleted_devices},
    {"opath", setup_opath, verify_opath},
    {"proc_files", setup_proc_files, verify_proc_files},
    {"proc_outside", setup_proc_outside, NULL},
    {"reopened_ghost", setup_reopened_ghost, verify_reopened_ghost},
    {"leases", setup_leases, verify_leases},
    {"ofd_locks", setup_ofd_locks, verify_ofd_locks},
    {"memfd_exec", setup_memfd_exec, verify_memfd_exec},
    {"devices", setup_devices, verify_devices},
    {"tty_device", setup_tty_device, NULL},
    {"stateful_device", setup_stateful_device, NULL},
};

int main(int argc, char **argv) {
  const char *usage = "READY REPORT WORKDIR KIND";
  const char *ready_path = wl_arg(argc, argv, 1, usage);
  const char *report_path = wl_arg(argc, argv, 2, usage);
  workdir = wl_arg(argc, argv, 3, usage);
  const char *name = wl_arg(argc, argv, 4, usage);
  const struct kind *k = NULL;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(kinds[i].name, name) == 0) k = &kinds[i];
  if (!k) {
    fprintf(stderr, "unknown kind %s\n", name);
    return 2;
  }
  wl_install_trigger();
  char ready[1024] = "";
  k->setup(ready, sizeof ready);
  wl_ready(ready_path, "pid=%d %s", (int)getpid(), ready);
  while (!wl_triggered) pause();
  if (k->verify) k->verify();
  return wl_finish(report_path);
}
