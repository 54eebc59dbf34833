#!/usr/bin/env python3
"""Signals and per-process attributes: handlers, per-thread masks, pending signals
with values delivered after unblock, sigaltstack, rlimits, umask, cwd, personality
(ADDR_NO_RANDOMIZE via setarch -R), thread names, /proc/PID/{cmdline,environ,exe}."""
import ctypes
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, log, maps, read_bytes,  # noqa
                     read_text, run, snapshot, status_fields, wait_until)

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

    images = env.round_trip(pid, before)
    after = outside_view(pid)
    for key in view:
        env.soft(check_eq, after.get(key), view[key], f"/proc view '{key}'")
    env.soft(compare_maps, maps_before, maps(pid), "attrs")
    env.soft(check_eq, fd_table(pid), fds_before, "fd table")
    env.trigger_and_report(pid, report)


SCHEDULED = r'''
import ctypes, os, struct, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
os.nice(7)
os.sched_setaffinity(0, {0})
os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
assert libc.syscall(251, 1, 0, (2 << 13) | 6) == 0  # ioprio_set: best-effort, level 6
def idle_thread():
    os.setpriority(os.PRIO_PROCESS, 0, 12)  # this thread only (a per-thread nice)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    assert libc.syscall(251, 1, 0, 3 << 13) == 0  # this thread only: the idle I/O class
    time.sleep(1000)
def deadline_thread():
    os.sched_setaffinity(0, range(os.cpu_count()))  # SCHED_DEADLINE wants every CPU
    # struct sched_attr: size, policy, flags, nice, priority, runtime, deadline, period (ns)
    attr = struct.pack("=IIQiIQQQII", 56, 6, 0, 0, 0, 2_000_000, 30_000_000, 40_000_000, 0, 0)
    assert libc.syscall(314, 0, ctypes.c_char_p(attr), 0) == 0, ctypes.get_errno()  # sched_setattr
    time.sleep(1000)
threading.Thread(target=idle_thread, daemon=True).start()
threading.Thread(target=deadline_thread, daemon=True).start()
time.sleep(0.2)
open(sys.argv[1], "w").write(f"READY pid={os.getpid()}\n")
time.sleep(1000)
'''


def scheduling(pid):
    """tid -> (nice, policy, CPU affinity, I/O priority, SCHED_DEADLINE's runtime,
    deadline and period), from /proc, sched_getaffinity, ioprio_get and sched_getattr."""
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = read_text(f"/proc/{pid}/task/{tid}/stat").rsplit(")", 1)[1].split()
        ioprio = libc.syscall(252, 1, int(tid))  # ioprio_get(IOPRIO_WHO_PROCESS)
        attr = ctypes.create_string_buffer(56)
        check_eq(libc.syscall(315, int(tid), attr, 56, 0), 0, f"sched_getattr of {tid}")
        deadline = struct.unpack("=IIQiIQQQII", attr.raw)[5:8]
        out[int(tid)] = (int(fields[16]), int(fields[38]), tuple(sorted(os.sched_getaffinity(int(tid)))), ioprio,
                         deadline)
    return out


def case_scheduling(env):
    """Nice values, scheduling policies (SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE with its
    runtime, deadline and period), CPU affinity and I/O priorities (best-effort 6, idle),
    per thread, come back as they were."""
    ready = env.path("ready")
    pid = env.spawn(["/usr/bin/python3", "-c", SCHEDULED, ready], name="scheduled")
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    sched = scheduling(pid)
    log(f"before: {sched}")
    check(len(set(sched.values())) == 3, f"the threads should differ: {sched}")
    env.round_trip(pid, before, compare=False)
    check_eq(scheduling(pid), sched, "(nice, policy, affinity, I/O priority, deadline) per thread")


