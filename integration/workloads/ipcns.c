// Objects of an IPC namespace of its own (run under `unshare --ipc`): System V
// segments (one attached, one not, one removed while attached), a semaphore
// set, a message queue with messages of several types, a POSIX message queue
// with messages of several priorities, and some of the namespace's sysctls.
// A child shares the attached segments. After the trigger it checks every id,
// key, owner, value, byte and message order it set up.
//
//   ipcns READY REPORT [nested|mqfd]
// nested: the child unshares an IPC namespace of its own (the dump must refuse it).
// mqfd: the program keeps a descriptor of its POSIX queue open (refused too).
#include "workload.h"

#include <mqueue.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define KEY_ATTACHED 0x0c71a001
#define KEY_SEM 0x0c71a002
#define KEY_MSG 0x0c71a003
#define MQ_NAME "/cryo-ipcns-test"
#define PAGE 4096
#define ATTACHED_SIZE (3 * PAGE + 100)
#define LOOSE_SIZE (256 * PAGE)
#define REMOVED_SIZE (2 * PAGE)
#define CREATOR_UID 1234
#define CREATOR_GID 4321
#define OWNER_UID 1000
#define OWNER_GID 100

static const unsigned short sem_values[] = {0, 1, 7, 32000};
struct msg_spec {
  long type;
  const char *text;
};
static const struct msg_spec sysv_msgs[] = {{5, "alpha"}, {1, "beta"}, {5, "gamma"}, {9, ""}, {2, "delta"}};
struct mq_spec {
  unsigned prio;
  const char *text;
};
// Sent in this order, received by priority then age.
static const struct mq_spec mq_sent[] = {{1, "low-1"}, {10, "high"}, {1, "low-2"}, {5, "mid"}};
static const struct mq_spec mq_received[] = {{10, "high"}, {5, "mid"}, {1, "low-1"}, {1, "low-2"}};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

union semun {
  int val;
  struct semid_ds *buf;
  unsigned short *array;
};

static void write_sysctl(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  WL_MUST(fd >= 0);
  WL_MUST(wl_write_all(fd, value, strlen(value)) == 0);
  close(fd);
}

static long read_sysctl(const char *path) {
  char buf[64] = {0};
  if (wl_read_file(path, buf, sizeof buf - 1) <= 0) return -1;
  return atol(buf);
}

// The gamma message is longer than one page, with a pattern of its own.
static void gamma_text(char *out, size_t len) {
  for (size_t i = 0; i < len; i++) out[i] = (char)('a' + (i * 7) % 26);
}
#define GAMMA_LEN 3000

// The loose segment is attached anywhere: its data depends on the offset only.
static char loose_byte(size_t offset) { return (char)(1 + (offset * 131 + offset / PAGE) % 251); }

static void check_loose(const char *loose) {
  for (size_t i = 0; i < LOOSE_SIZE; i++) {
    int written = (i >= 5 * PAGE && i < 7 * PAGE) || (i >= 200 * PAGE && i < 201 * PAGE);
    if (loose[i] != (written ? loose_byte(i) : 0)) {
      wl_fail("loose segment: byte %zu is %d", i, loose[i]);
      return;
    }
  }
}

static void check_pattern(const char *what, const void *mem, size_t len, uint64_t seed) {
  long bad = wl_check_fill(mem, len / 8 * 8, seed);
  WL_CHECK(bad < 0, "%s: wrong data at offset %ld", what, bad);
}

// Segment ids and where the attached ones are.
struct state {
  int attached, loose, removed, sem, msg;
  char *attached_at, *removed_at;
};

