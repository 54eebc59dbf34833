#!/usr/bin/env python3
"""cgroup membership in process mode. A tree moved into cgroups of its own (a v1
controller hierarchy and the v2 one, whatever this host mounts) comes back in the
same cgroups; with --manage-cgroups=soft (the default) they are made again if they
were removed; with =none (and props) a missing one fails the restore, nothing left
behind; with =strict, as in CRIU, one that exists fails it and missing ones are made;
with =ignore the tree stays in cryo's cgroups.

- cgroup_ns: a tree in a cgroup namespace of its own, rooted at the test's cgroups (removed
  after the dump): the restore makes them again and a new namespace rooted there; from inside
  the tree sees the same /proc/self/cgroup as before (its root), from outside it is in the
  test's cgroups."""
import os
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, kill_descendants, log, read_text, run, snapshot, wait_progress  # noqa: E402


def mounts(every=False):
    """(v1 hierarchy for 'pids' or 'memory', v2 mount), either may be None; with every,
    each mounted hierarchy (v1 and v2) once."""
    v1, v2, points = {}, None, []
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        fstype, _, options = right.split()[:3]
        point = left.split()[4]
        if fstype in ("cgroup", "cgroup2") and point not in points:
            points.append(point)
        if fstype == "cgroup2" and v2 is None:
            v2 = point
        elif fstype == "cgroup":
            for opt in options.split(","):
                v1.setdefault(opt, point)
    return points if every else (v1.get("pids") or v1.get("memory"), v2)


def membership(pid):
    return sorted(read_text(f"/proc/{pid}/cgroup").splitlines())


class Cgroups:
    """The test's own cgroup path in each mounted hierarchy it uses."""

    def __init__(self, every=False):
        self.path = f"/cryo-it-{uuid.uuid4().hex[:8]}/job"
        self.dirs = [m + self.path for m in mounts(every) if m]
        check(self.dirs, "no cgroup hierarchy is mounted")

    def make(self):
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
            if os.path.exists(os.path.join(d, "cpuset.cpus")):
                for f in ("cpuset.cpus", "cpuset.mems"):
                    for level in (os.path.dirname(d), d):
                        with open(os.path.join(level, f), "w") as out:
                            out.write(read_text(os.path.join(os.path.dirname(level), f)))

    def enter(self, pid):
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def exists(self):
        return [d for d in self.dirs if os.path.exists(d)]

    def remove(self):
        for d in self.dirs:
            for level in (d, os.path.dirname(d)):
                for _ in range(200):
                    try:
                        os.rmdir(level)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)


def start_in_cgroups(env, groups):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2"])
    env.wait_ready(ready, pid)
    groups.make()
    groups.enter(pid)
    wait_progress(prog, 2)
    lines = membership(pid)
    check(any(groups.path in line for line in lines), f"the workload did not enter {groups.path}: {lines}")
    for tid in os.listdir(f"/proc/{pid}/task"):
        check_eq(sorted(read_text(f"/proc/{pid}/task/{tid}/cgroup").splitlines()), lines, f"cgroups of thread {tid}")
    return pid, report, lines


def dump_and_remove(env, pid, groups):
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    groups.remove()
    check_eq(groups.exists(), [], "cgroup directories left after removal")
    return images


def case_soft(env):
    groups = Cgroups()
    try:
        pid, report, lines = start_in_cgroups(env, groups)
        images = dump_and_remove(env, pid, groups)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        check_eq(membership(pid), lines, "cgroups after the restore")
        check_eq(groups.exists(), groups.dirs, "cgroups made again")
        env.trigger_and_report(pid, report)
    finally:
        kill_descendants()  # a cgroup with a process left in it cannot be removed (a failed case leaves some)
        groups.remove()


