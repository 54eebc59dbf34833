#!/usr/bin/env python3
"""With CRYO_TASK_WRITES=1 (set here for every cryo this test runs), a frozen dump has each
process with enough memory write its own private pages into a page file of the image of
its own (core/mm/task_write.h), and reads what it cannot write the usual way.

memory: a process (integration/workloads/taskmem.c) with 24 MiB of a pattern among
present all-zero pages, 16 MiB written and zeroed again, a PROT_NONE region and a
write-only one holding patterns, and a second thread counting: the dump's stats show the
process wrote its pages (pages_written_by_tasks), the zero pages it wrote are punched
out of its page file (the page files' blocks hold less than the process's memory), and
restored it finds every byte and its thread counting. The punched bytes are checked like
the rest: a byte written into a hole of that file makes the restore refuse the image, naming the
checksum, and leaves no process; put back to zero, the image restores.
(Protection keys: this machine's CPU has none, pkey_alloc fails; cryo does not save them.)

container: the same in a pid and mount namespace of its own, the image directory on a
tmpfs mounted after it started, which it cannot see: the fd goes in without a path.

default: without CRYO_TASK_WRITES (the default), cryo reads the same process's pages
itself (pages_written_by_tasks 0), and the restored process finds every byte.

killed: cryo dump killed (SIGKILL) at every step from the parking of the process's
threads for its writes to the end of its writes (failpoints, each remote syscall: the
socket pair, closing it, recvmsg of the page file's fd, each pwritev, closing the fd): the
process runs on with its fd table, maps and threads' signal masks as before, not stopped
nor traced, its thread counting; then it dumps and restores."""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (TestFailure, check, check_eq, fd_table, log, maps, page_files, read_text, reap, run,  # noqa: E402
                     state, status_fields, tids, wait_until)

MIB = 1 << 20
os.environ["CRYO_TASK_WRITES"] = "1"  # for every cryo this test runs, but the default case's


@contextlib.contextmanager
def tmpfs(path, size_mib=256):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "cryo-taskwrite", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


SETUP = r"""
set -e
R={root}
mount --bind $R $R
mount -t proc proc $R/proc
mount --bind {out} $R/out
cd $R
pivot_root . .
/bin/busybox umount -l .
exec /bin/taskmem /out/ready /out/report </dev/null >/dev/null 2>&1
"""


