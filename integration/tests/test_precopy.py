#!/usr/bin/env python3
"""dump --leave-running copies memory while the tree runs and, once it is frozen,
copies again only the pages written since. A tree that writes pages without pause
(bench-like, a parent and a child sharing pages copy-on-write, with a shared and a
file mapping too; integration/workloads/scribbler.c) is dumped with -R: restored, each
process finds every page holding exactly the write its log says came last (a page
from the copy made while it ran, written again before the freeze, would show); the
original runs on with no write tracking left (no userfaultfd registration in its
VmFlags, no write-protected page in its pagemap, no new fd) and finds its own memory
right too.

killed: cryo dump -R killed at each step of that copy and of the frozen dump after it
leaves the tree running as before, with no write tracking left.

remapping: what the copy made while the tree runs read of it (its smaps: the VmFlags of
each mapping) serves the frozen dump only while its mappings are still those: a process
that unmaps and maps small regions every 100 us, every other one with MAP_NORESERVE
(VmFlags "nr", which only smaps shows; a new region mostly takes the place of the one
just unmapped, with the same line in /proc/PID/maps; integration/workloads/remapper.c)
is dumped with -R; restored, every region it held holds its pattern and shows "nr" if
and only if it was mapped so (one mapped after that read, its flags taken from it,
would show the flags of the one before), and its pages count every write it made.

killed_making_tracker: killed at every step up to the tracking's start, the remote
syscalls that make a userfaultfd inside each process included: no fd of cryo's is
left in it (a guard closes it through the parked leader)."""
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (TestFailure, check, check_eq, fd_table, log, maps, progress, reap, run, snapshot,  # noqa: E402
                     state, status_fields, wait_progress, wait_until)

PM_UFFD_WP = 1 << 57  # pagemap: the page is write-protected by a userfaultfd


def seq(path):
    text = open(path).read().strip() if os.path.exists(path) else ""
    return int(text) if text.isdigit() else 0


def wait_seq(path, beyond, timeout=10):
    return wait_until(lambda: (lambda v: v if v > beyond else None)(seq(path)), timeout,
                      what=f"the writer to pass write {beyond}")