def case_modes(env):
    groups = Cgroups(every=True)  # all of them: strict wants every cgroup of the tree missing
    try:
        pid, report, lines = start_in_cgroups(env, groups)
        images = dump_and_remove(env, pid, groups)
        result = env.restore(images, "--manage-cgroups=none", expect=1)[0]
        check(groups.path in result.stderr and "none" in result.stderr,
              f"the refusal of a missing cgroup does not name it: {result.stderr.strip()!r}")
        check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} is left after the failed restore")
        check_eq(groups.exists(), [], "cgroups made by a failed --manage-cgroups=none restore")

        groups.make()
        result = env.restore(images, "--manage-cgroups=strict", expect=1)[0]
        check(groups.path in result.stderr and "strict" in result.stderr,
              f"the strict refusal of an existing cgroup does not name it: {result.stderr.strip()!r}")
        check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} is left after the failed restore")
        check_eq(groups.exists(), groups.dirs, "cgroups that existed before a failed strict restore")
        groups.remove()

        _, rpid = env.restore(images, "--manage-cgroups=strict")
        check_eq(rpid, pid, "restored pid")
        check_eq(membership(pid), lines, "cgroups after a strict restore")
        os.kill(pid, signal.SIGKILL)
        env.reap_tree_of(pid)

        _, rpid = env.restore(images, "--manage-cgroups=ignore")
        check_eq(rpid, pid, "restored pid")
        mine = membership(os.getpid())
        log(f"restored into {membership(pid)}")
        check_eq(membership(pid), mine, "cgroups with --manage-cgroups=ignore (cryo's own)")
        env.trigger_and_report(pid, report)
    finally:
        kill_descendants()  # a cgroup with a process left in it cannot be removed (a failed case leaves some)
        groups.remove()


NS_PROGRAM = r'''
import os, signal, sys, time
ready, report, prog = sys.argv[1:4]
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
seen = open("/proc/self/cgroup").read()
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()}\n")
i = 0
while not triggered:
    i += 1
    with open(prog + ".tmp", "w") as f:
        f.write(f"{i}\n")
    os.rename(prog + ".tmp", prog)
    time.sleep(0.02)
now = open("/proc/self/cgroup").read()
bad = [line for line in now.splitlines() if not line.endswith(":/")]
with open(report, "w") as f:
    f.write("OK\n" if now == seen and not bad else f"FAIL: before {seen!r} now {now!r}\n")
'''


def case_cgroup_ns(env):
    groups = Cgroups()
    try:
        groups.make()
        script = env.path("cgns.py")
        with open(script, "w") as f:
            f.write(NS_PROGRAM)
        ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
        enter = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in groups.dirs)
        outer = env.spawn(["sh", "-c", f"{enter}; exec unshare --cgroup --fork setsid {sys.executable} {script} "
                                        f"{ready} {report} {prog}"], name="unshare")
        env.wait_ready(ready, outer)
        root = int(read_text(f"/proc/{outer}/task/{outer}/children").split()[0])
        check(os.readlink(f"/proc/{root}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup"),
              "no cgroup namespace of its own")
        lines = membership(root)
        wait_progress(prog, 2)
        images = env.path("images")
        env.dump(root, images)
        for _ in range(200):  # unshare ends with the dumped root
            if os.waitpid(outer, os.WNOHANG)[0]:
                break
            time.sleep(0.01)
        groups.remove()
        check_eq(groups.exists(), [], "cgroup directories left after removal")
        _, host = env.restore(images)
        check(os.readlink(f"/proc/{host}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup"),
              "the restored root shares cryo's cgroup namespace")
        check_eq(membership(host), lines, "cgroups of the restored root, seen from outside")
        check(all(groups.path not in line for line in membership(os.getpid())), "the test ended up in the cgroups")
        env.trigger_and_report(host, report)
    finally:
        kill_descendants()  # a cgroup with a process left in it cannot be removed (a failed case leaves some)
        groups.remove()


if __name__ == "__main__":
    run({"soft": case_soft, "modes": case_modes, "cgroup_ns": case_cgroup_ns})
