#!/usr/bin/env python3
"""Memory layouts (private file mapping with COW pages, shared file mapping, PROT_NONE,
brk heap, guard page, read-only anonymous memory) and open files (offsets, dup,
O_APPEND, CLOEXEC, directory, /dev/null, /dev/zero, FIFO and pipe with data, a file
description shared with a child)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, compare_vma_flags, fd_table, log,  # noqa
                     maps, read_text, reap, run, snapshot, state, vma_flags)


def dump_restore_verify(env, *extra, hold_fifo=False):
    work = env.path("work")
    os.mkdir(work)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("memfiles"), ready, report, work, *extra])
    info = env.wait_ready(ready, pid)
    # Held open from outside, the FIFO keeps its 300 bytes through the dump:
    # the restore must not write them a second time.
    holder = os.open(os.path.join(work, "fifo"), os.O_RDONLY | os.O_NONBLOCK) if hold_fifo else None
    before = snapshot(pid)
    check_eq(sorted(before), sorted([pid, info["child"]]), "tasks")
    maps_before = {p: maps(p) for p in before}
    flags_before = {p: vma_flags(p) for p in before}
    fds_before = {p: fd_table(p) for p in before}
    files_before = {name: open(os.path.join(work, name), "rb").read()
                    for name in ("data.bin", "reg.txt", "app.log", "shared_off.txt", "shared.bin")}

    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    for name, data in files_before.items():
        check_eq(open(os.path.join(work, name), "rb").read() == data, True, f"{name} unchanged by the dump")

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    for p in before:
        env.soft(compare_maps, maps_before[p], maps(p), f"pid {p}")
        env.soft(compare_vma_flags, flags_before[p], vma_flags(p), f"pid {p}")
        env.soft(check_eq, fd_table(p), fds_before[p], f"fd table of pid {p}")
    env.trigger_and_report(pid, report)
    if holder is not None:
        os.close(holder)


def case_memfiles(env):
    dump_restore_verify(env)


def case_fifo_held_outside(env):
    dump_restore_verify(env, hold_fifo=True)


def case_madv_guard(env):
    """A MADV_GUARD_INSTALL guard page (kernel 6.13+; invisible in /proc/PID/maps) still
    faults after restore, and the pages around it keep their data."""
    work = env.path("work")
    os.mkdir(work)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("memfiles"), ready, report, work, "--madv-guard"])
    info = env.wait_ready(ready, pid)
    if not isinstance(info["madv"], int):
        log("this kernel has no MADV_GUARD_INSTALL: nothing to test")
        return
    before = snapshot(pid)
    layout = {p: maps(p) for p in before}
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    for p in before:
        env.soft(compare_maps, layout[p], maps(p), f"pid {p}")
    env.trigger_and_report(pid, report)


NAMES = ["looks (deleted)", "with\nnewline", "spaces  and\ttab", "ünïcødé", "-dash", " (deleted) (deleted)"]
HOLDER = r'''
import os, sys, time
work, ready, report = sys.argv[1:4]
names = sys.argv[4:]
files = [open(os.path.join(work, n), "r+") for n in names]
for f in files:
    f.seek(3)
os.chdir(os.path.join(work, names[0] + ".d"))
open(ready, "w").write("READY pid=%d\n" % os.getpid())
while not os.path.exists(report + ".go"):
    time.sleep(0.02)
bad = [n for n, f in zip(names, files) if f.tell() != 3 or f.read() != "tents of " + n]
bad += ["cwd"] if os.getcwd() != os.path.join(work, names[0] + ".d") else []
open(report, "w").write("OK\n" if not bad else "FAIL: %r\n" % bad)
'''


def case_tricky_names(env):
    """Files whose names look like kernel annotations or hold newlines, tabs, non-ASCII:
    each fd is the same file at the same offset after restore (or, at worst, the dump is
    refused naming it; never a wrong file)."""
    work = env.path("work")
    os.mkdir(work)
    for name in NAMES:
        with open(os.path.join(work, name), "w") as f:
            f.write("contents of " + name)
    os.mkdir(os.path.join(work, NAMES[0] + ".d"))
    script = env.path("holder.py")
    with open(script, "w") as f:
        f.write(HOLDER)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn(["/usr/bin/python3", script, work, ready, report, *NAMES], name="holder")
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    fds = fd_table(pid)
    images = env.path("images")
    result = env.dump(pid, images, expect=None)
    check_eq(result.returncode, 0, f"dump exit code (files named {NAMES!r}): {result.stderr.strip()}")
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(check_eq, fd_table(pid), fds, "fd table")
    open(report + ".go", "w").close()
    text = env.wait_file(report, what="the holder's report")
    reap([pid])
    check(text.startswith("OK"), f"holder reports: {text.strip()}")


LOCKER = r'''
import fcntl, os, sys, time
base = sys.argv[1]
f = open(base + ".flock", "w")
fcntl.flock(f, fcntl.LOCK_EX)
g = open(base + ".posix", "w")
fcntl.lockf(g, fcntl.LOCK_EX)
open(sys.argv[2], "w").write(f"READY pid={os.getpid()}\n")
time.sleep(1000)
'''


def case_file_locks(env):
    """A flock() and a POSIX lock (a daemon's pid file, a database): after restore the
    process still holds both, so no second instance can take them; or the dump is refused,
    naming the pid. Never silently dropped."""
    import fcntl
    base, ready = env.path("lockfile"), env.path("ready")
    pid = env.spawn(["/usr/bin/python3", "-c", LOCKER, base, ready], name="locker")
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    images = env.path("images")
    result = env.dump(pid, images, expect=None)
    if result.returncode != 0:
        check_eq(result.returncode, 1, "exit code of the refused dump")
        check(f"pid {pid}" in result.stderr, f"the refusal does not name pid {pid}: {result.stderr.strip()!r}")
        compare_snapshots(before, snapshot(pid), pid)
        return
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    held = [line for line in read_text("/proc/locks", "").splitlines() if f" {pid} " in line]
    log(f"locks of {pid} after restore: {held}")
    for suffix, take in ((".flock", fcntl.flock), (".posix", fcntl.lockf)):
        with open(base + suffix, "w") as f:
            try:
                take(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                env.problems.append(f"the {suffix[1:]} lock was dropped: another process took it after restore")
            except OSError:
                pass


SPARSE_GHOST = r'''
import os, sys, time
ready, path = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
os.pwrite(fd, b"head" * 1024, 0)
os.pwrite(fd, b"tail" * 1024, (1 << 30) - 4096)
os.utime(fd, (978307200.5, 978307201.25))
os.unlink(path)
mem = os.memfd_create("dated")
os.write(mem, b"memfd data")
os.utime(mem, (1000000000, 1000000001))
with open(ready, "w") as f:
    f.write(f"{fd} {mem}")
while True:
    time.sleep(1)
'''


def case_sparse_ghost(env):
    """A deleted file of 1 GiB holding 8 KiB of data passes --ghost-limit 1M (the data is
    counted, not the size); it and a memfd keep their modification and access times, size
    and data."""
    script, ready, path = env.path("ghost.py"), env.path("ghost.ready"), env.path("sparse.bin")
    with open(script, "w") as f:
        f.write(SPARSE_GHOST)
    pid = env.spawn(["/usr/bin/python3", script, ready, path], name="ghost")
    fds = env.wait_file(ready, pid=pid).split()

    def view():
        out = {}
        for fd in fds:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
            with open(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NOATIME), "rb") as f:  # atime stays
                head = f.read(16)
                f.seek(max(st.st_size - 16, 0))
                tail = f.read(16)
            out[fd] = (st.st_size, st.st_mode, st.st_mtime_ns, st.st_atime_ns, head, tail,
                       os.readlink(f"/proc/{pid}/fd/{fd}"))
        return out

    before, tree = view(), snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--ghost-limit", "1M")
    env.wait_dumped(tree)
    env.restore(images)
    check_eq(view(), before, "the deleted file and the memfd after the restore")


if __name__ == "__main__":
    run({"memfiles": case_memfiles, "sparse_ghost": case_sparse_ghost, "fifo_held_outside": case_fifo_held_outside, "madv_guard": case_madv_guard, "tricky_names": case_tricky_names,
         "file_locks": case_file_locks})
