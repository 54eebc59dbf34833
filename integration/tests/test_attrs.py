#!/usr/bin/env python3
"""Signals and per-process attributes: handlers, per-thread masks, pending signals
with values delivered after unblock, sigaltstack, rlimits, umask, cwd, personality
(ADDR_NO_RANDOMIZE via setarch -R), thread names, /proc/PID/{cmdline,environ,exe}."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, maps, read_bytes,  # noqa: E402
                     read_text, run, snapshot, status_fields)

ADDR_NO_RANDOMIZE = 0x0040000


def outside_view(pid):
    """What /proc shows of the process from outside."""
    view = {
        "cmdline": read_bytes(f"/proc/{pid}/cmdline"),
        "environ": read_bytes(f"/proc/{pid}/environ"),
        "exe": os.readlink(f"/proc/{pid}/exe"),
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
        "limits": read_text(f"/proc/{pid}/limits"),
        "personality": read_text(f"/proc/{pid}/personality"),
        "auxv": read_bytes(f"/proc/{pid}/auxv"),
    }
    for tid in os.listdir(f"/proc/{pid}/task"):
        view[f"status of {tid}"] = status_fields(pid, tid)
    return view


def case_attrs(env):
    ready, report = env.path("ready"), env.path("report")
    cwd = env.path("a cwd with spaces")
    os.mkdir(cwd)
    argv = ["setarch", "x86_64", "-R", env.workload("attrs"), ready, report, cwd, "an argument", "x" * 300]
    pid = env.spawn(argv, name="attrs", env=dict(os.environ, CRYO_ATTRS_MARK="mark=123 with spaces"))
    info = env.wait_ready(ready, pid)
    check(info["personality"] & ADDR_NO_RANDOMIZE, f"personality {info['personality']:#x} lacks ADDR_NO_RANDOMIZE")
    before = snapshot(pid)
    view = outside_view(pid)
    check_eq(view["cwd"], cwd, "cwd before the dump")
    check(b"CRYO_ATTRS_MARK=mark=123 with spaces" in view["environ"], "environ lacks the mark")
    maps_before, fds_before = maps(pid), fd_table(pid)

    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    after = outside_view(pid)
    for key in view:
        env.soft(check_eq, after.get(key), view[key], f"/proc view '{key}'")
    env.soft(compare_maps, maps_before, maps(pid), "attrs")
    env.soft(check_eq, fd_table(pid), fds_before, "fd table")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"attrs": case_attrs})
