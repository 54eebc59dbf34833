#!/usr/bin/env python3
"""--leave-running: the original goes on untouched after the dump, and the image still
restores once the original is gone. Also: `cryo restore` without -d waits for the
restored root and exits with its status."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, log, maps,  # noqa: E402
                     progress, reap, run, snapshot, state, status_fields, wait_progress, wait_until)


def start_counter(env, *extra):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, *extra])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    return pid, info, report, prog


def check_running(tree, what):
    for pid in tree:
        st = state(pid)
        want_alive = tree[pid]["state"] != "Z"
        check(st is not None, f"{what}: pid {pid} is gone")
        if want_alive:
            check(st not in ("T", "t", "Z", "X"), f"{what}: pid {pid} is in state {st}")


def case_leave_running(env):
    pid, info, report, prog = start_counter(env, "--mib", "64", "--threads", "2", "--child")
    before = snapshot(pid)
    maps_before = maps(pid)
    fds_before = fd_table(pid)
    at_start = progress(prog)
    images = env.path("images")
    env.dump(pid, images, "-R")

    # The original runs on, untouched.
    check_running(before, "after dump -R")
    time.sleep(0.1)
    check_running(before, "100 ms after dump -R")
    compare_snapshots(before, snapshot(pid), pid)
    compare_maps(maps_before, maps(pid), "original after dump -R")
    check_eq(fd_table(pid), fds_before, "fd table of the original after dump -R")
    now = progress(prog)
    wait_progress(prog, now[0] + 5)
    for i in (1, 2):
        wait_progress(prog, now[i] + 5, index=i)
    # Stop the original: it verifies itself (memory, threads, child) as it goes.
    env.trigger_and_report(pid, report)
    reap(list(before), what="the original tree")
    os.remove(report)

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(before, snapshot(pid), pid)
    # The restored counter starts from its value at the dump (not below what we saw before it).
    last_of_original = progress(prog)
    first = wait_until(lambda: (lambda v: v if v and v != last_of_original else None)(progress(prog)), 10,
                       what="the restored counter to publish")
    log(f"counter before the dump {at_start[0]}, original at its end {last_of_original[0]}, restored {first[0]}")
    check(first[0] >= at_start[0], f"restored counter {first[0]} is below {at_start[0]}, seen before the dump")
    wait_progress(prog, first[0] + 5)
    env.trigger_and_report(pid, report)


def case_foreground_restore(env):
    """Without -d, cryo restore waits for the root and exits with its status."""
    pid, info, report, prog = start_counter(env, "--mib", "8")
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(tree)

    for signo, want in ((signal.SIGUSR1, 0), (signal.SIGUSR2, 7)):
        if os.path.exists(report):
            os.remove(report)
        proc, out, err = env.cryo_background("restore", "-D", images, "-o", env.path(f"restore-{want}.log"))
        seen = progress(prog)
        wait_until(lambda: progress(prog) != seen, 15, what="the restored counter to run")
        check(proc.poll() is None, f"cryo restore (no -d) returned {proc.returncode} while the tree runs")
        os.kill(pid, signo)
        try:
            rc = proc.wait(timeout=30)
        except Exception:
            proc.kill()
            proc.wait()
            raise
        log(f"cryo restore exited {rc} after the root got {signal.Signals(signo).name}")
        check_eq(rc, want, f"exit code of cryo restore when the root exits {want}")
        reap([pid], what="restored root")
        if want == 0:
            text = open(report).read()
            check(text.startswith("OK"), f"restored workload reports {text.strip()}")


def case_stopped_stays_stopped(env):
    """A process stopped with SIGSTOP is dumped with -R twice (and once more after a
    dump killed in the middle of its syscalls in the process): it stays stopped,
    with no signal left pending; SIGCONT wakes it and it goes on."""
    pid, info, report, prog = start_counter(env, "--mib", "16", "--threads", "2")
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: state(pid) == "T", 5, what="the counter to stop")

    def still_stopped(what):
        wait_until(lambda: state(pid) == "T", 5, what=f"pid {pid} to be stopped {what}")
        fields = status_fields(pid, keys=("SigPnd", "ShdPnd", "TracerPid"))
        check_eq(fields, {"SigPnd": "0000000000000000", "ShdPnd": "0000000000000000", "TracerPid": "0"},
                 f"pending signals and tracer of the stopped pid {pid} {what}")

    for i in range(2):
        env.dump(pid, env.path(f"images-{i}"), "-R")
        still_stopped(f"after dump -R #{i + 1}")
    killed = env.cryo("dump", "-t", pid, "-D", env.path("images-killed"), expect=None,
                      env_extra={"CRYO_FAILPOINT": "remote.syscall:3"})
    check(killed.returncode == -signal.SIGKILL, f"the failpoint did not kill cryo: {killed.describe()}")
    still_stopped("after a dump killed in the middle")
    frozen = progress(prog)
    time.sleep(0.3)
    check_eq(progress(prog), frozen, "progress of the stopped counter")
    os.kill(pid, signal.SIGCONT)
    wait_progress(prog, frozen[0] + 3)
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"leave_running": case_leave_running, "foreground_restore": case_foreground_restore,
         "stopped_stays_stopped": case_stopped_stays_stopped})
