#!/usr/bin/env python3
"""A restored tree can be dumped again: several dump/restore rounds on one tree
(alternating plain dumps and dump -R), then the workload verifies everything."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, log, maps, progress, reap, run,  # noqa: E402
                     snapshot, wait_progress, wait_until)


def cycles(env, pid, rounds, prog=None, leave_running_every=0):
    before = snapshot(pid)
    layout = {p: maps(p) for p in before}
    for i in range(rounds):
        images = env.path(f"images-{i}")
        leave = leave_running_every and i % leave_running_every == leave_running_every - 1
        env.dump(pid, images, *(["-R"] if leave else []))
        if leave:
            # Stop the original ourselves; the image must not depend on it.
            for p in before:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            reap(list(before), what="original after dump -R")
        else:
            env.wait_dumped(before)
        seen = progress(prog) if prog else None
        _, rpid = env.restore(images)
        check_eq(rpid, pid, f"round {i}: restored pid")
        compare_snapshots(before, snapshot(pid), pid)
        for p in before:
            compare_maps(layout[p], maps(p), f"round {i}: pid {p}")
        if prog:
            wait_until(lambda: progress(prog) != seen, 10, what=f"round {i}: the restored counters to move")
        log(f"round {i} ({'-R' if leave else 'plain'}) ok")


def case_counter(env):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "3", "--child", "--mib", "32"])
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    cycles(env, pid, 5, prog, leave_running_every=2)
    env.trigger_and_report(pid, report)


def case_tree(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("tree"), ready, report])
    env.wait_ready(ready, pid)
    cycles(env, pid, 3)
    env.trigger_and_report(pid, report)


def case_attrs(env):
    ready, report = env.path("ready"), env.path("report")
    cwd = env.path("cwd")
    os.mkdir(cwd)
    pid = env.spawn(["setarch", "x86_64", "-R", env.workload("attrs"), ready, report, cwd], name="attrs")
    env.wait_ready(ready, pid)
    cycles(env, pid, 3)
    env.trigger_and_report(pid, report)


def case_mega(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("mega"), ready, report, "--mib", "64"])
    env.wait_ready(ready, pid)
    cycles(env, pid, 2)
    env.trigger_and_report(pid, report, timeout=60)


def case_concurrent(env):
    """Two trees dumped at the same time by two cryo processes, then restored at the same
    time: each comes back whole and verifies itself."""
    trees = []
    for name in ("a", "b"):
        ready, report, prog = (env.path(f"{name}-{x}") for x in ("ready", "report", "progress"))
        pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2", "--child", "--mib", "128"])
        env.wait_ready(ready, pid)
        trees.append((pid, report, env.path(f"{name}-images")))
    befores = [snapshot(pid) for pid, _, _ in trees]
    dumps = [env.cryo_background("dump", "-t", pid, "-D", images, "-o", images + ".dump.log")
             for pid, _, images in trees]
    for (proc, _, err), (pid, _, _) in zip(dumps, trees):
        check_eq(proc.wait(timeout=120), 0, f"concurrent dump of {pid} ({open(err).read().strip()})")
    for before in befores:
        env.wait_dumped(before)
    restores = [env.cryo_background("restore", "-D", images, "-d", "-o", images + ".restore.log")
                for _, _, images in trees]
    for (proc, _, err), (pid, _, _) in zip(restores, trees):
        check_eq(proc.wait(timeout=120), 0, f"concurrent restore of {pid} ({open(err).read().strip()})")
    for before, (pid, report, _) in zip(befores, trees):
        env.soft(compare_snapshots, before, snapshot(pid), pid)
    for pid, report, _ in trees:
        env.trigger_and_report(pid, report)


def case_same_tree_twice(env):
    """Two cryo dumps of the same tree at once: at most one may succeed, the other fails
    cleanly (exit 1), and what succeeded restores and verifies (a loser must not thaw or
    kill the tree under the winner). If both fail, the tree must run on."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2", "--child", "--mib", "256"])
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    runs = [env.cryo_background("dump", "-t", pid, "-D", env.path(f"images-{i}"), "-o", env.path(f"dump-{i}.log"))
            for i in range(2)]
    codes = [proc.wait(timeout=120) for proc, _, _ in runs]
    log(f"exit codes {codes}; " + "; ".join(open(err).read().strip() for _, _, err in runs))
    check(sorted(codes) in ([0, 1], [1, 1]), f"exit codes of two concurrent dumps: {codes}")
    if codes == [1, 1]:
        compare_snapshots(before, snapshot(pid), pid)
        env.trigger_and_report(pid, report)
        return
    env.wait_dumped(before)
    _, rpid = env.restore(env.path(f"images-{codes.index(0)}"))
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(before, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"counter": case_counter, "tree": case_tree, "attrs": case_attrs, "mega": case_mega,
         "concurrent": case_concurrent, "same_tree_twice": case_same_tree_twice})
