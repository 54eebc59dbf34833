#!/usr/bin/env python3
"""cgroup properties (limits) in process mode, as CRIU's --manage-cgroups keeps them. A
counter is moved into cgroups made by the test (a parent and a leaf, /cryo-it-X/job) with
memory, cpu and pids limits in their v1 hierarchies (or in cgroup2 on a pure v2 host), a v1
cpuset of one CPU and a v1 device list when those are mounted, and,
in cgroup2, what this host lets it enable there (on a hybrid host every v2 controller but
hugetlb is bound to v1: hugetlb limits and cgroup.max.* then). After the dump the cgroups
are removed, and the restore makes them again with their limits (soft: only those it
makes; full and props: every one; strict); --cgroup-root moves them; a limit the host refuses fails the
restore, naming the file, unless the mode sets no properties; a second copy restored while the
first runs gets cgroups of its own (copies). Every cgroup is removed
afterwards, passing or failing."""
import json
import os
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, kill_descendants, log, read_text, reap, run, snapshot, status_fields, wait_progress  # noqa: E402

MB = 1 << 20
OWNER = 4321  # the leaf cgroup's (and its cgroup.procs') owner


def every_mount():
    """Every cgroup hierarchy's mount point (a restore with --cgroup-root uses them all)."""
    out = []
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        if right.split()[0] in ("cgroup", "cgroup2") and left.split()[4] not in out:
            out.append(left.split()[4])
    return out


def hierarchies():
    """{controller or 'v2': mount point} for memory, cpu, pids, cpuset, devices (v1 when
    mounted so) and v2."""
    out = {}
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        fstype, _, options = right.split()[:3]
        point = left.split()[4]
        if fstype == "cgroup2":
            out.setdefault("v2", point)
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in ("memory", "cpu", "pids", "cpuset", "devices"):
                    out.setdefault(opt, point)
    return out


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def huge_size():
    """The v2 hugetlb file infix of the default huge page size ('2MB'), or None."""
    try:
        sizes = sorted(int(d.split("-")[1][:-2]) for d in os.listdir("/sys/kernel/mm/hugepages"))
    except OSError:
        return None
    if not sizes:
        return None
    kb = sizes[0]
    return f"{kb // 1024 // 1024}GB" if kb >= 1024 * 1024 else f"{kb // 1024}MB" if kb >= 1024 else f"{kb}KB"


