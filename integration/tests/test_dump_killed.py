#!/usr/bin/env python3
"""SIGKILL of `cryo dump` in the middle (1 GiB workload, killed after 50, 150 and
400 ms): the tree must run on, untouched: not stopped, not traced, same tasks, memory
layout and fds, counters advancing, memory pattern intact. No complete image left."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, log, maps, progress,  # noqa: E402
                     run, snapshot, state, status_fields, wait_progress, wait_until)


def healthy(before):
    """True when no task of the tree is stopped or traced any more."""
    for pid in before:
        st = state(pid)
        if st is None or st in ("T", "t", "Z", "X"):
            return False
        if status_fields(pid, keys=("TracerPid",)).get("TracerPid") != "0":
            return False
        for tid in before[pid]["tids"]:
            tst = status_fields(pid, tid, keys=("State",)).get("State", "")
            if tst[:1] in ("T", "t"):
                return False
    return True


def case_sigkill_mid_dump(env):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--mib", "1024", "--threads", "2", "--child"])
    env.wait_ready(ready, pid, timeout=90)
    wait_progress(prog, 2)
    before = snapshot(pid)
    maps_before = {p: maps(p) for p in before}
    fds_before = {p: fd_table(p) for p in before}

    killed_in_flight = 0
    for delay in (0.05, 0.15, 0.4):
        images = env.path(f"images-{int(delay * 1000)}ms")
        os.mkdir(images)
        proc, _, err = env.cryo_background("dump", "-t", pid, "-D", images, "-o", env.path(f"dump-{delay}.log"),
                                           "-v", "4")
        time.sleep(delay)
        if proc.poll() is not None:
            check(proc.returncode != 0, f"cryo dump finished within {delay * 1000:.0f} ms and killed the tree "
                                        f"(1 GiB): cannot test an interrupted dump")
            log(f"cryo dump exited {proc.returncode} by itself before {delay * 1000:.0f} ms: "
                f"{open(err).read().strip()}")
        else:
            proc.send_signal(signal.SIGKILL)
            killed_in_flight += 1
        proc.wait()
        wait_until(lambda: healthy(before), 3, what=f"the tree to run again after killing cryo at {delay} s")
        compare_snapshots(before, snapshot(pid), pid)
        for p in before:
            compare_maps(maps_before[p], maps(p), f"after the kill at {delay} s: pid {p}")
            check_eq(fd_table(p), fds_before[p], f"after the kill at {delay} s: fd table of pid {p}")
        check(not os.path.exists(os.path.join(images, "inventory.img")),
              f"an interrupted dump left an inventory.img (a complete-looking image) in {images}")
        now = progress(prog)
        for i in range(3):
            wait_progress(prog, now[i] + 3, index=i)
        log(f"killed cryo dump after {delay * 1000:.0f} ms; tree runs on: {now} -> {progress(prog)}")
    check(killed_in_flight > 0, "cryo dump was never still running when killed")
    env.trigger_and_report(pid, report, timeout=60)


if __name__ == "__main__":
    run({"sigkill_mid_dump": case_sigkill_mid_dump})
