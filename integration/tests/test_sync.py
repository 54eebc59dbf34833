#!/usr/bin/env python3
"""Threads blocked on futexes (mutex, condition variables with and without timeout,
semaphore, barrier, raw FUTEX_WAIT with timeout) are blocked there again after restore
and wake when told to; a robust mutex held by a child that dies after restore is
handed on with EOWNERDEAD (the robust list survived)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check_eq, compare_snapshots, read_text, run, snapshot)  # noqa: E402

FUTEX = 202


def in_futex(pid, tids):
    out = {}
    for tid in tids:
        text = read_text(f"/proc/{pid}/task/{tid}/syscall", "").split()
        out[tid] = text[0] if text else None
    return out


def case_sync(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("sync"), ready, report])
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    waiters = before[pid]["tids"][1:]
    check_eq(len(waiters), 6, "waiting threads")
    check_eq(set(in_futex(pid, waiters).values()), {str(FUTEX)}, "syscalls of the waiters before the dump")
    images = env.round_trip(pid, before)
    deadline = time.monotonic() + 3
    while set(in_futex(pid, waiters).values()) != {str(FUTEX)} and time.monotonic() < deadline:
        time.sleep(0.05)
    env.soft(check_eq, set(in_futex(pid, waiters).values()), {str(FUTEX)}, "syscalls of the waiters after restore")
    env.trigger_and_report(pid, report, timeout=60)


if __name__ == "__main__":
    run({"sync": case_sync})
