#!/usr/bin/env python3
"""Tree shape: depth, sessions and process groups, a zombie, a stopped task, tasks
and threads blocked in read, poll, wait4, nanosleep, clock_nanosleep and sigsuspend.
Same pids, tids, parents, groups, sessions and blocking syscalls after restore; then
every task wakes and checks itself."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, exit_status_text, log, read_text, reap, run,  # noqa: E402
                     snapshot, state)

# Syscall numbers (x86_64) of the tasks that block for good until the trigger.
READ, POLL, WAIT4, RT_SIGSUSPEND = 0, 7, 61, 130


def syscall_of(pid, tid=None):
    text = read_text(f"/proc/{pid}/task/{tid or pid}/syscall", "")
    first = text.split()[0] if text.split() else ""
    return int(first) if first.lstrip("-").isdigit() else first


def case_tree(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("tree"), ready, report])
    info = env.wait_ready(ready, pid)
    t1, t2, t3 = (int(t) for t in str(info["tids"]).split(","))
    names = {k: info[k] for k in ("Z", "A", "A1", "A1a", "A1a1", "B", "C", "S")}
    before = snapshot(pid)

    # The workload built what we think it did.
    check_eq(sorted(before), sorted([pid] + list(names.values())), "tasks of the tree")
    expect = {  # name: (parent, pgid, sid)
        "A": (pid, names["A"], pid), "A1": (names["A"], names["A"], pid),
        "A1a": (names["A1"], names["A1a"], names["A1a"]), "A1a1": (names["A1a"], names["A1a"], names["A1a"]),
        "B": (pid, names["A"], pid), "C": (pid, pid, pid), "S": (pid, pid, pid), "Z": (pid, pid, pid),
    }
    for name, (ppid, pgid, sid) in expect.items():
        task = before[names[name]]
        check_eq((task["ppid"], task["pgid"], task["sid"]), (ppid, pgid, sid), f"{name}: ppid/pgid/sid")
    check_eq(before[names["Z"]]["state"], "Z", "state of Z")
    check_eq(before[names["S"]]["state"], "T", "state of S")
    check_eq((before[pid]["pgid"], before[pid]["sid"]), (pid, pid), "root pgid/sid")
    blocked = {  # (pid, tid): syscall
        (names["A"], None): WAIT4, (names["A1"], None): WAIT4, (names["A1a"], None): WAIT4,
        (names["A1a1"], None): READ, (names["B"], None): POLL, (pid, t1): READ, (pid, t2): POLL,
        (pid, None): RT_SIGSUSPEND,
    }
    for (p, t), nr in blocked.items():
        check_eq(syscall_of(p, t), nr, f"syscall of {p}/{t} before the dump")

    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored root pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    # Every blocked task is blocked in the same syscall again (give restarts a moment).
    deadline = time.monotonic() + 3
    while True:
        wrong = {f"{p}/{t}": (syscall_of(p, t), nr) for (p, t), nr in blocked.items() if syscall_of(p, t) != nr}
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    env.soft(check, not wrong, f"tasks not back in their syscalls (now, want): {wrong}")
    log(f"T3 in syscall {syscall_of(pid, t3)}, C in syscall {syscall_of(names['C'])}")
    env.trigger_and_report(pid, report, timeout=60)


def case_pdeath_signal(env):
    """A child's parent-death signal still fires after restore (and not before)."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--child-pdeath"])
    info = env.wait_ready(ready, pid)
    child = info["child"]
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    time.sleep(0.2)
    check(state(child) not in (None, "Z", "X"), f"the restored child {child} is gone ({state(child)}) already")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    os.kill(pid, signal.SIGKILL)
    statuses = reap([pid, child], timeout=10, what="root and child after the root was killed")
    status = statuses.get(child)
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7,
          f"the child ended with {exit_status_text(status) if status is not None else 'unknown status'}, "
          f"want exit 7 from its parent-death signal (SIGUSR2)")


if __name__ == "__main__":
    run({"tree": case_tree, "pdeath_signal": case_pdeath_signal})
