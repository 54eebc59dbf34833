#!/usr/bin/env python3
"""Process mode, an IPC namespace the tree owns (workloads/ipcns.c under `unshare --ipc`).

- ipc_ns: the root and its child in an IPC namespace of their own, which holds three
  System V segments (one attached by both, one never attached and sparse, made by another
  user, one removed while attached), a semaphore set, a message queue with messages of
  several types, a POSIX message queue with messages of several priorities, and sysctls set
  inside. After dump and restore the program finds every id, key, owner, mode, value, byte
  and message order as it made them, in a new namespace; the host's IPC namespace never
  holds any of them; inspect shows them.
- ipc_ns_twice: the same with a pid namespace of the tree's own (`unshare --pid --fork
  --ipc`): one image restored twice, side by side, each copy in a namespace of its own and
  each finding all its objects (the POSIX queue is read by taking its messages: a shared one
  would fail one of them).
- ipc_ns_new_pidns: a tree of cryo's pid namespace in an IPC namespace of its own, restored
  twice at once with --new-pidns: each copy under cryo's init gets an IPC namespace of its own
  and finds all its objects.
- ipc_ns_container: the program as a container's init, with a pid, mount and IPC namespace of
  its own (a pivoted root, an mqueue filesystem mounted at /dev/mqueue): after the restore it
  finds everything, and the restored mqueue mount shows the new namespace's queue.
- ipc_ns_failed_restore: a restore killed once the processes exist (the namespace and its
  objects made), or while memory is restored, leaves no process behind, and so no namespace;
  the image then restores and the program finds everything.
- ipc_ns_failed_dump: a dump killed once it has read the namespace (POSIX messages taken
  and put back) leaves it as it was: the program finds everything.
- ipc_ns_nested: a child in an IPC namespace of its own below the root refuses the dump,
  naming it; the tree runs on.
- ipc_ns_mq_fd: a descriptor of a POSIX message queue open in the tree refuses the dump, naming
  the pid, the fd and the queue; the tree runs on.
- ipc_ns_outsider: a process outside the tree in its IPC namespace (nsenter) refuses the
  dump, naming it; the tree runs on."""
import ctypes
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, descendants, read_text, reap, run, snapshot, status_fields,  # noqa: E402
                     wait_until)

KEYS = (0x0c71a001, 0x0c71a002, 0x0c71a003)
MQ_NAME = b"/cryo-ipcns-test"


def ipc_of(pid):
    return os.readlink(f"/proc/{pid}/ns/ipc")


