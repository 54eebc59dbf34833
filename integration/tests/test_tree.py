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
from harness import (TestFailure, check, check_eq, compare_snapshots, descendants, exit_status_text, log,  # noqa
                     progress, read_text, reap, run, snapshot, state, wait_progress, wait_until)

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

    images = env.round_trip(pid, before, what="restored root pid")
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
    env.round_trip(pid, before, compare=False)
    time.sleep(0.2)
    check(state(child) not in (None, "Z", "X"), f"the restored child {child} is gone ({state(child)}) already")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    os.kill(pid, signal.SIGKILL)
    statuses = reap([pid, child], timeout=10, what="root and child after the root was killed")
    status = statuses.get(child)
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7,
          f"the child ended with {exit_status_text(status) if status is not None else 'unknown status'}, "
          f"want exit 7 from its parent-death signal (SIGUSR2)")


def case_exited_leader(env):
    """The main thread called pthread_exit and the other threads run on (/proc shows the
    leader as a zombie). Either the process comes back and runs on, or the dump is
    refused naming the pid, and the process runs on untouched."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("leader"), ready, report, prog])
    # Not wait_ready: it takes a zombie leader for a dead process, and the main
    # thread may exit before the others write READY.
    env.wait_file(ready)
    wait_progress(prog, 2)
    wait_until(lambda: snapshot(pid)[pid]["state"] == "Z", 10, what="the main thread's exit")
    before = snapshot(pid)
    images = env.path("images")
    result = env.dump(pid, images, expect=None)
    if result.returncode == 0:
        env.wait_dumped(before)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        env.soft(compare_snapshots, before, snapshot(pid), pid)
    else:
        check_eq(result.returncode, 1, "exit code of the refused dump")
        check(str(pid) in result.stderr, f"the refusal does not name pid {pid}: {result.stderr.strip()!r}")
        log(f"refused: {result.stderr.strip()}")
        compare_snapshots(before, snapshot(pid), pid)
    wait_progress(prog, progress(prog)[0] + 5)
    env.trigger_and_report(pid, report)


DAEMONIZE = r'''
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.argv[1], sys.argv[1:])
    os._exit(0)
os._exit(0)
'''


def case_daemon(env):
    """A classic double-forked daemon: its session and process group were made by a parent
    that has exited (the ids name no live process). It is not a shell job: it must dump
    without --shell-job and come back in its own session and group, not in cryo's."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    starter = env.spawn(["/usr/bin/python3", "-c", DAEMONIZE, env.workload("counter"), ready, report, prog,
                         "--threads", "1", "--child"], name="daemonize", setsid=False)
    info = env.wait_ready(ready, None)
    pid = info["pid"]
    reap([starter])
    for p in [x for x in descendants(os.getpid()) if state(x) == "Z"]:
        reap([p])  # the first child, reparented to us
    before = snapshot(pid)
    sid = before[pid]["sid"]
    check(sid != pid and not os.path.exists(f"/proc/{sid}"), f"the daemon's session {sid} should name no process")
    images = env.round_trip(pid, before)
    env.trigger_and_report(pid, report)


ORPHAN_GROUP = r'''
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the grandchild stays in the tree
leader = os.fork()
if leader == 0:
    os.setpgid(0, 0)
    if os.fork() == 0:
        time.sleep(1000)
    os._exit(0)
os.waitpid(leader, 0)
open(sys.argv[1], "w").write(f"READY pid={os.getpid()} leader={leader}\n")
while True:
    time.sleep(1)
'''


def case_dead_group_leader(env):
    """A process group whose leader has exited and been reaped (its id names no process):
    the group is wholly inside the tree, so the dump needs no --shell-job, and the member
    comes back in a group with that id."""
    ready = env.path("ready")
    pid = env.spawn(["/usr/bin/python3", "-c", ORPHAN_GROUP, ready], name="orphan-group")
    info = env.wait_ready(ready, pid)
    wait_until(lambda: len(snapshot(pid)) == 2, 5, what="the group member")
    before = snapshot(pid)
    member = [p for p in before if p != pid][0]
    check_eq(before[member]["pgid"], info["leader"], "pgid of the member")
    env.round_trip(pid, before, compare=False)
    compare_snapshots(before, snapshot(pid), pid)


