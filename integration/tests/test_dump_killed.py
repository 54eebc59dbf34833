#!/usr/bin/env python3
"""SIGKILL of `cryo dump` in the middle (1 GiB workload, killed after 50, 150 and
400 ms): the tree must run on, untouched: not stopped, not traced, same tasks, memory
layout and fds, counters advancing, memory pattern intact. No complete image left."""
import os
import signal
import subprocess
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


def lock_rules():
    """The network lock rules of any cryo dump left in nftables or iptables."""
    found = []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [line for line in tables.splitlines() if "cryo-lock-" in line]
    for tool in ("iptables", "ip6tables"):
        rules = subprocess.run([tool, "-w", "-S"], capture_output=True, text=True).stdout
        found += [line for line in rules.splitlines() if "cryo-lock-" in line]
    return found


def case_interrupted_dump(env):
    """SIGTERM and SIGINT (Ctrl-C) stop a dump with --tcp-established at its next
    step: cryo exits 1 saying so, the tree runs on with its connection working,
    and the network lock is gone."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--mib", "1024", "--threads", "2",
                     "--object", "tcp_pair"])
    env.wait_ready(ready, pid, timeout=90)
    wait_progress(prog, 2)
    before = snapshot(pid)
    for signo in (signal.SIGTERM, signal.SIGINT):
        images = env.path(f"images-{signo}")
        os.mkdir(images)
        proc, _, err = env.cryo_background("dump", "-t", pid, "-D", images, "--tcp-established",
                                           "-o", env.path(f"dump-{signo}.log"), "-v", "4")
        time.sleep(0.15)
        check(proc.poll() is None, "cryo dump of 1 GiB finished within 150 ms: cannot test an interrupted dump")
        proc.send_signal(signo)
        check_eq(proc.wait(timeout=60), 1, f"exit code of cryo dump after {signal.Signals(signo).name}")
        message = open(err).read()
        check("interrupted by" in message, f"cryo does not say it was interrupted: {message.strip()!r}")
        wait_until(lambda: healthy(before), 3, what="the tree to run again")
        compare_snapshots(before, snapshot(pid), pid)
        check_eq(lock_rules(), [], "network lock rules left behind")
        check(not os.path.exists(os.path.join(images, "inventory.img")), "an interrupted dump left an inventory.img")
        now = progress(prog)
        wait_progress(prog, now[0] + 3)
        log(f"{signal.Signals(signo).name}: {message.strip()}")
    env.trigger_and_report(pid, report, timeout=60)


if __name__ == "__main__":
    run({"sigkill_mid_dump": case_sigkill_mid_dump, "interrupted_dump": case_interrupted_dump})
