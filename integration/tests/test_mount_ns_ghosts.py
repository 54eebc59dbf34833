#!/usr/bin/env python3
"""Process mode, a container (test_mount_ns's busybox rootfs, pivoted into, a tmpfs /tmp) whose
processes hold files that were removed since, by their names in the container's mounts:

- ghosts: a shell of the container whose working directory was removed, with an open removed
  directory, a removed FIFO with bytes queued in it and a removed device node (/dev/zero's
  numbers): after the restore each is "(deleted)" again at the container's path, made in the
  container's own tmpfs (nothing appears in its /tmp nor in the host's), the shell reads the
  queued bytes and zeros from inside and finds its working directory gone."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, check_eq, descendants, read_text, reap, run, wait_until  # noqa: E402
from test_mount_ns import start  # noqa: E402

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


if __name__ == "__main__":
    run({"ghosts": case_ghosts})