class Limits:
    """The test's cgroups, /cryo-it-X/job in each hierarchy it uses, and the limits it sets:
    {mount: {relative dir: {file: value}}}, the parent's first."""

    def __init__(self):
        self.top = f"/cryo-it-{uuid.uuid4().hex[:8]}"
        self.path = self.top + "/job"
        self.mounts = hierarchies()
        self.limits = {}
        v2 = self.mounts.get("v2")
        v2_only = [c for c in ("memory", "cpu", "pids") if c not in self.mounts]
        offered = (read_text(os.path.join(v2, "cgroup.controllers"), "") if v2 else "").split()
        if "memory" in self.mounts:
            self.limits[self.mounts["memory"]] = {
                self.top: {"memory.limit_in_bytes": 512 * MB},
                self.path: {"memory.limit_in_bytes": 256 * MB, "memory.soft_limit_in_bytes": 128 * MB,
                            "memory.swappiness": 30}}
        if "cpu" in self.mounts:
            self.limits[self.mounts["cpu"]] = {
                self.top: {"cpu.shares": 2048},
                self.path: {"cpu.shares": 512, "cpu.cfs_period_us": 50000, "cpu.cfs_quota_us": 25000}}
        if "pids" in self.mounts:
            self.limits[self.mounts["pids"]] = {self.top: {}, self.path: {"pids.max": 64}}
        if "cpuset" in self.mounts:
            # The leaf runs on the last CPU alone (the process's affinity shows it); its
            # parent, as every new v1 cpuset, gets its own parent's CPUs and nodes.
            self.cpu = cpus(read_text(self.mounts["cpuset"] + "/cpuset.cpus"))[-1]
            self.limits[self.mounts["cpuset"]] = {self.top: {}, self.path: {"cpuset.cpus": self.cpu}}
        if "devices" in self.mounts:
            self.limits[self.mounts["devices"]] = {self.top: {}, self.path: {"devices.list": "c 1:3 rwm\nc 1:5 r"}}
        if v2:
            top, leaf = {"cgroup.max.descendants": 5}, {"cgroup.max.depth": 3}
            controls = []
            if "memory" in v2_only and "memory" in offered:
                controls.append("memory")
                leaf.update({"memory.max": 256 * MB, "memory.high": 200 * MB, "memory.low": 16 * MB})
            if "cpu" in v2_only and "cpu" in offered:
                controls.append("cpu")
                leaf.update({"cpu.max": "25000 50000", "cpu.weight": 50})
            if "pids" in v2_only and "pids" in offered:
                controls.append("pids")
                leaf.update({"pids.max": 64})
            size = huge_size()
            if "hugetlb" in offered and size:
                controls.append("hugetlb")
                leaf[f"hugetlb.{size}.max"] = 4 * 1024 * 1024 * (1024 if size.endswith("GB") else 1)
            else:
                log("cgroup2 offers no hugetlb here: only cgroup.max.* is set there")
            self.controls = controls
            self.limits[v2] = {self.top: top, self.path: leaf}
        log(f"limits: {self.limits}")
        check(self.limits, "no cgroup hierarchy with memory, cpu or pids is mounted")

    def dirs(self, path=None):
        return [m + (path or self.path) for m in self.limits]

    def make(self, with_limits=True):
        for mount, levels in self.limits.items():
            for rel, files in levels.items():
                d = mount + rel
                os.makedirs(d, exist_ok=True)
                if mount == self.mounts.get("cpuset"):
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        write(os.path.join(d, f), read_text(os.path.join(os.path.dirname(d), f)))
                if mount == self.mounts.get("v2") and rel == self.top:
                    for c in self.controls:
                        write(os.path.join(d, "cgroup.subtree_control"), "+" + c)
                if with_limits:
                    for name, value in files.items():
                        if name == "devices.list":
                            write(os.path.join(d, "devices.deny"), "a")
                            for rule in value.splitlines():
                                write(os.path.join(d, "devices.allow"), rule)
                        else:
                            write(os.path.join(d, name), value)
                    if rel == self.path:  # delegated to a user, as systemd's Delegate= does
                        for f in (d, os.path.join(d, "cgroup.procs")):
                            os.chown(f, OWNER, OWNER)

    def enter(self, pid):
        for d in self.dirs():
            write(os.path.join(d, "cgroup.procs"), pid)

    def check_limits(self, want=True, relocate=None):
        """Each limit reads what the test set (want) or not (a cgroup made without them).
        relocate: {mount: (new top or None, new leaf)} for a restore with --cgroup-root."""
        for mount, levels in self.limits.items():
            new_top, new_leaf = (relocate or {}).get(mount, (self.top, self.path))
            for rel, files in levels.items():
                where = new_top if rel == self.top else new_leaf
                if where is None:
                    continue
                if rel == self.path:
                    owners = [(os.stat(f).st_uid, os.stat(f).st_gid) for f in
                              (mount + where, os.path.join(mount + where, "cgroup.procs"))]
                    if want:
                        check_eq(owners, [(OWNER, OWNER)] * 2, f"owners of {mount}{where} and its cgroup.procs")
                    else:
                        check((OWNER, OWNER) not in owners, f"{mount}{where} was given its saved owner")
                for name, value in files.items():
                    got = (read_text(os.path.join(mount + where, name)) or "").strip()
                    if want:
                        check_eq(got, str(value), f"{mount}{where}/{name}")
                    else:
                        check(got != str(value), f"{mount}{where}/{name} is {got}: set though the mode sets none")

    def remove(self, *extra_paths):
        """Every directory the test or cryo may have made, deepest first."""
        for mount in every_mount():
            for rel in (self.path, self.top) + extra_paths:
                d = mount + rel
                for _ in range(250):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)

    def cleanup(self, *extra_paths):
        """After a case, passing or failing: its processes first (a cgroup with a task in it
        cannot be removed), then every directory."""
        kill_descendants()
        self.remove(*extra_paths)

    def existing(self, *paths):
        return [m + p for m in every_mount() for p in paths if os.path.exists(m + p)]


def cpus(text):
    """'0-2,5' -> [0, 1, 2, 5]"""
    out = []
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        out += list(range(int(first), int(last or first) + 1))
    return out


def check_affinity(groups, pid):
    """The restored process runs where its cpuset lets it (the kernel's view, not the file's)."""
    if "cpuset" not in groups.mounts:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        line = [x for x in read_text(f"/proc/{pid}/task/{tid}/status").splitlines() if x.startswith("Cpus_allowed_list")]
        check_eq(cpus(line[0].split(":", 1)[1]), [groups.cpu], f"the CPUs thread {tid} may run on")


