#!/usr/bin/env python3
"""Process mode, a container (test_mount_ns's busybox rootfs, pivoted into, a tmpfs /tmp) whose
processes hold files that were removed since, by their names in the container's mounts:

- ghosts: a shell of the container whose working directory was removed, with an open removed
  directory, a removed FIFO with bytes queued in it and a removed device node (/dev/zero's
  numbers): after the restore each is "(deleted)" again at the container's path, made in the
  container's own tmpfs (nothing appears in its /tmp nor in the host's), the shell reads the
  queued bytes and zeros from inside and finds its working directory gone.
- watches: a process of the container (workloads/nswatch, static) with an inotify instance
  watching a directory of the container's tmpfs and a file of a directory bound from the host,
  and a fanotify group with inode marks on files of both, a mount mark on the tmpfs and an
  ignored mask: after the restore, from inside, the watch descriptors and masks are the same and
  every watch and mark reports (the tmpfs ones on its new inodes and mount), the ignored mask
  still ignores.
- overlay: the container mounts an overlay itself at /mnt (lower on its root, upper and work
  in its tmpfs), changes files through it and holds one open: after the restore the overlay is
  at /mnt again with the same layers (as the container named them), from inside the lower
  file, the changed one, the removed one (a whiteout) and the new one are what they were, the
  held fd still reads, and a new file lands in the upper dir.
- overlay_outside: an overlay whose lower dir lies outside the container's root (mounted before
  pivot_root) refuses the dump, naming the mount and the layer; the container runs on."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WORKLOADS, check, check_eq, descendants, read_text, reap, run, wait_until  # noqa: E402
from test_mount_ns import count, start  # noqa: E402

B = "/bin/busybox"

GHOSTS = f'''{B} mkdir /tmp/gone-cwd /tmp/gone-dir
{B} mkfifo -m 640 /tmp/gone-fifo
{B} mknod -m 604 /tmp/gone-zero c 1 5
{B} sh -c 'cd /tmp/gone-cwd
exec 6</tmp/gone-zero 7</tmp/gone-dir 8<>/tmp/gone-fifo
echo queued-before-dump >&8
{B} rm /tmp/gone-zero /tmp/gone-fifo
{B} rmdir /tmp/gone-dir /tmp/gone-cwd
echo ready > /out/ghosts-ready
while [ ! -e /out/ghosts-check ]; do {B} sleep 0.05; done
r=""
read -r line <&8
[ "$line" = queued-before-dump ] || r="$r fifo=$line"
z=$({B} head -c 4 <&6 | {B} od -An -tx1 | {B} tr -d " ")
[ "$z" = 00000000 ] || r="$r zero=$z"
[ "$({B} readlink /proc/self/cwd)" = "/tmp/gone-cwd (deleted)" ] || r="$r cwd=$({B} readlink /proc/self/cwd)"
[ "$({B} readlink /proc/self/fd/7)" = "/tmp/gone-dir (deleted)" ] || r="$r dir=$({B} readlink /proc/self/fd/7)"
[ "$({B} readlink /proc/self/fd/8)" = "/tmp/gone-fifo (deleted)" ] || r="$r fifo-link=$({B} readlink /proc/self/fd/8)"
[ "$({B} stat -L -c %a /proc/self/fd/8)" = 640 ] || r="$r fifo-mode=$({B} stat -L -c %a /proc/self/fd/8)"
[ "$({B} stat -L -c %t:%T /proc/self/fd/6)" = 1:5 ] || r="$r zero-rdev=$({B} stat -L -c %t:%T /proc/self/fd/6)"
{B} touch ./x 2>/dev/null && r="$r cwd-writable"
for n in gone-cwd gone-dir gone-fifo gone-zero; do [ -e /tmp/$n ] && r="$r /tmp/$n-back"; done
echo "ghosts:${{r:-OK}}" > /out/ghosts-report
' </dev/null >/dev/null 2>&1 &'''


def case_ghosts(env):
    outer, root, rootfs, out = start(env, extra="mkdir -p $R/dev; mknod -m 666 $R/dev/null c 1 3", inside=GHOSTS)
    wait_until(lambda: os.path.exists(os.path.join(out, "ghosts-ready")), 10, what="the removed files held")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    _, host = env.restore(images)
    try:
        holder = wait_until(lambda: next((p for p in descendants(host) if os.path.islink(f"/proc/{p}/fd/8")
                                          and "gone-fifo" in os.readlink(f"/proc/{p}/fd/8")), None), 10,
                            what="the restored holder")
        check_eq(os.readlink(f"/proc/{holder}/cwd"), "/tmp/gone-cwd (deleted)", "the holder's working directory")
        for name in ("gone-cwd", "gone-dir", "gone-fifo", "gone-zero"):
            check(not os.path.lexists(os.path.join(rootfs, "tmp", name)), f"{name} was made in the rootfs' /tmp")
            check(not os.path.lexists(f"/tmp/{name}"), f"{name} was made in the host's /tmp")
        open(os.path.join(out, "ghosts-check"), "w").close()
        report = wait_until(lambda: read_text(os.path.join(out, "ghosts-report")), 10, what="the holder's report")
        check_eq(report.strip(), "ghosts:OK", "what the holder found from inside")
    finally:
        os.kill(host, 9)
        reap([host], what="the restored container")


def case_watches(env):
    nswatch = os.path.join(WORKLOADS, "nswatch")
    outer, root, rootfs, out = start(env, extra=f"cp {nswatch} $R/bin/nswatch; mkdir -p $R/dev; mknod -m 666 $R/dev/null c 1 3",
                                     inside="/bin/nswatch /tmp /out </dev/null >/out/nswatch.log 2>&1 &")
    wait_until(lambda: os.path.exists(os.path.join(out, "nswatch-ready")), 10, what="the watches made")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    _, host = env.restore(images)
    try:
        open(os.path.join(out, "nswatch-check"), "w").close()
        report = wait_until(lambda: read_text(os.path.join(out, "nswatch-report")), 10, what="nswatch's report")
        check_eq(report.strip(), "OK", f"what nswatch found from inside (log: {read_text(os.path.join(out, 'nswatch.log'))!r})")
    finally:
        os.kill(host, 9)
        reap([host], what="the restored container")


OVERLAY = f'''{B} mkdir -p /tmp/upper /tmp/work
{B} mount -t overlay overlay -o lowerdir=/lower,upperdir=/tmp/upper,workdir=/tmp/work /mnt
echo from-upper > /mnt/b
{B} rm /mnt/c
echo new > /mnt/d
{B} sh -c 'exec 5</mnt/a
echo ready > /out/ovl-ready
while [ ! -e /out/ovl-check ]; do {B} sleep 0.05; done
r=""
[ "$({B} cat /mnt/a)" = from-lower ] || r="$r a=$({B} cat /mnt/a)"
[ "$({B} cat /mnt/b)" = from-upper ] || r="$r b=$({B} cat /mnt/b)"
[ -e /mnt/c ] && r="$r c-back"
[ "$({B} cat /mnt/d)" = new ] || r="$r d=$({B} cat /mnt/d)"
read -r line <&5
[ "$line" = from-lower ] || r="$r fd5=$line"
echo later > /mnt/e
[ "$({B} cat /tmp/upper/e)" = later ] || r="$r upper-e"
[ "$({B} cat /lower/b)" = shadowed ] || r="$r lower-b"
m=$({B} grep " /mnt " /proc/self/mountinfo)
case "$m" in *" - overlay overlay "*lowerdir=/lower,upperdir=/tmp/upper,workdir=/tmp/work*) ;; *) r="$r mountinfo=$m";; esac
echo "overlay:${{r:-OK}}" > /out/ovl-report
' </dev/null >/dev/null 2>&1 &'''

LOWER = "mkdir -p $R/dev $R/lower; mknod -m 666 $R/dev/null c 1 3; echo from-lower > $R/lower/a; " \
        "echo shadowed > $R/lower/b; echo removed > $R/lower/c"


def case_overlay(env):
    outer, root, rootfs, out = start(env, extra=LOWER, inside=OVERLAY)
    wait_until(lambda: os.path.exists(os.path.join(out, "ovl-ready")), 10, what="the overlay made")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    _, host = env.restore(images)
    try:
        check("/mnt" in [line.split()[4] for line in read_text(f"/proc/{host}/mountinfo").splitlines()],
              "no mount at /mnt in the restored container")
        open(os.path.join(out, "ovl-check"), "w").close()
        report = wait_until(lambda: read_text(os.path.join(out, "ovl-report")), 10, what="the holder's report")
        check_eq(report.strip(), "overlay:OK", "what the container found from inside")
    finally:
        os.kill(host, 9)
        reap([host], what="the restored container")
    check(not os.path.exists(os.path.join(rootfs, "lower", "e")), "the overlay wrote to its lower dir")


def case_overlay_outside(env):
    layers = env.path("layers")
    for d in ("lower", "upper", "work"):
        os.makedirs(os.path.join(layers, d))
    extra = (f"mkdir -p $R/dev; mknod -m 666 $R/dev/null c 1 3; mount -t overlay overlay -o "
             f"lowerdir={layers}/lower,upperdir={layers}/upper,workdir={layers}/work $R/mnt")
    outer, root, rootfs, out = start(env, extra=extra)
    result = env.dump(root, env.path("images"), expect=1)
    check("overlay at /mnt" in result.stderr and f"lowerdir {layers}/lower" in result.stderr,
          f"the refusal does not name the overlay and its layer: {result.stderr.strip()!r}")
    now = count(out)
    wait_until(lambda: count(out) > now + 2, 10, what="the counter to go on after the refused dump")
    os.kill(root, 9)
    reap([outer, root], what="the container")


if __name__ == "__main__":
    run({"ghosts": case_ghosts, "watches": case_watches, "overlay": case_overlay, "overlay_outside": case_overlay_outside})
