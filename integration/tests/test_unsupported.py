#!/usr/bin/env python3
"""A dump that meets an object cryo cannot checkpoint (an io_uring fd, a perf_event
fd) fails with exit 1 and a message naming the pid, the fd and the kind, and leaves
the tree running exactly as it was: same tasks, states, memory layout, fds."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, hash_dir, log, maps, progress,  # noqa
                     run, snapshot, state, status_fields, wait_progress)


def check_untouched(before, maps_before, fds_before, what):
    for pid, task in before.items():
        st = state(pid)
        check(st is not None and st not in ("T", "t", "Z", "X"), f"{what}: pid {pid} is in state {st}")
        tracer = status_fields(pid, keys=("TracerPid",)).get("TracerPid")
        check_eq(tracer, "0", f"{what}: TracerPid of {pid}")
    compare_snapshots(before, snapshot(min(before)), min(before))
    for pid in before:
        compare_maps(maps_before[pid], maps(pid), f"{what}: pid {pid}")
        check_eq(fd_table(pid), fds_before[pid], f"{what}: fd table of pid {pid}")


def refused(env, flag, kind_words, holder_key, fd_key):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2", flag])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    maps_before = {p: maps(p) for p in before}
    fds_before = {p: fd_table(p) for p in before}
    holder = info[holder_key] if holder_key != "pid" else pid
    fd = info[fd_key]

    images = env.path("images")
    result = env.dump(pid, images, expect=1)
    message = result.stderr
    lower = message.lower()
    check(f"pid {holder}" in message, f"the error does not name pid {holder}: {message.strip()!r}")
    check(f"fd {fd}" in message, f"the error does not name fd {fd}: {message.strip()!r}")
    check(any(w in lower for w in kind_words), f"the error does not name the kind {kind_words}: {message.strip()!r}")
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a failed dump left an inventory.img")

    check_untouched(before, maps_before, fds_before, "right after the failed dump")
    now = progress(prog)
    for i in range(3):
        wait_progress(prog, now[i] + 3, index=i)
    time.sleep(0.2)
    check_untouched(before, maps_before, fds_before, "200 ms after the failed dump")
    log(f"counters {now} -> {progress(prog)}")
    env.trigger_and_report(pid, report)


def case_io_uring(env):
    refused(env, "--io-uring", ("io_uring", "io-uring"), "pid", "uring_fd")


def case_perf_event(env):
    refused(env, "--perf-child", ("perf_event", "perf event", "perf-event"), "child", "perf_fd")


def case_keeps_previous_image(env):
    """Periodic checkpoints into one directory: a refused dump must leave the previous,
    complete image there as it was (and restorable)."""
    images = env.path("images")
    a_ready, a_report, a_prog = env.path("a-ready"), env.path("a-report"), env.path("a-progress")
    a = env.spawn([env.workload("counter"), a_ready, a_report, a_prog, "--threads", "1", "--child"])
    env.wait_ready(a_ready, a)
    a_tree = snapshot(a)
    env.dump(a, images)
    env.wait_dumped(a_tree)
    good = hash_dir(images)

    b_ready, b_report, b_prog = env.path("b-ready"), env.path("b-report"), env.path("b-progress")
    b = env.spawn([env.workload("counter"), b_ready, b_report, b_prog, "--io-uring"])
    env.wait_ready(b_ready, b)
    env.dump(b, images, expect=1)
    after = hash_dir(images)
    changed = sorted(k for k in set(good) | set(after) if good.get(k) != after.get(k))
    env.soft(check, not changed, f"the refused dump changed the previous image: {changed}")
    env.trigger_and_report(b, b_report)
    _, rpid = env.restore(images)
    check_eq(rpid, a, "pid restored from the previous image")
    env.trigger_and_report(a, a_report)


if __name__ == "__main__":
    run({"io_uring": case_io_uring, "perf_event": case_perf_event, "keeps_previous_image": case_keeps_previous_image})
