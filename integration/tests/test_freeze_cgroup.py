#!/usr/bin/env python3
"""--freeze-cgroup DIR: the tree's own freezer cgroup (v1 freezer.state, v2 cgroup.freeze)
is frozen while cryo seizes every thread in it, then thawed for the dump.

- storm: four workers fork and reap children non-stop; dumped with -R and again without,
  the tree is whole (every worker's count goes on after the restore), and the cgroup is
  thawed as it was found.
- paused: a frozen (paused) cgroup is dumped with -R: it stays frozen and nothing in it
  runs until it is thawed; ptrace alone cannot stop a frozen task, so without the
  freezer the dump times out.
- killed: cryo SIGKILLed in the middle of that dump: its watcher freezes the cgroup again.
- stray: a process in the cgroup outside the tree refuses the dump by name; everything
  runs on, thawed.
Each for the v1 freezer and the v2 cgroup when this host mounts them."""
import os
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, log, progress, reap, run, snapshot, state, wait_progress, wait_until  # noqa: E402

STORM = r'''
import os, signal, sys, time
ready, report, progress_path = sys.argv[1:4]
WORKERS = 4
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))

def publish(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

def worker(i):
    # Forks a child that exits at once, reaps it, counts; the count goes to a pipe.
    n = 0
    while True:
        child = os.fork()
        if child == 0:
            os._exit(7)
        _, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) != 7:
            os._exit(3)
        n += 1
        os.write(1, f"{i} {n}\n".encode())

pipes, workers = [], []
for i in range(WORKERS):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        worker(i)
    os.close(w)
    os.set_blocking(r, False)
    pipes.append(r)
    workers.append(pid)
counts, buffers = [0] * WORKERS, [b""] * WORKERS
publish(ready, f"READY pid={os.getpid()}\n")
problems = []
while not triggered:
    for i, r in enumerate(pipes):
        try:
            buffers[i] += os.read(r, 65536)
        except BlockingIOError:
            pass
        *lines, buffers[i] = buffers[i].split(b"\n")
        for line in lines:
            who, n = map(int, line.split())
            if n != counts[who] + 1:
                problems.append(f"worker {who} jumped from {counts[who]} to {n}")
            counts[who] = n
    publish(progress_path, " ".join(map(str, counts)) + "\n")
    time.sleep(0.01)
for pid in workers:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
publish(report, "OK\n" if not problems else "FAIL: " + "; ".join(problems[:5]) + "\n")
'''


def freezers():
    """{"v1": freezer hierarchy mount, "v2": cgroup2 mount} for those this host has."""
    found = {}
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        fstype, _, options = right.split()[:3]
        point = left.split()[4]
        if fstype == "cgroup" and "freezer" in options.split(","):
            found.setdefault("v1", point)
        elif fstype == "cgroup2":
            found.setdefault("v2", point)
    return found


class Cgroup:
    def __init__(self, kind):
        mounts = freezers()
        check(kind in mounts, f"no {kind} freezer is mounted here")
        self.kind = kind
        self.dir = os.path.join(mounts[kind], f"cryo-it-{uuid.uuid4().hex[:8]}")
        os.mkdir(self.dir)

    def enter(self, pid):
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def set_frozen(self, frozen):
        if self.kind == "v2":
            with open(os.path.join(self.dir, "cgroup.freeze"), "w") as f:
                f.write("1" if frozen else "0")
            wait_until(lambda: f"frozen {int(frozen)}" in open(os.path.join(self.dir, "cgroup.events")).read(), 10,
                       what=f"cgroup {self.dir} frozen={frozen}")
        else:
            with open(os.path.join(self.dir, "freezer.state"), "w") as f:
                f.write("FROZEN" if frozen else "THAWED")
            want = "FROZEN" if frozen else "THAWED"
            wait_until(lambda: open(os.path.join(self.dir, "freezer.state")).read().strip() == want, 10,
                       what=f"cgroup {self.dir} {want}")

    def frozen(self):
        if self.kind == "v2":
            return open(os.path.join(self.dir, "cgroup.freeze")).read().strip() == "1"
        return open(os.path.join(self.dir, "freezer.state")).read().strip() != "THAWED"

    def procs(self):
        return sorted(int(x) for x in open(os.path.join(self.dir, "cgroup.procs")).read().split())

    def remove(self):
        if not os.path.isdir(self.dir):
            return
        try:
            self.set_frozen(False)
        except Exception as e:  # noqa: BLE001 - best effort before the rmdir
            log(f"thawing {self.dir}: {e}")
        # What a failed case left running in it is ours: killed (its zombies leave the
        # cgroup at once; the harness reaps them), so that the directory can go.
        for pid in self.procs():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(300):
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        log(f"could not remove {self.dir}")