static void make_segments(struct state *s) {
  write_sysctl("/proc/sys/kernel/shm_next_id", "4242");  // an id no fresh namespace would give
  s->attached = shmget(KEY_ATTACHED, ATTACHED_SIZE, IPC_CREAT | IPC_EXCL | 0640);
  WL_MUST(s->attached == 4242);
  s->attached_at = shmat(s->attached, NULL, 0);
  WL_MUST(s->attached_at != (void *)-1);
  wl_fill(s->attached_at, ATTACHED_SIZE / 8 * 8, 11);
  struct shmid_ds ds;
  WL_MUST(shmctl(s->attached, IPC_STAT, &ds) == 0);
  ds.shm_perm.uid = OWNER_UID;
  ds.shm_perm.gid = OWNER_GID;
  WL_MUST(shmctl(s->attached, IPC_SET, &ds) == 0);

  // Made by another user (its creator ids), never attached once set up; a
  // few pages written, the rest holes.
  int gap = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
  WL_MUST(gap >= 0 && shmctl(gap, IPC_RMID, NULL) == 0);
  WL_MUST(syscall(SYS_setresgid, -1, CREATOR_GID, -1) == 0 && syscall(SYS_setresuid, -1, CREATOR_UID, -1) == 0);
  s->loose = shmget(IPC_PRIVATE, LOOSE_SIZE, IPC_CREAT | 0604);
  WL_MUST(syscall(SYS_setresuid, -1, 0, -1) == 0 && syscall(SYS_setresgid, -1, 0, -1) == 0);
  WL_MUST(s->loose >= 0);
  char *loose = shmat(s->loose, NULL, 0);
  WL_MUST(loose != (void *)-1);
  for (size_t i = 5 * PAGE; i < 7 * PAGE; i++) loose[i] = loose_byte(i);
  for (size_t i = 200 * PAGE; i < 201 * PAGE; i++) loose[i] = loose_byte(i);
  WL_MUST(shmdt(loose) == 0);

  s->removed = shmget(IPC_PRIVATE, REMOVED_SIZE, IPC_CREAT | 0600);
  WL_MUST(s->removed >= 0);
  s->removed_at = shmat(s->removed, NULL, 0);
  WL_MUST(s->removed_at != (void *)-1);
  wl_fill(s->removed_at, REMOVED_SIZE, 33);
  WL_MUST(shmctl(s->removed, IPC_RMID, NULL) == 0);
}

static void check_segments(const struct state *s) {
  struct shmid_ds ds;
  if (shmctl(s->attached, IPC_STAT, &ds) != 0) {
    wl_fail("attached segment %d: %s", s->attached, strerror(errno));
  } else {
    WL_CHECK(ds.shm_perm.__key == KEY_ATTACHED, "attached segment key %#x", ds.shm_perm.__key);
    WL_CHECK(ds.shm_segsz == ATTACHED_SIZE, "attached segment size %zu", (size_t)ds.shm_segsz);
    WL_CHECK((ds.shm_perm.mode & 0777) == 0640, "attached segment mode %o", ds.shm_perm.mode);
    WL_CHECK(ds.shm_perm.uid == OWNER_UID && ds.shm_perm.gid == OWNER_GID, "attached segment owner %u:%u",
             ds.shm_perm.uid, ds.shm_perm.gid);
    WL_CHECK(ds.shm_nattch == 2, "attached segment has %lu attaches, want 2", (unsigned long)ds.shm_nattch);
  }
  WL_CHECK(shmget(KEY_ATTACHED, 0, 0) == s->attached, "key %#x finds %d", KEY_ATTACHED, shmget(KEY_ATTACHED, 0, 0));
  check_pattern("attached segment", s->attached_at, ATTACHED_SIZE, 11);

  if (shmctl(s->loose, IPC_STAT, &ds) != 0) {
    wl_fail("loose segment %d: %s", s->loose, strerror(errno));
  } else {
    WL_CHECK(ds.shm_segsz == LOOSE_SIZE, "loose segment size %zu", (size_t)ds.shm_segsz);
    WL_CHECK((ds.shm_perm.mode & 0777) == 0604, "loose segment mode %o", ds.shm_perm.mode);
    WL_CHECK(ds.shm_perm.cuid == CREATOR_UID && ds.shm_perm.cgid == CREATOR_GID, "loose segment creator %u:%u",
             ds.shm_perm.cuid, ds.shm_perm.cgid);
    WL_CHECK(ds.shm_perm.uid == CREATOR_UID && ds.shm_perm.gid == CREATOR_GID, "loose segment owner %u:%u",
             ds.shm_perm.uid, ds.shm_perm.gid);
    WL_CHECK(ds.shm_nattch == 0, "loose segment has %lu attaches", (unsigned long)ds.shm_nattch);
    char *loose = shmat(s->loose, NULL, SHM_RDONLY);
    if (loose == (void *)-1) {
      wl_fail("shmat of the loose segment: %s", strerror(errno));
    } else {
      check_loose(loose);
      shmdt(loose);
    }
  }

  if (shmctl(s->removed, IPC_STAT, &ds) != 0) {
    wl_fail("removed segment %d: %s", s->removed, strerror(errno));
  } else {
    WL_CHECK(ds.shm_perm.mode & 01000, "removed segment is not marked removed (mode %o)", ds.shm_perm.mode);
    WL_CHECK(ds.shm_nattch == 2, "removed segment has %lu attaches, want 2", (unsigned long)ds.shm_nattch);
  }
  check_pattern("removed segment", s->removed_at, REMOVED_SIZE, 33);
}