NUMA = r'''
import ctypes, mmap, signal, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_F_STATIC_NODES, MPOL_F_ADDR = 1, 2, 3, 1 << 15, 2
node0 = ctypes.c_ulong(1)

def policy(addr=0):
    mode, nodes = ctypes.c_int(0), (ctypes.c_ulong * 16)()
    assert libc.syscall(239, ctypes.byref(mode), nodes, 1024, ctypes.c_void_p(addr or None),
                        MPOL_F_ADDR if addr else 0) == 0
    return mode.value, nodes[0]

assert libc.syscall(238, MPOL_BIND | MPOL_F_STATIC_NODES, ctypes.byref(node0), 64) == 0  # set_mempolicy
region = mmap.mmap(-1, 3 * 4096)
start = ctypes.addressof(ctypes.c_char.from_buffer(region))
assert libc.syscall(237, ctypes.c_void_p(start), ctypes.c_ulong(4096), MPOL_INTERLEAVE, ctypes.byref(node0), 64,
                    0) == 0  # mbind of its first page only
want = {"main": (MPOL_BIND | MPOL_F_STATIC_NODES, 1), "worker": (MPOL_PREFERRED, 1), "second page": (0, 0)}
if sys.argv[3] == "several":  # (a mapping's own policy is read on a machine of several NUMA nodes only)
    want["first page"] = (MPOL_INTERLEAVE, 1)
seen, asked = {}, threading.Event()

def worker():
    assert libc.syscall(238, MPOL_PREFERRED, ctypes.byref(node0), 64) == 0
    asked.wait()
    seen["worker"] = policy()

thread = threading.Thread(target=worker)
thread.start()
signal.signal(signal.SIGUSR1, lambda *_: asked.set())
open(sys.argv[1], "w").write("READY\n")
asked.wait()
thread.join()
seen.update({"main": policy(), "first page": policy(start), "second page": policy(start + 4096)})
seen = {k: seen[k] for k in want}
wrong = {k: (seen[k], want[k]) for k in want if seen[k] != want[k]}
open(sys.argv[2], "w").write("OK\n" if not wrong else f"FAIL: (got, want) {wrong}\n")
'''


def case_numa_policy(env):
    """NUMA memory policies come back: each thread's own (set_mempolicy: bind with
    MPOL_F_STATIC_NODES, preferred) and, on a machine of several NUMA nodes, a
    mapping's (mbind: interleave on its first page, none on the next; with one node
    cryo does not read them, see task_dump.cpp). The policies are checked, not where
    memory lies."""
    online = read_text("/sys/devices/system/node/online", "0").strip()
    several = "several" if any(c in online for c in "-,") else "one"
    if several == "one":
        log(f"NUMA nodes online: {online}: a mapping's own policy is not checked (cryo reads it with several nodes only)")
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn(["/usr/bin/python3", "-c", NUMA, ready, report, several], name="numa")
    env.wait_ready(ready, pid)
    env.round_trip(pid, snapshot(pid), compare=False)
    env.trigger_and_report(pid, report)


def case_chroot(env):
    """A process in a chroot (busybox-static in a directory) keeps its root, exe and cwd."""
    busybox = "/bin/busybox"
    if not os.path.exists(busybox):
        log("no /bin/busybox (busybox-static): nothing to test")
        return
    jail = env.path("jail")
    os.mkdir(jail)
    shutil.copy2(busybox, jail)
    pid = env.spawn(["chroot", jail, "/busybox", "sleep", "1000"], name="jailed")
    wait_until(lambda: read_text(f"/proc/{pid}/comm", "").strip() == "busybox", 5, what="busybox in the chroot")
    links = {name: os.readlink(f"/proc/{pid}/{name}") for name in ("root", "exe", "cwd")}
    before = snapshot(pid)
    env.round_trip(pid, before, compare=False)
    compare_snapshots(before, snapshot(pid), pid)
    check_eq({name: os.readlink(f"/proc/{pid}/{name}") for name in links}, links, "root, exe and cwd")


KNOBS = r'''
import ctypes, mmap, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(41, 1, 0, 0, 0) == 0  # PR_SET_THP_DISABLE
assert libc.prctl(67, 1, 0, 0, 0) == 0  # PR_SET_MEMORY_MERGE
assert libc.prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE: PR_MDWE_REFUSE_EXEC_GAIN
with open("/proc/self/oom_score_adj", "w") as f:
    f.write("321")
with open("/proc/self/loginuid", "w") as f:
    f.write("4321")
with open("/proc/self/coredump_filter", "w") as f:
    f.write("0x73")

def check(*_):
    problems = []
    if libc.prctl(66, 0, 0, 0, 0) != 1:  # PR_GET_MDWE
        problems.append(f"PR_GET_MDWE answers {libc.prctl(66, 0, 0, 0, 0)}")
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        problems.append("a writable and executable mapping was made (memory-deny-write-execute is off)")
    except OSError:
        pass
    open(sys.argv[2], "w").write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
    sys.exit(0)

signal.signal(signal.SIGUSR1, check)
open(sys.argv[1], "w").write("ready")
while True:
    time.sleep(1)
'''


