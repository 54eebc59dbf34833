#!/usr/bin/env python3
"""Bigger shapes: many threads, many small mappings, and threads and children that
come and go during the dump (with and without posix_spawn's vfork children)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, log, maps, progress, run, snapshot,  # noqa
                     wait_progress)


def counter_round_trip(env, *extra, min_threads=0, ready_timeout=60):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, *extra])
    env.wait_ready(ready, pid, timeout=ready_timeout)
    wait_progress(prog, 2)
    before = snapshot(pid)
    check(len(before[pid]["tids"]) >= min_threads, f"only {len(before[pid]['tids'])} threads")
    layout = maps(pid)
    images = env.path("images")
    result = env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    log(f"dump {result.seconds:.3f} s")
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    env.soft(compare_maps, layout, maps(pid), "layout")
    env.trigger_and_report(pid, report, timeout=60)


def case_many_threads(env):
    counter_round_trip(env, "--threads", "200", min_threads=201)


def case_many_vmas(env):
    counter_round_trip(env, "--vmas", "6000", "--threads", "2")


def churn(env, *extra):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("churn"), ready, report, prog, *extra])
    env.wait_ready(ready, pid)
    wait_progress(prog, 20)
    for i in range(3):
        # The tree changes all the time: compare only the process itself.
        images = env.path(f"images-{i}")
        env.dump(pid, images)
        env.reap_tree_of(pid)
        seen = progress(prog)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, f"round {i}: restored pid")
        for index in range(3):
            wait_progress(prog, seen[index] + 20, index=index)
        log(f"round {i}: loops {seen} -> {progress(prog)}")
    env.trigger_and_report(pid, report)


def case_churn(env):
    churn(env)


def case_churn_spawn(env):
    churn(env, "--spawn")


if __name__ == "__main__":
    run({"many_threads": case_many_threads, "many_vmas": case_many_vmas, "churn": case_churn,
         "churn_spawn": case_churn_spawn})
