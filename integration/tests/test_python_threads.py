#!/usr/bin/env python3
"""A Python 3 program whose threads increment counters is dumped and restored: same
pid and tids, the counters go on from where they were, the heap is intact."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, log, progress, run, snapshot,  # noqa: E402
                     wait_until)

PROGRAM = r'''
import os, signal, sys, threading, time
ready, report, progress_path = sys.argv[1:4]
N = 4
counters = [0] * N
stop = threading.Event()
triggered = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: triggered.set())

def work(i):
    while not stop.is_set():
        counters[i] += 1
        time.sleep(0.005)

def publish(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

heap = {i: str(i) * 50 for i in range(20000)}
threads = [threading.Thread(target=work, args=(i,), name=f"worker{i}") for i in range(N)]
for t in threads:
    t.start()
publish(ready, f"READY pid={os.getpid()}\n")
problems, last = [], [0] * N
while not triggered.is_set():
    snap = list(counters)
    if any(a < b for a, b in zip(snap, last)):
        problems.append(f"counters went back: {last} -> {snap}")
    last = snap
    publish(progress_path, " ".join(map(str, snap)) + "\n")
    time.sleep(0.05)
before = list(counters)
time.sleep(0.3)
after = list(counters)
stuck = [i for i in range(N) if after[i] <= before[i]]
if stuck:
    problems.append(f"threads {stuck} stopped counting")
if not all(t.is_alive() for t in threads):
    problems.append("a thread died")
if any(heap[i] != str(i) * 50 for i in range(20000)):
    problems.append("heap contents changed")
stop.set()
for t in threads:
    t.join(5)
publish(report, "OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
sys.exit(1 if problems else 0)
'''


def case_threads(env):
    pid, _, report, prog = env.start_python(PROGRAM, "counters")
    wait_until(lambda: len(progress(prog)) == 4 and min(progress(prog)) > 10, 10, what="counters to rise")
    before = snapshot(pid)
    check_eq(len(before[pid]["tids"]), 5, "threads of the python process")

    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    at_dump = progress(prog)
    time.sleep(0.3)
    check_eq(progress(prog), at_dump, "counters while dumped")

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    # Each counter goes on from (at least) its value at the dump, and keeps rising.
    first = wait_until(lambda: (lambda v: v if len(v) == 4 and v != at_dump else None)(progress(prog)), 10,
                       what="the restored program to publish its counters")
    check(all(a >= b for a, b in zip(first, at_dump)), f"counters went back: {at_dump} at the dump, {first} after")
    want = [c + 20 for c in first]
    wait_until(lambda: len(progress(prog)) == 4 and all(a >= b for a, b in zip(progress(prog), want)), 15,
               what=f"every counter to pass {want}")
    log(f"counters at dump {at_dump}, now {progress(prog)}")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"threads": case_threads})