SIGIO_OWNER = r'''
import fcntl, os, signal, sys, time
F_SETSIG = 10
ready, report = sys.argv[1], sys.argv[2]
r, w = os.pipe()
fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC | os.O_NONBLOCK)
fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid())
fcntl.fcntl(r, F_SETSIG, signal.SIGUSR2)
def got(signo, frame):
    data = os.read(r, 100)
    with open(report, "a") as f:
        f.write(f"{signal.Signals(signo).name} {data.decode()}\n")
signal.signal(signal.SIGUSR2, got)
signal.signal(signal.SIGIO, lambda *a: open(report, "a").write("SIGIO\n"))
with open(ready, "w") as f:
    f.write(str(w))
while True:
    time.sleep(1)
'''


def case_sigio_owner(env):
    """A pipe with O_ASYNC, an owner (F_SETOWN) and a signal (F_SETSIG): after the
    restore, data written into it still signals its owner with that signal."""
    script, ready, report = env.path("sigio.py"), env.path("sigio.ready"), env.path("sigio.report")
    with open(script, "w") as f:
        f.write(SIGIO_OWNER)
    pid = env.spawn(["/usr/bin/python3", script, ready, report], name="sigio")
    write_fd = int(env.wait_file(ready, pid=pid))

    def poke(text):
        with open(f"/proc/{pid}/fd/{write_fd}", "w") as pipe:
            pipe.write(text)
        return wait_until(lambda: text in (read_text(report) or ""), 5, what=f"the owner's signal for {text!r}")

    poke("before")
    env.round_trip(pid, snapshot(pid))
    poke("after")
    check_eq((read_text(report) or "").split("\n"), ["SIGUSR2 before", "SIGUSR2 after", ""], "signals the owner got")


def process_knobs(pid):
    status = status_fields(pid, keys=("THP_enabled",))
    ksm = dict(line.split(": ", 1) for line in read_text(f"/proc/{pid}/ksm_stat", "").splitlines() if ": " in line)
    return {"THP_enabled": status.get("THP_enabled"),
            "oom_score_adj": read_text(f"/proc/{pid}/oom_score_adj").strip(),
            "loginuid": read_text(f"/proc/{pid}/loginuid").strip(),
            "coredump_filter": read_text(f"/proc/{pid}/coredump_filter").strip(),
            "ksm_merge_any": ksm.get("ksm_merge_any")}


def case_process_knobs(env):
    """prctl(PR_SET_THP_DISABLE), prctl(PR_SET_MEMORY_MERGE), oom_score_adj,
    coredump_filter and the audit login uid come back, and memory-deny-write-execute (prctl(PR_SET_MDWE)): the
    restored program still cannot make a writable and executable mapping."""
    script, ready, report = env.path("knobs.py"), env.path("knobs.ready"), env.path("knobs.report")
    with open(script, "w") as f:
        f.write(KNOBS)
    pid = env.spawn(["/usr/bin/python3", script, ready, report], name="knobs")
    env.wait_file(ready, pid=pid)
    knobs = process_knobs(pid)
    check_eq(knobs, {"THP_enabled": "0", "oom_score_adj": "321", "loginuid": "4321", "coredump_filter": "00000073",
                     "ksm_merge_any": "yes"}, "the knobs as set")
    env.round_trip(pid, snapshot(pid))
    check_eq(process_knobs(pid), knobs, "the knobs after the restore")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"attrs": case_attrs, "scheduling": case_scheduling, "chroot": case_chroot,
         "process_knobs": case_process_knobs, "sigio_owner": case_sigio_owner, "numa_policy": case_numa_policy})