def saved_cgroups(env, images):
    """What `cryo inspect` shows: {(controllers, path): {file: value}}."""
    image = json.loads(env.cryo("inspect", images).stdout)
    return {(c.get("controllers", ""), c["path"]): {p["name"]: p.get("value", "") for p in c.get("props", [])}
            for c in image["tree"].get("cgroups", [])}


def membership(pid):
    return sorted(read_text(f"/proc/{pid}/cgroup").splitlines())


def start_in(env, groups):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2"])
    env.wait_ready(ready, pid)
    groups.make()
    groups.enter(pid)
    wait_progress(prog, 2)
    lines = membership(pid)
    check(any(groups.path in line for line in lines), f"the workload did not enter {groups.path}: {lines}")
    return pid, report, lines


def dump_and_remove(env, pid, groups):
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    groups.remove()
    check_eq(groups.existing(groups.top), [], "cgroup directories left after removal")
    return images


def kill(env, pid):
    os.kill(pid, signal.SIGKILL)
    env.reap_tree_of(pid)


def case_soft(env):
    """The cgroups made again by a soft restore get their limits back; inspect shows them."""
    groups = Limits()
    try:
        pid, report, lines = start_in(env, groups)
        images = dump_and_remove(env, pid, groups)
        saved = saved_cgroups(env, images)
        log(f"inspect: {sorted(saved)}")
        for mount, levels in groups.limits.items():
            for rel, files in levels.items():
                found = [props for (ctl, path), props in saved.items() if path == rel and
                         all(props.get(n) == str(v) for n, v in files.items())]
                check(found, f"inspect shows no cgroup {rel} with {files} (of {mount})")
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        check_eq(membership(pid), lines, "cgroups after the restore")
        groups.check_limits()
        check_affinity(groups, pid)
        env.trigger_and_report(pid, report)
    finally:
        groups.cleanup()


def case_full(env):
    """Cgroups that exist already keep their own limits in soft mode; full sets the saved
    ones on them."""
    groups = Limits()
    try:
        pid, report, lines = start_in(env, groups)
        images = dump_and_remove(env, pid, groups)
        groups.make(with_limits=False)
        _, rpid = env.restore(images)
        check_eq(membership(pid), lines, "cgroups after a soft restore into existing ones")
        groups.check_limits(want=False)
        kill(env, pid)
        _, rpid = env.restore(images, "--manage-cgroups=full")
        check_eq(rpid, pid, "restored pid")
        check_eq(membership(pid), lines, "cgroups after a full restore")
        groups.check_limits()
        env.trigger_and_report(pid, report)
    finally:
        groups.cleanup()


def case_props_strict(env):
    """--manage-cgroups=props sets the saved limits on cgroups that exist; strict makes every
    one of them with its limits."""
    groups = Limits()
    try:
        pid, report, lines = start_in(env, groups)
        images = dump_and_remove(env, pid, groups)
        groups.make(with_limits=False)
        _, rpid = env.restore(images, "--manage-cgroups=props")
        check_eq(rpid, pid, "restored pid")
        check_eq(membership(pid), lines, "cgroups after a props restore")
        groups.check_limits()
        kill(env, pid)
        groups.remove()
        _, rpid = env.restore(images, "--manage-cgroups=strict")
        check_eq(membership(pid), lines, "cgroups after a strict restore")
        groups.check_limits()
        check_affinity(groups, pid)
        env.trigger_and_report(pid, report)
    finally:
        groups.cleanup()


def case_cgroup_root(env):
    """On dump, --cgroup-root /PARENT saves the cgroups below it alone. On restore,
    --cgroup-root /NEW puts the root's cgroup (the leaf, or the hierarchy's root) at /NEW in
    every hierarchy, with the leaf's limits, and memory:/OTHER/m overrides it for memory; the
    old parent is not made."""
    groups = Limits()
    new, other = f"/cryo-it-{uuid.uuid4().hex[:8]}", f"/cryo-it-{uuid.uuid4().hex[:8]}"
    try:
        pid, report, lines = start_in(env, groups)
        # On dump, --cgroup-root names where the saved cgroups stop: the leaf alone is saved.
        bounded = env.path("bounded")
        env.dump(pid, bounded, "-R", "--cgroup-root", groups.top)
        check_eq(sorted({path for _, path in saved_cgroups(env, bounded)}), [groups.path],
                 "the cgroups saved by a dump with --cgroup-root at their parent")
        images = dump_and_remove(env, pid, groups)
        extra = ["--cgroup-root", new]
        relocate = {m: (None, new) for m in groups.limits}
        if "memory" in groups.mounts:
            extra += ["--cgroup-root", f"memory:{other}/m"]
            relocate[groups.mounts["memory"]] = (None, other + "/m")
        _, rpid = env.restore(images, *extra)
        check_eq(rpid, pid, "restored pid")
        got = membership(pid)
        for line in lines:  # as in CRIU, the root's cgroup in every hierarchy moves ("/" too)
            _, controllers, path = line.split(":", 2)
            want = other + "/m" if "memory" in controllers.split(",") else new
            check(any(g.split(":", 2)[1] == controllers and g.split(":", 2)[2] == want for g in got),
                  f"{controllers or 'cgroup2'}: not moved to {want}: {got}")
        groups.check_limits(relocate=relocate)
        check_eq(groups.existing(groups.top), [], "the old parent made again despite --cgroup-root")
        env.trigger_and_report(pid, report)
    finally:
        groups.cleanup(other + "/m", other, new)