def make_rootfs(env, out):
    """A root of its own for the container: busybox (to let go of the old root), the
    workload and the libraries it loads."""
    root = env.path("rootfs")
    for d in ("bin", "proc", "out", "dev"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    shutil.copy(env.workload("taskmem"), os.path.join(root, "bin", "taskmem"))
    libs = subprocess.run(["ldd", env.workload("taskmem")], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", libs):
        os.makedirs(root + os.path.dirname(lib), exist_ok=True)
        shutil.copy(lib, root + lib)
    open(os.path.join(root, "dev", "null"), "w").close()
    script = env.path("setup.sh")
    with open(script, "w") as f:
        f.write(SETUP.format(root=root, out=out))
    return script


def start(env, container=False):
    if not container:
        ready, report = env.path("ready"), env.path("report")
        pid = env.spawn([env.workload("taskmem"), ready, report])
        env.wait_ready(ready, pid)
        return None, pid, report
    out = env.path("out")
    os.makedirs(out)
    script = make_rootfs(env, out)
    outer = env.spawn(["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "setsid", "sh", script],
                      name="unshare")
    info = env.wait_ready(os.path.join(out, "ready"), outer)
    check_eq(info["pid"], 1, "the workload's pid in its namespace")
    children = [int(x) for x in read_text(f"/proc/{outer}/task/{outer}/children").split()]
    check_eq(len(children), 1, "children of unshare")
    return outer, children[0], os.path.join(out, "report")


def stats_of(images):
    with open(os.path.join(images, "stats-dump.json")) as f:
        return json.load(f)


def check_written(images):
    stats = stats_of(images)
    log(f"stats: {stats}")
    # A: 24 MiB of which 2/5 or so are zero pages; Z: 16 MiB of zero pages. All of them
    # present: the process writes them, and the zero ones are punched out again.
    check(stats.get("pages_written_by_tasks", 0) >= 40 * MIB,
          f"the process wrote {stats.get('pages_written_by_tasks')} bytes of its pages itself (want 40 MiB or more)")
    check_eq(stats["pages_copied_in"] >= stats["pages_written_by_tasks"], True, "bytes read back >= bytes written")
    files = page_files(images)
    held = sum(os.stat(f).st_blocks * 512 for f in files)
    log(f"page files {[os.path.basename(f) for f in files]}: {sum(os.path.getsize(f) for f in files)} bytes, "
        f"{held} held in blocks")
    check(held < 24 * MIB, f"the page files hold {held} bytes: the zero pages written were not punched out")


def first_hole(path):
    with open(path, "rb") as f:
        return os.lseek(f.fileno(), 0, os.SEEK_HOLE)


def case_memory(env):
    _, pid, report = start(env)
    with tmpfs(env.path("store")) as store:
        images = os.path.join(store, "images")
        env.dump(pid, images)
        reap([pid], what="the dumped workload")
        check_written(images)
        # A byte in a hole punched out of the page file the process wrote: named by no
        # process, checked all the same.
        holed = [f for f in page_files(images) if first_hole(f) < os.path.getsize(f)]
        check(len(holed) == 1, f"page files with a hole: {holed} (want the one the process wrote)")
        with open(holed[0], "r+b") as f:
            hole = os.lseek(f.fileno(), 0, os.SEEK_HOLE)
            os.pwrite(f.fileno(), b"\x01", hole + 100)
            result, _ = env.restore(images, expect=1)
            check("checksum mismatch" in result.stderr and "no process names" in result.stderr,
                  f"the restore of an image with a byte in a hole: {result.stderr.strip()!r}")
            check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} exists after the refused restore")
            os.pwrite(f.fileno(), b"\x00", hole + 100)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        env.trigger_and_report(pid, report)


def case_default(env):
    _, pid, report = start(env)
    images = env.path("images")
    saved = os.environ.pop("CRYO_TASK_WRITES")
    try:
        env.dump(pid, images)
    finally:
        os.environ["CRYO_TASK_WRITES"] = saved
    reap([pid], what="the dumped workload")
    stats = stats_of(images)
    check_eq(stats.get("pages_written_by_tasks", 0), 0, "bytes the process wrote itself without CRYO_TASK_WRITES")
    check(stats["pages_copied_in"] >= 24 * MIB, f"cryo read {stats['pages_copied_in']} bytes (want 24 MiB or more)")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_container(env):
    outer, root, report = start(env, container=True)
    with tmpfs(env.path("store")) as store:  # mounted after the container's namespace was made
        check(not os.path.exists(f"/proc/{root}/root{store}/.") or
              os.stat(f"/proc/{root}/root{store}").st_dev != os.stat(store).st_dev,
              "the container sees the image directory's tmpfs")
        images = os.path.join(store, "images")
        env.dump(root, images)
        reap([outer, root], what="unshare and the dumped workload")
        check_written(images)
        _, host = env.restore(images)
        check(host is not None, "no pid in the pid file")
        check(os.readlink(f"/proc/{host}/ns/pid") != os.readlink("/proc/self/ns/pid"), "restored in cryo's pid ns")
        env.trigger_and_report(host, report)


def case_killed(env):
    _, pid, report = start(env)
    threads = tids(pid)
    check_eq(len(threads), 2, "threads of the workload")

    def current():
        return {"fds": fd_table(pid), "maps": maps(pid),
                "threads": {t: status_fields(pid, t, keys=("SigBlk", "TracerPid", "State")) for t in tids(pid)}}

    before = current()
    with tmpfs(env.path("store"), size_mib=128) as store:
        # The step at which the process's threads are parked for its writes.
        _, result = env.dump_killed_at(pid, os.path.join(store, "first"), "taskwrite.guarded")
        first = int(re.search(r"failpoint taskwrite.guarded #1 \(step (\d+)\)", result.stderr).group(1))
        step, kills = first - 1, []
        while True:
            step += 1
            images = os.path.join(store, f"killed-{step}")
            name, _ = env.dump_killed_at(pid, images, step)
            subprocess.run(["rm", "-rf", images], check=False)
            if name == "dump.memory":
                break
            kills.append(name)
            try:
                wait_until(lambda: state(pid) not in ("Z", None, "T", "t") and current() == before, 10,
                           what=f"pid {pid} as before")
            except TestFailure:
                raise TestFailure(f"cryo dump killed at @{step} ({name}) left pid {pid} changed: {current()} "
                                  f"(before: {before})")
        log(f"dump killed at {len(kills)} steps: {' '.join(kills)}")
        for want in ("taskwrite.parked", "taskwrite.socketpair", "taskwrite.passed", "taskwrite.writing"):
            check(want in kills, f"the kills missed {want}: {kills}")
        # socketpair, close, recvmsg, close, two pwritev at least (32 MiB each on tmpfs), close
        check(kills.count("remote.syscall") >= 7, f"the kills missed the remote syscalls: {kills}")
        images = os.path.join(store, "images")
        env.dump(pid, images)
        reap([pid], what="the dumped workload")
        check_written(images)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"memory": case_memory, "default": case_default, "container": case_container, "killed": case_killed})