def tracking_left(pid):
    """What of write tracking the process still shows: registered VMAs, and pages
    write-protected in its pagemap."""
    found = []
    ranges = []
    with open(f"/proc/{pid}/smaps") as f:
        start = end = None
        for line in f:
            head = line.split(None, 1)[0] if line.strip() else ""
            if "-" in head and ":" not in head:
                start, end = (int(x, 16) for x in head.split("-"))
                ranges.append((start, end, line.split()[-1] if len(line.split()) > 5 else ""))
            elif line.startswith("VmFlags:"):
                flags = set(line.split()[1:])
                if flags & {"um", "uw", "ui"}:
                    found.append(f"{start:x}-{end:x} registered ({' '.join(sorted(flags & {'um', 'uw', 'ui'}))})")
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for start, end, name in ranges:
            if name == "[vsyscall]":
                continue
            pm.seek(start // 4096 * 8)
            data = pm.read((end - start) // 4096 * 8)
            protected = sum(1 for (e,) in struct.iter_unpack("<Q", data) if e & PM_UFFD_WP)
            if protected:
                found.append(f"{start:x}-{end:x} {name}: {protected} pages write-protected")
    return found


def uffd_fds(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[userfaultfd]":
                out.append(int(fd))
        except OSError:
            pass
    return out


def case_writer(env):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("scribbler"), ready, report, prog, env.path("mapped-file")])
    info = env.wait_ready(ready, pid)
    child = info["child"]
    wait_seq(prog, 2000)
    fds = {p: fd_table(p) for p in (pid, child)}
    images = env.path("images")
    before = seq(prog)
    env.dump(pid, images, "-R", "-v4")
    after = seq(prog)
    stats = json.load(open(os.path.join(images, "stats-dump.json")))
    log(f"writes before the dump {before}, after it {after}; stats {stats}")
    dump_log = open(env.path("dump.log")).read() if os.path.exists(env.path("dump.log")) else ""
    check(stats.get("precopy_us", 0) > 0, f"the dump copied nothing while the tree ran: {stats}")
    check(after > before, "the writer made no write during the dump (the test would prove nothing)")

    # The original runs on as before: no tracking left, no new fd, still writing.
    for p in (pid, child):
        check_eq(tracking_left(p), [], f"write tracking left in pid {p} after dump -R")
        check_eq(uffd_fds(p), [], f"userfaultfds of pid {p} after dump -R")
        check_eq(fd_table(p), fds[p], f"fd table of pid {p} after dump -R")
    wait_seq(prog, after + 2000)
    env.trigger_and_report(pid, report)
    reap([pid], what="the original")
    os.remove(report)
    os.remove(prog)

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    wait_until(lambda: os.path.exists(f"/proc/{child}"), 5, what="the restored child")
    wait_until(lambda: seq(prog) > 0 or state(pid) in (None, "Z"), 10, what="the restored writer to write")
    check(state(pid) not in (None, "Z"), f"the restored writer (pid {pid}) died: its memory is not what it wrote")
    restored = seq(prog)
    log(f"the restored writer goes on from write {restored}")
    check(before < restored, f"the restored writer is at write {restored}, before {before} seen ahead of the dump")
    time.sleep(0.2)
    env.trigger_and_report(pid, report)


def running(pid):
    """Neither stopped nor traced: every thread of pid runs on its own."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/task/{tid}/status") if ":" in line)
        if fields["State"].strip()[:1] in ("T", "t") or fields["TracerPid"].strip() != "0":
            return False
    return True


def case_killed(env):
    """cryo dump -R killed (SIGKILL, by failpoint) at each step of the copy made while the
    tree runs and of the frozen dump after it: the tree runs on exactly as before: neither
    stopped nor traced, no userfaultfd registration or write-protected page left, no new
    fd, its memory what it wrote, and no image committed."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("scribbler"), ready, report, prog, env.path("mapped-file")])
    info = env.wait_ready(ready, pid)
    child = info["child"]
    wait_seq(prog, 1000)
    fds = {p: fd_table(p) for p in (pid, child)}
    for point in ("precopy.tracked", "precopy.copying", "precopy.copied", "dump.frozen", "dump.memory",
                  "dump.commit"):
        images = env.path("images-" + point)
        env.dump_killed_at(pid, images, point, "-R")
        check(not os.path.exists(os.path.join(images, "inventory.img")), f"no image committed ({point})")
        for p in (pid, child):
            wait_until(lambda: running(p), 5, what=f"pid {p} to run on after cryo died at {point}")
            # The kernel drops a userfaultfd's registrations with its last file, which
            # only the killed cryo held.
            wait_until(lambda: not tracking_left(p), 5,
                       what=f"no write tracking left in pid {p} after cryo died at {point}")
            check_eq(uffd_fds(p), [], f"userfaultfds of pid {p} after cryo died at {point}")
            check_eq(fd_table(p), fds[p], f"fd table of pid {p} after cryo died at {point}")
        now = seq(prog)
        wait_seq(prog, now + 500)
    env.trigger_and_report(pid, report)


def case_remapping(env):
    ready, report, prog, churn = env.path("ready"), env.path("report"), env.path("progress"), env.path("churn")
    open(churn, "w").close()
    pid = env.spawn([env.workload("remapper"), ready, report, prog, 64, churn])
    env.wait_ready(ready, pid)
    wait_seq(prog, 1000)
    images = env.path("images")
    before = seq(prog)
    env.dump(pid, images, "-R", "-v4")
    after = seq(prog)
    stats = json.load(open(os.path.join(images, "stats-dump.json")))
    log(f"regions made before the dump {before}, after it {after}; stats {stats}")
    check(stats.get("precopy_us", 0) > 0, f"the dump copied nothing while the tree ran: {stats}")
    check(after > before, "the process mapped nothing new during the dump (the test would prove nothing)")
    env.trigger_and_report(pid, report)  # the original's own regions
    os.remove(report)
    os.remove(churn)  # the restored copy keeps the regions of the image
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    time.sleep(0.1)
    env.trigger_and_report(pid, report)


def case_killed_making_tracker(env):
    """cryo dump -R killed (SIGKILL) at every step of its early phase (@1, @2, ... up to
    the failpoint precopy.tracked: the freeze, then for each process the guard started,
    its threads parked, and each remote syscall: making the userfaultfd inside it,
    closing it there again). The guard, told the fd before it is made, closes it through
    the parked leader: every process runs on with no userfaultfd among its fds, its fd
    table, maps and threads' signal masks as before, not stopped nor traced; a dump -R
    then restores."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2", "--child"])
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)

    def current(p):
        return {"fds": fd_table(p), "uffds": uffd_fds(p), "maps": maps(p),
                "masks": {t: status_fields(p, t, keys=("SigBlk",)) for t in tree[p]["tids"]}}

    before = {p: current(p) for p in tree}
    check(any(len(tree[p]["tids"]) > 1 for p in tree), f"no process of the tree has threads: {tree}")
    step, kills = 0, []
    while True:
        step += 1
        name, _ = env.dump_killed_at(pid, env.path(f"killed-{step}"), step, "-R")
        if name == "precopy.tracked":
            break
        kills.append(name)
        for p in tree:
            # The guard gives every parked thread back once it closed the userfaultfd.
            try:
                wait_until(lambda: running(p) and state(p) not in ("Z", None) and current(p) == before[p], 5,
                           what=f"pid {p} as before")
            except TestFailure:
                now = current(p) if state(p) not in ("Z", None) else "dead"
                raise TestFailure(f"cryo dump -R killed at @{step} ({name}) left pid {p} changed: {now} "
                                  f"(before: {before[p]})")
            check_eq(tracking_left(p), [], f"write tracking left in pid {p} after cryo died at @{step} ({name})")
        now = progress(prog)
        for i in range(3):
            wait_progress(prog, now[i] + 1, index=i)
    log(f"dump -R killed at {len(kills)} steps: {' '.join(kills)}")
    check(kills.count("remote.syscall") >= 2 * len(tree) and "tracker.parked" in kills,
          f"the kills missed making the userfaultfds: {kills}")
    images = env.path("images")
    env.dump(pid, images, "-R")
    check_eq([p for p in tree if uffd_fds(p)], [], "processes with a userfaultfd after dump -R")
    env.trigger_and_report(pid, report)
    reap([pid], what="the original")
    os.remove(report)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"writer": case_writer, "killed": case_killed, "remapping": case_remapping,
         "killed_making_tracker": case_killed_making_tracker})