def case_copies(env):
    """Two copies of one image restored at once (--new-pidns): the first gets the saved
    cgroups; the second finds the leaf holding the first's processes and gets a sibling of its
    own, PATH-2, with the same limits, instead of sharing the first's budget; strict refuses
    it, naming the cgroup that exists, and leaves the first alone."""
    groups = Limits()
    second = groups.path + "-2"
    try:
        pid, report, lines = start_in(env, groups)
        images = dump_and_remove(env, pid, groups)
        _, first = env.restore(images, "--new-pidns")
        check_eq(membership(first), lines, "cgroups of the first copy")
        refused = env.cryo("restore", "-D", images, "-d", "--new-pidns", "--manage-cgroups=strict", expect=1)
        check("exists already" in refused.stderr, f"the strict refusal: {refused.stderr.strip()!r}")
        _, other = env.restore(images, "--new-pidns")
        want = sorted(line.rsplit(":", 1)[0] + ":" + second if line.rsplit(":", 1)[1] == groups.path else line
                      for line in lines)
        check_eq(membership(other), want, "cgroups of the second copy")
        check_eq(membership(first), lines, "cgroups of the first copy after the second's restore")
        groups.check_limits()
        groups.check_limits(relocate={m: (groups.top, second) for m in groups.limits})
        for host in (first, other):
            init = int(status_fields(host, keys=("PPid",))["PPid"])  # cryo's, pid 1 of the copy's namespace
            env.trigger_and_report(host, report)
            os.unlink(report)
            reap([init], what="cryo's init once the root has ended")
    finally:
        kill_descendants()
        for mount in every_mount():  # the copy's, before its parent
            if os.path.isdir(mount + second):
                os.rmdir(mount + second)
        groups.cleanup()


def case_refused_value(env):
    """A v1 cpu quota above its parent's is refused by the kernel: the restore fails naming
    the file, kills what it made and removes the cgroups it made; --manage-cgroups=none
    (no properties) restores into the cgroups as they are."""
    groups = Limits()
    cpu = groups.mounts.get("cpu")
    if not cpu:
        log("no v1 cpu hierarchy here: a quota above the parent's is not refused on cgroup v2; nothing to test")
        return
    try:
        pid, report, lines = start_in(env, groups)
        images = dump_and_remove(env, pid, groups)
        os.makedirs(cpu + groups.top)
        write(cpu + groups.top + "/cpu.cfs_quota_us", 10000)
        result = env.restore(images, expect=1)[0]
        check("cpu.cfs_quota_us" in result.stderr and groups.path in result.stderr,
              f"the refusal does not name the cgroup file: {result.stderr.strip()!r}")
        check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} is left after the failed restore")
        check_eq(groups.existing(groups.path), [], "cgroups made by the failed restore")
        groups.make(with_limits=False)
        write(cpu + groups.top + "/cpu.cfs_quota_us", 10000)
        _, rpid = env.restore(images, "--manage-cgroups=none")
        check_eq(rpid, pid, "restored pid")
        check_eq(membership(pid), lines, "cgroups after a restore without properties")
        check_eq(read_text(cpu + groups.path + "/cpu.cfs_quota_us").strip(), "-1", "quota with --manage-cgroups=none")
        env.trigger_and_report(pid, report)
    finally:
        groups.cleanup()


if __name__ == "__main__":
    run({"soft": case_soft, "full": case_full, "props_strict": case_props_strict, "cgroup_root": case_cgroup_root,
         "refused_value": case_refused_value, "copies": case_copies})