static void make_semaphores(struct state *s) {
  write_sysctl("/proc/sys/kernel/sem_next_id", "777");
  s->sem = semget(KEY_SEM, COUNT(sem_values), IPC_CREAT | IPC_EXCL | 0660);
  WL_MUST(s->sem == 777);
  union semun arg = {.array = (unsigned short *)sem_values};
  WL_MUST(semctl(s->sem, 0, SETALL, arg) == 0);
}

// The root made the set (SETALL: it is every semaphore's last process), the
// child then took semaphore 1 and gave it back.
static void check_semaphores(const struct state *s, pid_t child) {
  WL_CHECK(semget(KEY_SEM, 0, 0) == s->sem, "semaphore key finds %d, want %d", semget(KEY_SEM, 0, 0), s->sem);
  struct semid_ds ds;
  union semun arg = {.buf = &ds};
  if (semctl(s->sem, 0, IPC_STAT, arg) != 0) {
    wl_fail("semaphore set %d: %s", s->sem, strerror(errno));
    return;
  }
  WL_CHECK(ds.sem_nsems == COUNT(sem_values), "semaphore set has %lu", (unsigned long)ds.sem_nsems);
  WL_CHECK((ds.sem_perm.mode & 0777) == 0660, "semaphore mode %o", ds.sem_perm.mode);
  unsigned short got[COUNT(sem_values)] = {0};
  arg.array = got;
  WL_CHECK(semctl(s->sem, 0, GETALL, arg) == 0, "GETALL: %s", strerror(errno));
  for (size_t i = 0; i < COUNT(sem_values); i++) {
    WL_CHECK(got[i] == sem_values[i], "semaphore %zu is %u, want %u", i, got[i], sem_values[i]);
    int last = semctl(s->sem, (int)i, GETPID);
    pid_t want = i == 1 ? child : getpid();
    WL_CHECK(last == want, "semaphore %zu's last process is %d, want %d", i, last, (int)want);
  }
  // They still work: take one from semaphore 2 without waiting.
  struct sembuf op = {2, -1, IPC_NOWAIT};
  WL_CHECK(semop(s->sem, &op, 1) == 0, "semop: %s", strerror(errno));
}

