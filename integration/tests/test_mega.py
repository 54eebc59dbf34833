#!/usr/bin/env python3
"""mega: 256 MiB of patterned memory, 4 threads with live AVX/AVX-512/x87 registers and
rising counters, a child and a grandchild joined by a pipe with data in flight, a
shared anonymous mapping, an armed ITIMER_REAL. Dump, restore -d, verify in place."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, compare_vma_flags, fd_table, log,  # noqa: E402
                     maps, run, snapshot, vma_flags)


def check_stats(images, want_tasks, min_bytes):
    path = os.path.join(images, "stats-dump.json")
    check(os.path.exists(path), "no stats-dump.json after the dump")
    with open(path) as f:
        stats = json.load(f)
    log(f"stats-dump.json: {stats}")
    for key in ("freeze_us", "total_us", "pages_bytes", "tasks"):
        check(isinstance(stats.get(key), int) and stats[key] >= 0, f"stats-dump.json: bad {key}: {stats.get(key)!r}")
    check_eq(stats["tasks"], want_tasks, "stats-dump.json tasks")
    check(stats["pages_bytes"] >= min_bytes, f"stats-dump.json pages_bytes {stats['pages_bytes']} < {min_bytes}")
    check(0 < stats["freeze_us"] <= stats["total_us"], f"freeze_us {stats['freeze_us']} vs total_us {stats['total_us']}")
    return stats


def case_mega(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("mega"), ready, report])
    info = env.wait_ready(ready, pid)
    before = snapshot(pid)
    child, grandchild = info["child"], info["grandchild"]
    check_eq(sorted(before), sorted([pid, child, grandchild]), "tasks of the workload")
    check_eq(before[child]["ppid"], pid, "ppid of the child")
    check_eq(before[grandchild]["ppid"], child, "ppid of the grandchild")
    check_eq(len(before[pid]["tids"]), 5, "threads of the root")
    maps_before = {p: maps(p) for p in before}
    flags_before = {p: vma_flags(p) for p in before}
    fds_before = {p: fd_table(p) for p in before}

    images = env.path("images")
    env.dump(pid, images)
    stats = check_stats(images, 3, 256 << 20)
    # Only pages that hold data are stored: the 64 MiB sparse region adds three pages.
    check(stats["pages_bytes"] < (256 + 32) << 20, f"pages_bytes {stats['pages_bytes']}: untouched pages were stored")
    env.wait_dumped(before)

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored root pid (--pidfile)")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    for p in before:
        env.soft(compare_maps, maps_before[p], maps(p), f"pid {p}")
        env.soft(compare_vma_flags, flags_before[p], vma_flags(p), f"pid {p}")
        env.soft(check_eq, fd_table(p), fds_before[p], f"fd table of pid {p}")
    env.trigger_and_report(pid, report, timeout=90)


if __name__ == "__main__":
    run({"mega": case_mega})
