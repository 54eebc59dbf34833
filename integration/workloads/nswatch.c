// nswatch: inotify watches and fanotify marks of a process in a container (a mount namespace
// of its own, pivoted into), on files of the container's own tmpfs (TMP, and TMP/fan, a tmpfs
// it mounts for the fanotify mount mark; made again by the restore: new inodes) and of a
// directory bound from the host (OUT: the same inodes). Linked
// statically: the container's rootfs has busybox and no libc.
//
//   nswatch TMP OUT
//
// It builds the objects, writes OUT/nswatch-ready, waits for OUT/nswatch-check, checks from
// inside that the watch descriptors and masks are the same and that every watch and mark
// still reports (and an ignored mask still ignores), and writes OK or FAIL: ... to
// OUT/nswatch-report.
#include "workload.h"

#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/mount.h>

static char tmp_dir[1024], out_dir[1024], fan_dir[1100];
static char watched_dir[2048], watched_file[2048], fan_marked[2048], fan_ignored[2048], fan_other[2048],
    fan_out[2048];
static int ino_fd, fan_fd, wd_dir, wd_file;

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  WL_MUST(fd >= 0 && write(fd, "x", 1) == 1);
  close(fd);
}

// The "inotify wd:N ... mask:M" pairs of the instance, as its fdinfo shows them.
static void inotify_masks(char *out, size_t size) {
  char path[64], text[8192];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ino_fd);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  WL_MUST(fd >= 0);
  ssize_t n = read(fd, text, sizeof text - 1);
  WL_MUST(n > 0);
  close(fd);
  text[n] = 0;
  out[0] = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *wd = strstr(line, "inotify wd:"), *mask = strstr(line, " mask:");
    if (!wd || !mask) continue;
    unsigned w = 0, m = 0;
    sscanf(wd, "inotify wd:%x", &w);
    sscanf(mask, " mask:%x", &m);
    size_t used = strlen(out);
    snprintf(out + used, size - used, "%u:%x ", w, m);
  }
}

// Reads the inotify events queued; returns how many had wd and mask (and name, if given).
static int inotify_events(int wd, uint32_t mask, const char *name) {
  char buf[8192] __attribute__((aligned(8)));
  int found = 0;
  for (;;) {
    ssize_t n = read(ino_fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      if (e->wd == wd && (e->mask & mask) && (!name || (e->len && !strcmp(e->name, name)))) found++;
      p += sizeof *e + e->len;
    }
  }
  return found;
}

// Reads the fanotify events queued; returns how many were on path with mask, and counts in
// *ignored those on not_path.
static int fanotify_events(const char *path, uint64_t mask, const char *not_path, int *ignored) {
  char buf[8192] __attribute__((aligned(8)));
  int found = 0;
  for (;;) {
    ssize_t n = read(fan_fd, buf, sizeof buf);
    if (n <= 0) break;
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->fd < 0) continue;
      char link[64], target[4096] = {0};
      snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
      if (readlink(link, target, sizeof target - 1) > 0) {
        if (!strcmp(target, path) && (m->mask & mask) == mask) found++;
        if (not_path && !strcmp(target, not_path)) (*ignored)++;
      }
      close(m->fd);
    }
  }
  return found;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

