#!/usr/bin/env python3
"""Process mode, a tree with a mount namespace of its own, as a container has one: a busybox
rootfs (a directory of this test) bound on itself and pivoted into, a tmpfs /tmp with files, a
proc of the tree's own pid namespace at /proc, and a host directory bound at /out.

- container: the counter (busybox sh, pid 1 of its own pid namespace) goes on after the restore,
  in a mount namespace with the same mounts; the tmpfs comes back with its files, modes, owners,
  symlink, times and an extended attribute, and the shell's fd on a file there still reads it;
  /proc is the namespace's; what it writes to /out reaches the host.
- unknown_root: the root directory has gone: the restore fails, saying --root is needed, and
  leaves nothing behind; restored with --root DIR (a copy) it runs there.
- twice: the same, with UTS, IPC, network (lo only), cgroup and time namespaces of its own too
  (hostname set inside): one image restored twice at once, each copy in namespaces of its own counts on in
  its own tmpfs from where the dump left it.
- external: /out dumped as external (--external mnt[/out]:volume): the restore without a source
  for it fails naming the key; with --external mnt[volume]:DIR the counter writes to DIR.
- unbindable: /tmp made unbindable: it comes back unbindable, and the counter goes on.
- refused_mount: a filesystem cryo cannot make again (ramfs) refuses the dump, naming the mount;
  the tree runs on.
- deleted: a process of the container holds a removed file of its tmpfs: restored, its fd is
  "/tmp/gone (deleted)" again, in the container's tmpfs, with the file's bytes.
- not_pivoted: a mount namespace of its own that kept cryo's root (`unshare --mount` alone)
  refuses the dump, saying so; the tree runs on."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, descendants, read_text, reap, run, wait_until  # noqa: E402

COUNTER = r'''#!/bin/busybox sh
exec 5</tmp/kept
i=0
while :; do
  i=$((i+1))
  echo $i > /out/count.tmp && mv /out/count.tmp /out/count
  echo $i > /tmp/count.tmp && mv /tmp/count.tmp /tmp/count
  cat /proc/sys/kernel/hostname > /tmp/hostname.tmp && mv /tmp/hostname.tmp /tmp/hostname
  if [ -e /out/check ]; then
    problems=""
    [ "$(cat /tmp/kept)" = "kept data" ] || problems="$problems kept=$(cat /tmp/kept)"
    [ "$(readlink /tmp/link)" = "kept" ] || problems="$problems link"
    [ "$(stat -c %a.%u.%g /tmp/kept)" = "640.1234.2345" ] || problems="$problems mode=$(stat -c %a.%u.%g /tmp/kept)"
    [ "$(stat -c %Y /tmp/old)" = "1000000000" ] || problems="$problems mtime=$(stat -c %Y /tmp/old)"
    [ -d /tmp/dir/sub ] || problems="$problems dir"
    read -r line <&5
    [ "$line" = "kept data" ] || problems="$problems fd5=$line"
    [ "$$" = "1" ] || problems="$problems pid=$$"
    [ "$(cat /proc/self/stat | cut -d' ' -f1)" -gt 1 ] || problems="$problems proc"
    [ "$(cat /proc/1/comm)" = "busybox" ] || problems="$problems proc1=$(cat /proc/1/comm)"
    [ -e /old ] && problems="$problems old-root-visible"
    if [ -z "$problems" ]; then echo OK > /out/report; else echo "FAIL:$problems" > /out/report; fi
    exit 0
  fi
  sleep 0.05
done
'''

SETUP = r'''
set -e
R={root}
mount --bind $R $R
mount -t tmpfs -o size=8m,mode=1777 tmpfs $R/tmp
mount -t proc proc $R/proc
mount --bind {out} $R/out
{extra}
printf 'kept data\n' > $R/tmp/kept
chown 1234:2345 $R/tmp/kept
chmod 640 $R/tmp/kept
ln -s kept $R/tmp/link
mkdir -p $R/tmp/dir/sub
touch -d @1000000000 $R/tmp/old
cd $R
pivot_root . .
/bin/busybox umount -l .
{inside}
exec /bin/busybox sh /bin/counter.sh </out/in >>/out/log 2>&1
'''


def make_rootfs(env, name="rootfs"):
    root = env.path(name)
    for d in ("bin", "proc", "tmp", "out", "mnt"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "cat", "mv", "sleep", "readlink", "stat", "cut"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    with open(os.path.join(root, "bin", "counter.sh"), "w") as f:
        f.write(COUNTER)
    return root


def start(env, extra="", namespaces=(), inside=""):
    root = make_rootfs(env)
    out = env.path("out")
    os.makedirs(out)
    open(os.path.join(out, "in"), "w").close()  # the container's stdio: its own files, not the harness's
    script = env.path("setup.sh")
    with open(script, "w") as f:
        f.write(SETUP.format(root=root, out=out, extra=extra, inside=inside))
    outer = env.spawn(["unshare", "--pid", "--fork", "--mount", "--propagation", "private", *namespaces, "setsid", "sh",
                       script], name="unshare")
    wait_until(lambda: count(out) >= 2, 10, what="the counter in the container")
    children = [int(x) for x in read_text(f"/proc/{outer}/task/{outer}/children").split()]
    check_eq(len(children), 1, "children of unshare")
    return outer, children[0], root, out


def count(out):
    text = (read_text(os.path.join(out, "count")) or "").strip()
    return int(text) if text.isdigit() else 0


def mount_points(pid):
    return sorted(line.split()[4] for line in read_text(f"/proc/{pid}/mountinfo").splitlines())


def restore_and_check(env, images, out, root_in_host, *extra):
    before = count(out)
    _, host = env.restore(images, *extra)
    check(host is not None, "no pid in the pid file")
    check(os.readlink(f"/proc/{host}/ns/mnt") != os.readlink("/proc/self/ns/mnt"),
          "the restored root shares cryo's mount namespace")
    check_eq(mount_points(host), ["/", "/out", "/proc", "/tmp"], "mount points of the restored tree")
    check_eq(os.getxattr(f"/proc/{host}/root/tmp/kept", "user.cryo"), b"tmpfs xattr", "xattr of /tmp/kept")
    wait_until(lambda: count(out) > before + 2, 10, what="the counter to go on after the restore")
    open(os.path.join(out, "check"), "w").close()
    report = wait_until(lambda: read_text(os.path.join(out, "report")), 10, what="the container's report")
    check_eq(report.strip(), "OK", "the container's report")
    reap([host], what="the restored container")
    for name in ("check", "report"):
        os.unlink(os.path.join(out, name))
    del root_in_host


def case_container(env):
    outer, root, rootfs, out = start(env)
    os.setxattr(f"/proc/{root}/root/tmp/kept", "user.cryo", b"tmpfs xattr")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    shown = env.cryo("inspect", images).stdout
    check('"mount_ns"' in shown and '"/tmp"' in shown, "inspect does not show the mounts")
    restore_and_check(env, images, out, rootfs)


def tmp_count(pid):
    text = (read_text(f"/proc/{pid}/root/tmp/count") or "").strip()
    return int(text) if text.isdigit() else 0


def case_twice(env):
    outer, root, rootfs, out = start(env, extra="hostname cryo-container; ip link set lo up",
                                     namespaces=("--uts", "--ipc", "--net", "--cgroup", "--time", "--monotonic", "86400"))
    for kind in ("uts", "ipc", "net", "cgroup", "time", "pid", "mnt"):
        check(os.readlink(f"/proc/{root}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}"), f"no {kind} namespace")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    at_dump = count(out)
    copies = []
    for _ in range(2):
        _, host = env.restore(images)
        check(host is not None, "no pid in the pid file")
        copies.append(host)
    for kind in ("uts", "ipc", "net", "cgroup", "time", "pid", "mnt"):
        a, b = (os.readlink(f"/proc/{p}/ns/{kind}") for p in copies)
        check(a != b and a != os.readlink(f"/proc/self/ns/{kind}"), f"the two copies' {kind} namespaces")
    for host in copies:
        wait_until(lambda: tmp_count(host) > at_dump + 3, 10, what=f"copy {host} to count on from {at_dump}")
        check_eq(read_text(f"/proc/{host}/root/tmp/hostname").strip(), "cryo-container", "hostname inside")
    for host in copies:
        os.kill(host, 9)
    reap(copies, what="the two copies")


def case_external(env):
    outer, root, rootfs, out = start(env)
    images = env.path("images")
    env.dump(root, images, "--external", "mnt[/out]:volume")
    reap([outer, root], what="unshare and the dumped container")
    result = env.cryo("restore", "-D", images, "-d", expect=1)
    check("mnt[volume]" in result.stderr, f"the failure does not name the key: {result.stderr.strip()!r}")
    result = env.cryo("restore", "-D", images, "-d", "--external", "mnt[nothing]:/tmp", expect=1)
    check("mnt[nothing]" in result.stderr, f"an unknown key is not named: {result.stderr.strip()!r}")
    moved = env.path("moved")
    shutil.copytree(out, moved)  # the container's stdio files move with the volume
    at_dump = count(out)
    _, host = env.restore(images, "--external", f"mnt[volume]:{moved}")
    now = count(moved)  # (the restored counter may have counted on already)
    wait_until(lambda: count(moved) > now + 2, 10, what="the counter in the new volume")
    check_eq(count(out), at_dump, "the counter in the old volume after the restore")
    os.kill(host, 9)
    reap([host], what="the restored container")


def case_unknown_root(env):
    outer, root, rootfs, out = start(env)
    os.setxattr(f"/proc/{root}/root/tmp/kept", "user.cryo", b"tmpfs xattr")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    copy = env.path("copy")
    shutil.copytree(rootfs, copy, symlinks=True)
    shutil.rmtree(rootfs)
    before = set(descendants(os.getpid()))
    result = env.cryo("restore", "-D", images, "-d", expect=1)
    check("--root" in result.stderr, f"the failure does not ask for --root: {result.stderr.strip()!r}")
    time.sleep(0.2)
    check_eq(sorted(set(descendants(os.getpid())) - before), [], "processes left by the failed restore")
    restore_and_check(env, images, out, copy, "--root", copy)


def case_refused_mount(env):
    outer, root, rootfs, out = start(env, extra="mount -t ramfs ramfs $R/mnt")
    result = env.dump(root, env.path("images"), expect=1)
    check("ramfs at /mnt" in result.stderr, f"the refusal does not name the mount: {result.stderr.strip()!r}")
    now = count(out)
    wait_until(lambda: count(out) > now + 2, 10, what="the counter to go on after the refused dump")
    open(os.path.join(out, "check"), "w").close()
    wait_until(lambda: read_text(os.path.join(out, "report")), 10, what="the container's report")
    reap([outer, root], what="the container")


def deleted_holder(pids):
    """The pid among pids whose fd 7 is a removed file, or None."""
    for p in pids:
        try:
            if os.readlink(f"/proc/{p}/fd/7").endswith("(deleted)"):
                return p
        except OSError:
            pass
    return None


def case_deleted(env):
    # A process of the container holds a file of its tmpfs that was removed since.
    holder = ("printf gone > /tmp/gone; /bin/busybox sh -c 'exec 7</tmp/gone; /bin/busybox rm /tmp/gone; "
              "exec /bin/busybox sleep 1000' </dev/null >/dev/null 2>&1 &")
    # (a shell opens /dev/null for a background job's stdin)
    outer, root, rootfs, out = start(env, extra="mkdir -p $R/dev; mknod -m 666 $R/dev/null c 1 3", inside=holder)
    wait_until(lambda: deleted_holder(descendants(root)), 10, what="the deleted file held")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    _, host = env.restore(images)
    held = wait_until(lambda: deleted_holder(descendants(host)), 10, what="the restored holder")
    check_eq(os.readlink(f"/proc/{held}/fd/7"), "/tmp/gone (deleted)", "the restored fd 7")
    with open(f"/proc/{held}/fd/7") as f:
        check_eq(f.read(), "gone", "what the removed file holds after the restore")
    check(not os.path.exists(f"/proc/{host}/root/tmp/gone"), "the removed file is back in the container's /tmp")
    check(not os.path.exists(os.path.join(rootfs, "tmp", "gone")), "the removed file was made outside the container")
    open(os.path.join(out, "check"), "w").close()
    report = wait_until(lambda: read_text(os.path.join(out, "report")), 10, what="the container's report")
    check_eq(report.strip(), "OK", "the container's report")
    reap([host], what="the restored container")  # pid 1 of its namespace: the holder goes with it


def tmp_tags(pid):
    for line in read_text(f"/proc/{pid}/mountinfo").splitlines():
        fields = line.split(" - ")[0].split()
        if fields[4] == "/tmp":
            return fields[6:]
    return None


def case_unbindable(env):
    outer, root, rootfs, out = start(env, extra="mount --make-unbindable $R/tmp")
    check("unbindable" in tmp_tags(root), f"/tmp is not unbindable in the container: {tmp_tags(root)}")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    _, host = env.restore(images)
    check(host is not None, "no pid in the pid file")
    try:
        check_eq(tmp_tags(host), ["unbindable"], "the propagation of the restored /tmp")
        before = count(out)
        wait_until(lambda: count(out) > before + 2, 10, what="the counter to go on after the restore")
    finally:
        os.kill(host, 9)
        reap([host], what="the restored container")


LOOP = r'''
import os, sys, time
prog = sys.argv[1]
i = 0
while True:
    i += 1
    with open(prog + ".tmp", "w") as f:
        f.write(f"{i}\n")
    os.rename(prog + ".tmp", prog)
    time.sleep(0.02)
'''


def case_not_pivoted(env):
    script, prog = env.path("loop.py"), env.path("progress")
    with open(script, "w") as f:
        f.write(LOOP)
    pid = env.spawn(["unshare", "--mount", "--propagation", "private", sys.executable, script, prog], name="unshare")
    wait_until(lambda: os.path.exists(prog), 10, what="the loop")
    result = env.dump(pid, env.path("images"), expect=1)
    check(f"pid {pid}" in result.stderr and "not pivoted" in result.stderr,
          f"the refusal does not say why: {result.stderr.strip()!r}")
    now = int(read_text(prog).strip())
    wait_until(lambda: int(read_text(prog).strip()) > now + 3, 10, what="the loop to go on")
    os.kill(pid, 9)
    reap([pid])


if __name__ == "__main__":
    run({"container": case_container, "twice": case_twice, "external": case_external, "unknown_root": case_unknown_root, "refused_mount": case_refused_mount,
         "unbindable": case_unbindable,
         "not_pivoted": case_not_pivoted, "deleted": case_deleted})
