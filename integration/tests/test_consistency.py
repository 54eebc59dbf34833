#!/usr/bin/env python3
"""The image is one instant of the tree: two threads sweep their buffers at full speed
during the dump, and after restore each buffer must agree exactly with its writer's
progress variable (memory copied while a thread still ran would not). Also with -R,
where the original must go on untouched and the image must still be one instant."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check_eq, compare_snapshots, run, snapshot)  # noqa: E402


def racer(env, leave_running):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("racer"), ready, report])
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, *(["-R"] if leave_running else []))
    if leave_running:
        env.trigger_and_report(pid, report)  # the original checks itself
        os.remove(report)
    else:
        env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


def case_plain(env):
    racer(env, False)


def case_leave_running(env):
    racer(env, True)


if __name__ == "__main__":
    run({"plain": case_plain, "leave_running": case_leave_running})
