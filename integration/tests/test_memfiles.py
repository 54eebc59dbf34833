#!/usr/bin/env python3
"""Memory layouts (private file mapping with COW pages, shared file mapping, PROT_NONE,
brk heap, guard page, read-only anonymous memory) and open files (offsets, dup,
O_APPEND, CLOEXEC, directory, /dev/null, /dev/zero, FIFO and pipe with data, a file
description shared with a child)."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, compare_vma_flags, fd_table, log,  # noqa
                     maps, run, snapshot, state, vma_flags)


def dump_restore_verify(env, *extra):
    work = env.path("work")
    os.mkdir(work)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("memfiles"), ready, report, work, *extra])
    info = env.wait_ready(ready, pid)
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


def case_memfiles(env):
    dump_restore_verify(env)


def case_madv_guard(env):
    """A MADV_GUARD_INSTALL guard page (kernel 6.13+; invisible in /proc/PID/maps): either
    it still faults after restore, or the dump is refused naming the pid and the mapping,
    and the process runs on with its guard page."""
    work = env.path("work")
    os.mkdir(work)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("memfiles"), ready, report, work, "--madv-guard"])
    info = env.wait_ready(ready, pid)
    before = snapshot(pid)
    layout = {p: maps(p) for p in before}
    images = env.path("images")
    result = env.dump(pid, images, expect=None)
    if result.returncode == 0:
        log("dumped: checking the round trip")
        env.wait_dumped(before)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        env.trigger_and_report(pid, report)
        return
    log("refused")
    check_eq(result.returncode, 1, "exit code of the refused dump")
    guard = info["madv"] + 4096
    ranges = [(int(a, 16), int(b, 16)) for a, b in re.findall(r"\b([0-9a-f]{6,})-([0-9a-f]{6,})\b", result.stderr)]
    check(f"pid {pid}" in result.stderr and any(lo <= guard < hi for lo, hi in ranges),
          f"the refusal does not name pid {pid} and the mapping holding {guard:#x}: {result.stderr.strip()!r}")
    check(state(pid) not in (None, "T", "t", "Z"), f"after the refusal pid {pid} is in state {state(pid)}")
    compare_snapshots(before, snapshot(pid), pid)
    for p in before:
        compare_maps(layout[p], maps(p), f"pid {p} after the refusal")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"memfiles": case_memfiles, "madv_guard": case_madv_guard})
