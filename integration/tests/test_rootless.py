#!/usr/bin/env python3
"""Process mode, a rootless container: a tree with a user namespace of its own and, owned by it,
its own mount, pid and network namespaces, a busybox rootfs pivoted into, a tmpfs /tmp with
files, a proc and a sysfs of its own (which the kernel only lets a user namespace mount while a
fully visible instance is in its mount namespace: the restore must make them before it has
pivoted).

- mount_ns: `unshare --user --map-root-user --mount --pid --net --fork`, the counter as pid 1
  of its pid namespace; after the restore it counts on and checks from inside: its uid_map is
  "0 0 1", it is uid 0 and pid 1, /proc is its pid namespace's, /sys shows its network
  namespace's devices (lo only), the tmpfs kept its files (mode, owner) and the fd on one of them.
- shifted: the same under a shifted map (0 -> 200000, 65536 ids): the tmpfs's owners come back
  as the tree saw them."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, check_eq, read_text, reap, run, wait_until  # noqa: E402
import test_mount_ns as mount_ns  # noqa: E402

COUNTER = r'''#!/bin/busybox sh
exec 5</tmp/kept
i=0
while :; do
  i=$((i+1))
  echo $i > /out/count.tmp && mv /out/count.tmp /out/count
  if [ -e /out/check ]; then
    problems=""
    [ "$(cat /tmp/kept)" = "kept data" ] || problems="$problems kept=$(cat /tmp/kept)"
    [ "$(stat -c %a.%u.%g /tmp/kept)" = "640.{owner}" ] || problems="$problems mode=$(stat -c %a.%u.%g /tmp/kept)"
    read -r line <&5
    [ "$line" = "kept data" ] || problems="$problems fd5=$line"
    [ "$$" = "1" ] || problems="$problems pid=$$"
    [ "$(cat /proc/1/comm)" = "busybox" ] || problems="$problems proc1=$(cat /proc/1/comm)"
    map="$(cat /proc/self/uid_map)"
    set -- $map
    [ "$1 $2 $3" = "{want_map}" ] || problems="$problems uid_map=$1.$2.$3"
    [ "$(stat -c %u /proc/1)" = "0" ] || problems="$problems proc1-owner=$(stat -c %u /proc/1)"
    set -- $(grep Uid /proc/self/status)
    [ "$2.$5" = "0.0" ] || problems="$problems uid=$2.$5"
    [ "$(ls /sys/class/net)" = "lo" ] || problems="$problems sys=$(ls /sys/class/net | tr '\n' ' ')"
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
mount -t sysfs sysfs $R/sys
mount --bind {out} $R/out
printf 'kept data\n' > $R/tmp/kept
chown {owner_chown} $R/tmp/kept
chmod 640 $R/tmp/kept
cd $R
pivot_root . .
/bin/busybox umount -l .
exec /bin/busybox sh /bin/counter.sh </out/in >>/out/log 2>&1
'''

# A shifted map: the outer unshare makes the user namespace and waits; the host writes its maps.
SHIFTED = r'''
import os, sys, time, ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    sys.exit("unshare: %d" % ctypes.get_errno())
with open(sys.argv[1], "w") as f:
    f.write("yes")
while not open("/proc/self/gid_map").read().strip():  # the test writes the maps, gid_map last
    time.sleep(0.01)
os.setgroups([])
os.setresgid(0, 0, 0)
os.setresuid(0, 0, 0)
os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--pid", "--net", "--fork", "setsid", "sh",
                      sys.argv[2]])
'''


def start(env, shifted):
    os.chmod(env.dir, 0o755)  # the namespace's root is no root here
    root = mount_ns.make_rootfs(env)
    os.makedirs(os.path.join(root, "sys"))
    for applet in ("ls", "tr", "grep"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    want_map = "0 200000 65536" if shifted else "0 0 1"
    owner = "1234.2345" if shifted else "0.0"
    with open(os.path.join(root, "bin", "counter.sh"), "w") as f:
        f.write(COUNTER.replace("{want_map}", want_map).replace("{owner}", owner))
    out = env.path("out")
    os.makedirs(out)
    os.chmod(out, 0o777)
    open(os.path.join(out, "in"), "w").close()
    script = env.path("setup.sh")
    with open(script, "w") as f:
        f.write(SETUP.format(root=root, out=out, owner_chown=owner.replace(".", ":")))
    if shifted:
        os.chown(root, 200000, 200000)
        for d in ("proc", "sys", "tmp", "out", "mnt", "bin"):
            os.chown(os.path.join(root, d), 200000, 200000)
        os.chown(out, 200000, 200000)
        os.chown(os.path.join(out, "in"), 200000, 200000)
        program = env.path("shifted.py")
        with open(program, "w") as f:
            f.write(SHIFTED)
        flag = env.path("unshared")
        outer = env.spawn([sys.executable, program, flag, script], name="unshare")
        env.wait_file(flag, pid=outer, what="the user namespace")
        for kind in ("uid_map", "gid_map"):
            with open(f"/proc/{outer}/{kind}", "w") as f:
                f.write("0 200000 65536\n")
    else:
        outer = env.spawn(["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--pid",
                           "--net", "--fork", "setsid", "sh", script], name="unshare")
    wait_until(lambda: mount_ns.count(out) >= 2, 10, what="the counter in the container")
    children = [int(x) for x in read_text(f"/proc/{outer}/task/{outer}/children").split()]
    check_eq(len(children), 1, "children of unshare")
    return outer, children[0], out


def round_trip(env, shifted):
    outer, root, out = start(env, shifted)
    for kind in ("user", "mnt", "pid", "net"):
        check(os.readlink(f"/proc/{root}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}"), f"no {kind} namespace")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    before = mount_ns.count(out)
    _, host = env.restore(images)
    check(host is not None, "no pid in the pid file")
    check_eq(mount_ns.mount_points(host), ["/", "/out", "/proc", "/sys", "/tmp"], "mount points of the restored tree")
    wait_until(lambda: mount_ns.count(out) > before + 2, 10, what="the counter to go on after the restore")
    open(os.path.join(out, "check"), "w").close()
    report = wait_until(lambda: read_text(os.path.join(out, "report")), 10, what="the container's report")
    check_eq(report.strip(), "OK", "the container's report")
    reap([host], what="the restored container")


def case_mount_ns(env):
    round_trip(env, shifted=False)


def case_shifted(env):
    round_trip(env, shifted=True)


if __name__ == "__main__":
    run({"mount_ns": case_mount_ns, "shifted": case_shifted})