static void make_messages(struct state *s) {
  write_sysctl("/proc/sys/kernel/msg_next_id", "99");
  s->msg = msgget(KEY_MSG, IPC_CREAT | IPC_EXCL | 0620);
  WL_MUST(s->msg == 99);
  struct msqid_ds ds;
  WL_MUST(msgctl(s->msg, IPC_STAT, &ds) == 0);
  ds.msg_qbytes = 12345;
  WL_MUST(msgctl(s->msg, IPC_SET, &ds) == 0);
  static char buf[sizeof(long) + GAMMA_LEN];
  for (size_t i = 0; i < COUNT(sysv_msgs); i++) {
    long type = sysv_msgs[i].type;
    memcpy(buf, &type, sizeof type);
    size_t len = strlen(sysv_msgs[i].text);
    if (!strcmp(sysv_msgs[i].text, "gamma")) {
      len = GAMMA_LEN;
      gamma_text(buf + sizeof type, len);
    } else {
      memcpy(buf + sizeof type, sysv_msgs[i].text, len);
    }
    WL_MUST(msgsnd(s->msg, buf, len, IPC_NOWAIT) == 0);
  }
}

static void check_messages(const struct state *s) {
  WL_CHECK(msgget(KEY_MSG, 0) == s->msg, "message queue key finds %d, want %d", msgget(KEY_MSG, 0), s->msg);
  struct msqid_ds ds;
  if (msgctl(s->msg, IPC_STAT, &ds) != 0) {
    wl_fail("message queue %d: %s", s->msg, strerror(errno));
    return;
  }
  WL_CHECK(ds.msg_qbytes == 12345, "message queue qbytes %lu", (unsigned long)ds.msg_qbytes);
  WL_CHECK((ds.msg_perm.mode & 0777) == 0620, "message queue mode %o", ds.msg_perm.mode);
  WL_CHECK(ds.msg_qnum == COUNT(sysv_msgs), "message queue holds %lu messages", (unsigned long)ds.msg_qnum);
  // Type 5 first (alpha, then gamma), then the rest in order.
  static const size_t order[] = {0, 2, 1, 3, 4};
  static char buf[sizeof(long) + GAMMA_LEN + 16], want[GAMMA_LEN];
  for (size_t n = 0; n < COUNT(order); n++) {
    const struct msg_spec *m = &sysv_msgs[order[n]];
    long type = n < 2 ? 5 : 0;
    ssize_t got = msgrcv(s->msg, buf, sizeof buf - sizeof(long), type, IPC_NOWAIT);
    if (got < 0) {
      wl_fail("msgrcv %zu: %s", n, strerror(errno));
      return;
    }
    long got_type;
    memcpy(&got_type, buf, sizeof got_type);
    size_t len = strlen(m->text);
    const char *text = m->text;
    if (!strcmp(m->text, "gamma")) {
      len = GAMMA_LEN;
      gamma_text(want, len);
      text = want;
    }
    WL_CHECK(got_type == m->type && (size_t)got == len && !memcmp(buf + sizeof(long), text, len),
             "message %zu: type %ld, %zd bytes; want type %ld, %zu bytes of %.8s", n, got_type, got, m->type, len,
             m->text);
  }
}

static int keep_mq_open;
static mqd_t kept_mq = -1;

static void make_posix_queue(void) {
  struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 128};
  mode_t old = umask(0);
  mqd_t q = mq_open(MQ_NAME, O_CREAT | O_EXCL | O_WRONLY, 0620, &attr);
  umask(old);
  WL_MUST(q >= 0);
  WL_MUST(fchown(q, OWNER_UID, OWNER_GID) == 0);
  for (size_t i = 0; i < COUNT(mq_sent); i++)
    WL_MUST(mq_send(q, mq_sent[i].text, strlen(mq_sent[i].text), mq_sent[i].prio) == 0);
  if (keep_mq_open)
    kept_mq = q;
  else
    mq_close(q);  // the queue lives on in the namespace, by name only
}

