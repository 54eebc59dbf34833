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
        env.wait_guards()  # the tree is back once the guard that cryo left has exited
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
    interrupt_tcp_dumps(env, (signal.SIGTERM, signal.SIGINT))


def case_sigkill_mid_dump_tcp(env):
    """SIGKILL of a dump with --tcp-established, after it locked the network and
    put the connection in repair mode: the guard it left undoes both, so the
    tree's connection works and no lock rule is left."""
    interrupt_tcp_dumps(env, (signal.SIGKILL, signal.SIGKILL), delays=(0.15, 0.4))


def interrupt_tcp_dumps(env, signals, delays=(0.15, 0.15)):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--mib", "1024", "--threads", "2",
                     "--object", "tcp_pair"])
    env.wait_ready(ready, pid, timeout=90)
    wait_progress(prog, 2)
    before = snapshot(pid)
    for signo, delay in zip(signals, delays):
        name = signal.Signals(signo).name
        images = env.path(f"images-{name}-{int(delay * 1000)}")
        os.mkdir(images)
        proc, _, err = env.cryo_background("dump", "-t", pid, "-D", images, "--tcp-established",
                                           "-o", env.path(f"dump-{name}-{delay}.log"), "-v", "4")
        time.sleep(delay)
        check(proc.poll() is None, f"cryo dump of 1 GiB finished within {delay} s: cannot test an interrupted dump")
        proc.send_signal(signo)
        code = proc.wait(timeout=60)
        if signo != signal.SIGKILL:
            check_eq(code, 1, f"exit code of cryo dump after {name}")
            message = open(err).read()
            check("interrupted by" in message, f"cryo does not say it was interrupted: {message.strip()!r}")
        env.wait_guards()
        wait_until(lambda: healthy(before), 3, what="the tree to run again")
        wait_until(lambda: not lock_rules(), 5, what=f"the network lock to go after {name}")
        compare_snapshots(before, snapshot(pid), pid)
        check(not os.path.exists(os.path.join(images, "inventory.img")), "an interrupted dump left an inventory.img")
        now = progress(prog)
        wait_progress(prog, now[0] + 3)
        log(f"{name} after {delay * 1000:.0f} ms: the tree runs on, no lock left")
    env.trigger_and_report(pid, report, timeout=30)


if __name__ == "__main__":
    run({"sigkill_mid_dump": case_sigkill_mid_dump, "interrupted_dump": case_interrupted_dump,
         "sigkill_mid_dump_tcp": case_sigkill_mid_dump_tcp})