int main(int argc, char **argv) {
  const char *usage = "TMP OUT";
  snprintf(tmp_dir, sizeof tmp_dir, "%s", wl_arg(argc, argv, 1, usage));
  snprintf(out_dir, sizeof out_dir, "%s", wl_arg(argc, argv, 2, usage));
  snprintf(watched_dir, sizeof watched_dir, "%s/watched", tmp_dir);
  snprintf(watched_file, sizeof watched_file, "%s/watched", out_dir);
  // The mount mark is on a tmpfs of its own, which nothing else writes to.
  snprintf(fan_dir, sizeof fan_dir, "%s/fan", tmp_dir);
  WL_MUST(mkdir(fan_dir, 0755) == 0);
  WL_MUST(mount("tmpfs", fan_dir, "tmpfs", 0, "size=1m") == 0);
  snprintf(fan_marked, sizeof fan_marked, "%s/marked", fan_dir);
  snprintf(fan_ignored, sizeof fan_ignored, "%s/ignored", fan_dir);
  snprintf(fan_other, sizeof fan_other, "%s/other", fan_dir);
  snprintf(fan_out, sizeof fan_out, "%s/marked", out_dir);
  WL_MUST(mkdir(watched_dir, 0755) == 0);
  touch(watched_file);
  touch(fan_marked);
  touch(fan_ignored);
  touch(fan_other);
  touch(fan_out);

  ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  WL_MUST(ino_fd >= 0);
  // A watch given up first: the next descriptors are not 1 and 2.
  int gone = inotify_add_watch(ino_fd, tmp_dir, IN_ATTRIB);
  WL_MUST(gone > 0 && inotify_rm_watch(ino_fd, gone) == 0);
  wd_dir = inotify_add_watch(ino_fd, watched_dir, IN_CREATE | IN_DELETE | IN_ONLYDIR);
  wd_file = inotify_add_watch(ino_fd, watched_file, IN_MODIFY | IN_CLOSE_WRITE);
  WL_MUST(wd_dir > 0 && wd_file > 0);
  char buf[256];
  while (read(ino_fd, buf, sizeof buf) > 0) {  // the IN_IGNORED of the removed watch
  }
  char masks_before[512];
  inotify_masks(masks_before, sizeof masks_before);

  fan_fd = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  WL_MUST(fan_fd >= 0);
  WL_MUST(fanotify_mark(fan_fd, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, fan_marked) == 0);
  WL_MUST(fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_MODIFY, AT_FDCWD, fan_dir) == 0);
  WL_MUST(fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_MODIFY,
                        AT_FDCWD, fan_ignored) == 0);
  WL_MUST(fanotify_mark(fan_fd, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, fan_out) == 0);

  char ready[2048], check[2048], report[2048];
  snprintf(ready, sizeof ready, "%s/nswatch-ready", out_dir);
  snprintf(check, sizeof check, "%s/nswatch-check", out_dir);
  snprintf(report, sizeof report, "%s/nswatch-report", out_dir);
  wl_write_file(ready, "READY\n");
  while (!exists(check)) usleep(20000);

  char masks_after[512];
  inotify_masks(masks_after, sizeof masks_after);
  WL_CHECK(!strcmp(masks_before, masks_after), "inotify watches were %s, now %s", masks_before, masks_after);
  WL_CHECK(inotify_events(-1, ~0u, NULL) == 0, "inotify events queued before any change");
  char made[4096];
  snprintf(made, sizeof made, "%s/new", watched_dir);
  touch(made);
  WL_CHECK(inotify_events(wd_dir, IN_CREATE, "new") == 1, "no IN_CREATE of new on the watched tmpfs directory");
  unlink(made);
  WL_CHECK(inotify_events(wd_dir, IN_DELETE, "new") == 1, "no IN_DELETE of new on the watched tmpfs directory");
  touch(watched_file);
  WL_CHECK(inotify_events(wd_file, IN_MODIFY, NULL) == 1, "no IN_MODIFY of the watched file of the bound directory");

  int ignored = 0;
  WL_CHECK(fanotify_events(fan_marked, 0, NULL, &ignored) == 0, "fanotify events queued before any change");
  touch(fan_marked);
  WL_CHECK(fanotify_events(fan_marked, FAN_CLOSE_WRITE, NULL, &ignored) == 1,
           "no FAN_CLOSE_WRITE for the marked file of the tmpfs");
  touch(fan_other);
  WL_CHECK(fanotify_events(fan_other, FAN_MODIFY, NULL, &ignored) == 1, "no FAN_MODIFY for a file of the marked mount");
  touch(fan_ignored);
  WL_CHECK(fanotify_events(fan_ignored, FAN_MODIFY, fan_ignored, &ignored) == 0 && ignored == 0,
           "events for the file whose FAN_MODIFY is ignored");
  touch(fan_out);
  WL_CHECK(fanotify_events(fan_out, FAN_CLOSE_WRITE, NULL, &ignored) == 1,
           "no FAN_CLOSE_WRITE for the marked file of the bound directory");
  return wl_finish(report);
}