static void check_posix_queue(void) {
  mqd_t q = mq_open(MQ_NAME, O_RDONLY | O_NONBLOCK);
  if (q < 0) {
    wl_fail("mq_open %s: %s", MQ_NAME, strerror(errno));
    return;
  }
  struct mq_attr attr;
  WL_CHECK(mq_getattr(q, &attr) == 0, "mq_getattr: %s", strerror(errno));
  WL_CHECK(attr.mq_maxmsg == 8 && attr.mq_msgsize == 128 && attr.mq_curmsgs == (long)COUNT(mq_sent),
           "POSIX queue attributes %ld/%ld/%ld", attr.mq_maxmsg, attr.mq_msgsize, attr.mq_curmsgs);
  struct stat st;
  WL_CHECK(fstat(q, &st) == 0 && (st.st_mode & 0777) == 0620 && st.st_uid == OWNER_UID && st.st_gid == OWNER_GID,
           "POSIX queue mode %o owner %u:%u", st.st_mode & 0777, st.st_uid, st.st_gid);
  for (size_t i = 0; i < COUNT(mq_received); i++) {
    char buf[129];
    unsigned prio = 0;
    ssize_t got = mq_receive(q, buf, sizeof buf, &prio);
    if (got < 0) {
      wl_fail("mq_receive %zu: %s", i, strerror(errno));
      break;
    }
    buf[got] = 0;
    WL_CHECK(prio == mq_received[i].prio && !strcmp(buf, mq_received[i].text),
             "POSIX message %zu: \"%s\" at priority %u, want \"%s\" at %u", i, buf, prio, mq_received[i].text,
             mq_received[i].prio);
  }
  mq_close(q);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ipcns READY REPORT [nested]\n");
    return 2;
  }
  int nested = argc > 3 && !strcmp(argv[3], "nested");
  keep_mq_open = argc > 3 && !strcmp(argv[3], "mqfd");
  wl_install_trigger();
  write_sysctl("/proc/sys/kernel/msgmnb", "23456");
  write_sysctl("/proc/sys/fs/mqueue/msg_max", "17");
  struct state s;
  make_segments(&s);
  make_semaphores(&s);
  make_messages(&s);
  make_posix_queue();

  // Set last: from now on a segment goes when its last attach does (the
  // loose one must survive the dump's reading it, and the restore's filling it).
  write_sysctl("/proc/sys/kernel/shm_rmid_forced", "1");

  int settled[2];
  WL_MUST(pipe(settled) == 0);
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {  // shares the attached segments; dies if their data changes
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct sembuf take_and_give[2] = {{1, -1, IPC_NOWAIT}, {1, 1, IPC_NOWAIT}};
    WL_MUST(semop(s.sem, take_and_give, 2) == 0);
    if (nested && unshare(CLONE_NEWIPC) != 0) _exit(4);
    WL_MUST(write(settled[1], "x", 1) == 1);
    for (;;) {
      wl_sleep_ms(50);
      if (wl_check_fill(s.attached_at, ATTACHED_SIZE / 8 * 8, 11) >= 0 || wl_check_fill(s.removed_at, REMOVED_SIZE, 33) >= 0)
        _exit(3);
    }
  }
  char c;
  WL_MUST(read(settled[0], &c, 1) == 1);
  wl_ready(argv[1], "mqfd=%d pid=%d child=%d shm=%d loose=%d removed=%d sem=%d msg=%d", (int)kept_mq, (int)getpid(),
           (int)child, s.attached, s.loose, s.removed, s.sem, s.msg);
  while (!wl_triggered) wl_sleep_ms(20);

  WL_CHECK(read_sysctl("/proc/sys/kernel/msgmnb") == 23456, "kernel.msgmnb is %ld", read_sysctl("/proc/sys/kernel/msgmnb"));
  WL_CHECK(read_sysctl("/proc/sys/fs/mqueue/msg_max") == 17, "fs.mqueue.msg_max is %ld",
           read_sysctl("/proc/sys/fs/mqueue/msg_max"));
  WL_CHECK(read_sysctl("/proc/sys/kernel/shm_rmid_forced") == 1, "kernel.shm_rmid_forced is %ld",
           read_sysctl("/proc/sys/kernel/shm_rmid_forced"));
  int status = 0;
  WL_CHECK(waitpid(child, &status, WNOHANG) == 0, "the child ended (status %#x)", status);
  check_segments(&s);
  check_semaphores(&s, child);
  check_messages(&s);
  check_posix_queue();
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  return wl_finish(argv[2]);
}