def check_host_untouched():
    """None of the workload's objects is in cryo's (the host's) IPC namespace."""
    for kind in ("shm", "sem", "msg"):
        for line in read_text(f"/proc/sysvipc/{kind}").splitlines()[1:]:
            fields = line.split()
            check(fields and int(fields[0]) not in KEYS, f"the host's IPC namespace holds {kind} {line.strip()}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mq_open.restype = ctypes.c_int
    fd = libc.mq_open(MQ_NAME, os.O_RDONLY)
    if fd >= 0:
        os.close(fd)
    check(fd < 0 and ctypes.get_errno() == 2, "the host's IPC namespace holds the POSIX queue")


def start(env, nested=False, pid_ns=False, mode=None):
    ready, report = env.path("ready"), env.path("report")
    argv = [env.workload("ipcns"), ready, report] + (["nested"] if nested else []) + ([mode] if mode else [])
    if pid_ns:
        outer = env.spawn(["unshare", "--pid", "--fork", "--ipc", "setsid"] + argv, name="unshare")
        info = env.wait_ready(ready, outer)
        children = [int(x) for x in read_text(f"/proc/{outer}/task/{outer}/children").split()]
        check_eq(len(children), 1, "children of unshare")
        root = children[0]
    else:
        # unshare without --fork: the program itself is the root, in its own namespace.
        root = outer = env.spawn(["unshare", "--ipc"] + argv, name="ipcns")
        info = env.wait_ready(ready, root)
    check(ipc_of(root) != ipc_of(os.getpid()), "the workload is not in an ipc namespace of its own")
    return outer, root, info, report


def case_ipc_ns(env):
    _, pid, info, report = start(env)
    check_host_untouched()
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    shown = env.cryo("inspect", images).stdout.replace(" ", "")
    for what in ('"id":4242', '"id":777', '"id":99', "cryo-ipcns-test", "msgmnb"):
        check(what in shown, f"inspect does not show {what}")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    check(ipc_of(pid) != ipc_of(os.getpid()), "the restored root shares cryo's ipc namespace")
    check_eq(ipc_of(info["child"]), ipc_of(pid), "the restored child's ipc namespace")
    check_host_untouched()
    env.trigger_and_report(pid, report)
    check_host_untouched()


def case_ipc_ns_twice(env):
    outer, root, info, report = start(env, pid_ns=True)
    check_eq(info["pid"], 1, "the program's pid inside")
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped root")
    copies = []
    for _ in range(2):
        _, host = env.restore(images)
        check(host is not None, "no pid in the pid file")
        check_eq(status_fields(host, keys=("NSpid",))["NSpid"].split()[-1], "1", "the restored root's pid inside")
        check(ipc_of(host) != ipc_of(os.getpid()), "the restored root shares cryo's ipc namespace")
        copies.append(host)
    check(ipc_of(copies[0]) != ipc_of(copies[1]), "two restores share one ipc namespace")
    check_host_untouched()
    for host in copies:
        env.trigger_and_report(host, report)
        os.unlink(report)


CONTAINER_SETUP = r'''
set -e
R={root}
mount --bind $R $R
mount -t proc proc $R/proc
mount -t mqueue mqueue $R/dev/mqueue
mount --bind {out} $R/out
cd $R
pivot_root . .
/bin/busybox umount -l .
exec /bin/ipcns /out/ready /out/report </out/ready.in >/out/log 2>&1
'''


def make_rootfs(env):
    """A root with the workload, the libraries it links and busybox (to unmount the old root)."""
    root = env.path("rootfs")
    for d in ("bin", "proc", "dev/mqueue", "out"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy(env.workload("ipcns"), os.path.join(root, "bin", "ipcns"))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    libs = subprocess.run(["ldd", env.workload("ipcns")], capture_output=True, text=True, check=True).stdout
    for line in libs.splitlines():
        path = [w for w in line.split() if w.startswith("/")]
        if path:
            os.makedirs(os.path.dirname(root + path[0]), exist_ok=True)
            shutil.copy(path[0], root + path[0])
    return root


def case_ipc_ns_new_pidns(env):
    _, pid, info, report = start(env)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    copies = []
    for _ in range(2):
        _, host = env.restore(images, "--new-pidns")
        check(host is not None, "no pid in the pid file")
        check_eq(status_fields(host, keys=("NSpid",))["NSpid"].split()[-1], str(pid), "the restored root's pid inside")
        init = int(status_fields(host, keys=("PPid",))["PPid"])
        check_eq(ipc_of(init), ipc_of(os.getpid()), "cryo's init's ipc namespace")
        check(ipc_of(host) != ipc_of(os.getpid()), "the restored root shares cryo's ipc namespace")
        copies.append((host, init))
    check(ipc_of(copies[0][0]) != ipc_of(copies[1][0]), "two restores share one ipc namespace")
    for host, init in copies:
        env.trigger_and_report(host, report)
        os.unlink(report)
        reap([init], what="cryo's init once the root has ended")


def case_ipc_ns_container(env):
    root, out = make_rootfs(env), env.path("out")
    os.makedirs(out)
    open(os.path.join(out, "ready.in"), "w").close()  # its stdin: a file of its own, as a container has
    script = env.path("setup.sh")
    with open(script, "w") as f:
        f.write(CONTAINER_SETUP.format(root=root, out=out))
    outer = env.spawn(["unshare", "--pid", "--fork", "--mount", "--ipc", "--propagation", "private", "setsid", "sh",
                       script], name="unshare")
    info = env.wait_ready(os.path.join(out, "ready"), outer)
    check_eq(info["pid"], 1, "the program's pid inside")
    pid = [int(x) for x in read_text(f"/proc/{outer}/task/{outer}/children").split()][0]
    check(ipc_of(pid) != ipc_of(os.getpid()), "the container is not in an ipc namespace of its own")
    images = env.path("images")
    env.dump(pid, images)
    reap([outer, pid], what="unshare and the dumped container")
    _, host = env.restore(images)
    check(host is not None, "no pid in the pid file")
    check(ipc_of(host) != ipc_of(os.getpid()), "the restored container shares cryo's ipc namespace")
    check(os.path.exists(f"/proc/{host}/root/dev/mqueue/cryo-ipcns-test"),
          "the restored mqueue mount does not show the POSIX queue")
    check_host_untouched()
    env.trigger_and_report(host, os.path.join(out, "report"))


def case_ipc_ns_failed_restore(env):
    _, pid, info, report = start(env)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    for point in ("restore.stubs", "restore.memory"):
        left_before = set(descendants(os.getpid()))
        env.cryo("restore", "-D", images, "-d", expect=-9, env_extra={"CRYO_FAILPOINT": point})
        # The stubs die with the restorer (and come to us, the subreaper): the namespace with them.
        reap(sorted(set(descendants(os.getpid())) - left_before), timeout=10,
             what=f"processes left after the restore failed at {point}")
        check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} is still there after the restore failed at {point}")
        check_host_untouched()
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_ipc_ns_failed_dump(env):
    _, pid, info, report = start(env)
    result = env.cryo("dump", "-t", str(pid), "-D", env.path("images"), expect=-9,
                      env_extra={"CRYO_FAILPOINT": "dump.memory"})
    check("failpoint dump.memory" in result.stderr, f"the dump did not die where asked: {result.stderr.strip()!r}")
    check(os.path.exists(f"/proc/{pid}"), "the tree is gone after the failed dump")
    env.trigger_and_report(pid, report)


def case_ipc_ns_nested(env):
    _, pid, info, report = start(env, nested=True)
    check(ipc_of(info["child"]) != ipc_of(pid), "the child is not in an ipc namespace of its own")
    result = env.dump(pid, env.path("images"), expect=1)
    check(f"pid {info['child']}" in result.stderr and "ipc namespace of its own" in result.stderr,
          f"the refusal does not name pid {info['child']} and its ipc namespace: {result.stderr.strip()!r}")
    env.trigger_and_report(pid, report)


def case_ipc_ns_mq_fd(env):
    _, pid, info, report = start(env, mode="mqfd")
    result = env.dump(pid, env.path("images"), expect=1)
    check(f"pid {pid} fd {info['mqfd']}" in result.stderr and "cryo-ipcns-test" in result.stderr and
          "message queue" in result.stderr,
          f"the refusal does not name pid {pid}, fd {info['mqfd']} and the queue: {result.stderr.strip()!r}")
    env.trigger_and_report(pid, report)


def case_ipc_ns_outsider(env):
    _, pid, info, report = start(env)
    stray = env.spawn(["nsenter", "-t", str(pid), "--ipc", "--", "sleep", "1000"], name="nsenter")
    wait_until(lambda: ipc_of(stray) == ipc_of(pid), 10, what="nsenter entering the namespace")
    result = env.dump(pid, env.path("images"), expect=1)
    check(f"pid {stray}" in result.stderr and "ipc namespace" in result.stderr,
          f"the refusal does not name pid {stray}: {result.stderr.strip()!r}")
    os.kill(stray, 9)
    reap([stray], what="the process in the namespace from outside")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"ipc_ns": case_ipc_ns, "ipc_ns_twice": case_ipc_ns_twice, "ipc_ns_new_pidns": case_ipc_ns_new_pidns,
         "ipc_ns_container": case_ipc_ns_container,
         "ipc_ns_failed_restore": case_ipc_ns_failed_restore,
         "ipc_ns_failed_dump": case_ipc_ns_failed_dump,
         "ipc_ns_nested": case_ipc_ns_nested, "ipc_ns_mq_fd": case_ipc_ns_mq_fd, "ipc_ns_outsider": case_ipc_ns_outsider})