ABSOLUTE_SLEEP = r'''
import ctypes, os, sys, time
class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
libc = ctypes.CDLL(None, use_errno=True)
CLOCK_MONOTONIC, TIMER_ABSTIME = 1, 1
deadline = time.clock_gettime(time.CLOCK_MONOTONIC) + float(sys.argv[2])
ts = timespec(int(deadline), int((deadline % 1) * 1e9))
open(sys.argv[1], "w").write(f"READY pid={os.getpid()}\n")
while True:
    r = libc.clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ctypes.byref(ts), None)
    if r != 4:  # EINTR: sleep on to the same deadline
        break
late = time.clock_gettime(time.CLOCK_MONOTONIC) - deadline
open(sys.argv[3], "w").write(f"{r} {late:.3f}\n")
'''


def case_absolute_sleep(env):
    """clock_nanosleep(TIMER_ABSTIME) across a dump and restore wakes at its deadline:
    not early, and not a whole interval (or the downtime) late."""
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn(["/usr/bin/python3", "-c", ABSOLUTE_SLEEP, ready, "4", report], name="sleeper")
    env.wait_ready(ready, pid)
    time.sleep(0.5)
    before = snapshot(pid)
    env.round_trip(pid, before, compare=False)
    text = env.wait_file(report, timeout=20, what="the sleeper's report")
    reap([pid])
    rc, late = text.split()
    log(f"clock_nanosleep returned {rc}, {late} s after its deadline")
    check_eq(rc, "0", "clock_nanosleep result")
    check(0 <= float(late) < 0.5, f"woke {late} s after the absolute deadline")


STOPPED_CHILD = r'''
import os, signal, sys, time
child = os.fork()
if child == 0:
    os.setpgid(0, 0)  # its own group, so that SIGTSTP is not discarded
    os.kill(os.getpid(), signal.SIGTSTP)
    time.sleep(1000)
while open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
    time.sleep(0.01)
open(sys.argv[1], "w").write(f"READY pid={os.getpid()} child={child}\n")
while not os.path.exists(sys.argv[2] + ".go"):
    time.sleep(0.01)
pid, status = os.waitpid(child, os.WUNTRACED | os.WNOHANG)
sig = os.WSTOPSIG(status) if pid == child and os.WIFSTOPPED(status) else None
open(sys.argv[2], "w").write("OK\n" if sig == signal.SIGTSTP else f"FAIL: waitpid gave pid {pid} stop signal {sig}\n")
'''


def case_stop_signal(env):
    """A child stopped by SIGTSTP whose parent has not collected the stop yet: after
    restore the parent's waitpid(WUNTRACED) still reports SIGTSTP (a shell shows
    "Stopped", not "Stopped (signal)")."""
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn(["/usr/bin/python3", "-c", STOPPED_CHILD, ready, report], name="stopper")
    info = env.wait_ready(ready, pid)
    before = snapshot(pid)
    check_eq(before[info["child"]]["state"], "T", "state of the child")
    images = env.round_trip(pid, before)
    open(report + ".go", "w").close()
    text = env.wait_file(report, what="the parent's report")
    check(text.startswith("OK"), f"parent reports: {text.strip()}")


PDEATH_ROOT = r'''
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
open(sys.argv[1], "w").write(f"READY pid={os.getpid()}\n")
while not os.path.exists(sys.argv[2] + ".go"):
    time.sleep(0.01)
open(sys.argv[2], "w").write("OK\n")
'''


def case_root_pdeath_signal(env):
    """A root whose parent-death signal is set (supervised processes often are) and whose
    parent (this test) lives on: `cryo restore -d` returning (its transient parent, cryo,
    exiting) must not kill it."""
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn(["/usr/bin/python3", "-c", PDEATH_ROOT, ready, report], name="pdeath-root")
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    env.round_trip(pid, before, compare=False)
    time.sleep(0.5)
    if state(pid) in (None, "Z", "X"):
        status = reap([pid]).get(pid)
        raise TestFailure(f"the restored root died after cryo restore -d returned: "
                          f"{exit_status_text(status) if status is not None else 'gone'}")
    open(report + ".go", "w").close()
    text = env.wait_file(report, what="the root's report")
    check(text.startswith("OK"), f"root reports: {text.strip()}")


if __name__ == "__main__":
    run({"tree": case_tree, "pdeath_signal": case_pdeath_signal, "exited_leader": case_exited_leader,
         "daemon": case_daemon, "dead_group_leader": case_dead_group_leader, "absolute_sleep": case_absolute_sleep,
         "stop_signal": case_stop_signal, "root_pdeath_signal": case_root_pdeath_signal})