def start_storm(env, group):
    pid, _, report, prog = env.start_python(STORM, "storm")
    group.enter(pid)
    for child in [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]:
        group.enter(child)
    wait_until(lambda: len(progress(prog)) == 4 and min(progress(prog)) > 10, 20, what="every worker to fork")
    return pid, report, prog


def storm(env, kind):
    group = Cgroup(kind)
    try:
        pid, report, prog = start_storm(env, group)
        images = env.path("images")
        env.dump(pid, images, "-R", "--freeze-cgroup", group.dir)
        check(not group.frozen(), f"{group.dir} is left frozen after dump -R")
        at = progress(prog)
        wait_until(lambda: min(b - a for a, b in zip(at, progress(prog))) > 5, 10, what="the workers to go on after -R")

        env.dump(pid, images, "--freeze-cgroup", group.dir)
        # Children caught between fork and exit are in the image too: after the
        # kill they come to this subreaper, which must reap them all.
        env.reap_tree_of(pid)
        at_dump = progress(prog)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        workers = [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
        check_eq(len(workers), 4, "workers after the restore")
        missing = set([pid] + workers) - set(group.procs())
        check_eq(missing, set(), "restored processes outside the cgroup")
        wait_until(lambda: min(b - a for a, b in zip(at_dump, progress(prog))) > 20, 10,
                   what="every worker to go on after the restore")
        log(f"counts at the dump {at_dump}, now {progress(prog)}")
        env.trigger_and_report(pid, report)
    finally:
        group.remove()


def paused(env, kind):
    group = Cgroup(kind)
    try:
        pid, report, prog = start_storm(env, group)
        group.set_frozen(True)
        images = env.path("images")
        env.dump(pid, images, "-R", "--freeze-cgroup", group.dir, "--timeout", "5")
        check(group.frozen(), f"{group.dir} was paused and is thawed after dump -R")
        at = progress(prog)
        time.sleep(0.5)
        check_eq(progress(prog), at, "counts of a paused tree after dump -R")
        group.set_frozen(False)
        wait_until(lambda: min(b - a for a, b in zip(at, progress(prog))) > 5, 10, what="the workers to go on once thawed")
        env.trigger_and_report(pid, report)
    finally:
        group.remove()


def killed(env, kind):
    """cryo killed in the middle of the dump of a paused cgroup (thawed for the dump, its
    threads let go by the kernel when cryo dies): the cgroup is frozen again by cryo's
    watcher, and runs once thawed."""
    group = Cgroup(kind)
    try:
        pid, report, prog = start_storm(env, group)
        group.set_frozen(True)
        images = env.path("images")
        result = env.cryo("dump", "-t", pid, "-D", images, "--freeze-cgroup", group.dir, expect=None,
                          env_extra={"CRYO_FAILPOINT": "dump.memory"})
        check(result.returncode == -signal.SIGKILL and "failpoint dump.memory" in result.stderr,
              f"cryo was not killed at dump.memory: {result.returncode} {result.stderr.strip()!r}")
        wait_until(group.frozen, 10, what=f"{group.dir} to be frozen again")
        at = progress(prog)
        time.sleep(0.5)
        check_eq(progress(prog), at, "counts of the paused tree after cryo died")
        group.set_frozen(False)
        wait_until(lambda: min(b - a for a, b in zip(at, progress(prog))) > 5, 10, what="the workers to go on once thawed")
        env.trigger_and_report(pid, report)
    finally:
        group.remove()


def stray(env, kind):
    group = Cgroup(kind)
    try:
        pid, report, prog = start_storm(env, group)
        other = env.spawn(["sleep", "600"])
        group.enter(other)
        images = env.path("images")
        result = env.dump(pid, images, "--freeze-cgroup", group.dir, expect=1)
        check(f"pid {other}" in result.stderr and group.dir in result.stderr,
              f"the refusal does not name pid {other} and the cgroup: {result.stderr.strip()!r}")
        check(not group.frozen(), f"{group.dir} is left frozen after the refused dump")
        check(state(other) in "SR", f"the stray sleep is in state {state(other)}")
        at = progress(prog)
        wait_until(lambda: min(b - a for a, b in zip(at, progress(prog))) > 5, 10, what="the workers to go on")
        os.kill(other, signal.SIGKILL)
        reap([other])
        env.trigger_and_report(pid, report)
    finally:
        group.remove()


def cases():
    out = {}
    for kind in ("v1", "v2"):
        for name, fn in (("storm", storm), ("paused", paused), ("killed", killed), ("stray", stray)):
            out[f"{name}_{kind}"] = (lambda fn, kind: lambda env: fn(env, kind))(fn, kind)
    return out


if __name__ == "__main__":
    run(cases())
