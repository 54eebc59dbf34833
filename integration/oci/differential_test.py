"""runc as the oracle: the same bundles run under runc (Debian's 1.1) and under cryo, each with its
own --root, and what the container sees from inside (capabilities, mounts, rlimits, hostname, id maps,
sysctls, masked and read-only paths, namespaces) and from outside (cgroup files, `state`, hooks, the
exit code) must match. Error cases must fail (or run) under both.

Where cryo differs on purpose, the case says why (oci/README.md, "Where cryo and runc differ")."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from cryo_oci import CRYO, NamespaceHolder, check, main

RUNC = shutil.which("runc") or "/usr/sbin/runc"
CGROUP = "/sys/fs/cgroup"

# The probe prints one section per view; FILES is filled in per case (sysctls, masked paths...).
PROBE = r"""
echo '== caps'; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status
echo '== ids'; id; cat /proc/self/uid_map /proc/self/gid_map; umask
echo '== uts'; hostname; cat /proc/sys/kernel/domainname
echo '== rlimits'; cat /proc/self/limits
echo '== cwd'; pwd
echo '== env'; env | grep -v '^PWD=\|^SHLVL=' | sort
echo '== cgroup'; cat /proc/self/cgroup
echo '== files'; for f in FILES; do printf '%s: ' "$f"; if [ -e "$f" ]; then head -c 64 "$f" 2>&1 | head -n 1; echo; else echo missing; fi; done
echo '== writable'; for f in WRITABLE; do if touch "$f" 2>/dev/null || echo 1 2>/dev/null > "$f"; then echo "$f: yes"; else echo "$f: no"; fi; done
echo '== ns'; for n in NAMESPACES; do echo "$n $(readlink /proc/self/ns/$n)"; done
echo '== mountinfo'; cat /proc/self/mountinfo
echo '== end'
trap 'exit 7' TERM
while :; do sleep 1; done
"""

DEFAULT_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/sys/kernel/msgmax"]
DEFAULT_WRITABLE = ["/proc/sys/kernel/msgmax", "/proc/sysrq-trigger", "/tmp/x", "/dev/shm/x", "/proc/bus"]


class Runtime:
    def __init__(self, name, binary, root):
        self.name, self.binary, self.root = name, binary, root

    def call(self, args, stdout=None, timeout=30):
        """Runs the runtime; returns (code, stdout, stderr). stdout may be a file the container keeps."""
        cmd = [self.binary, "--root", self.root] + args
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=stdout or out, stderr=err, text=True,
                               timeout=timeout)
            out.seek(0)
            err.seek(0)
            return p.returncode, out.read(), err.read()

    def state(self, cid):
        code, out, err = self.call(["state", cid])
        return json.loads(out) if code == 0 else {"error": err.strip()}

    def delete(self, cid):
        self.call(["delete", "--force", cid])


def cgroup_files(path):
    """The limits a container's cgroup holds, read from the host (cgroup v1 controllers)."""
    out = {}
    for controller, files in (("memory", ["memory.limit_in_bytes", "memory.soft_limit_in_bytes",
                                          "memory.memsw.limit_in_bytes", "memory.swappiness"]),
                              ("pids", ["pids.max"]),
                              ("cpu,cpuacct", ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"]),
                              ("cpuset", ["cpuset.cpus", "cpuset.mems"])):
        for name in files:
            try:
                with open(os.path.join(CGROUP, controller, path.lstrip("/"), name)) as f:
                    out[controller + "/" + name] = f.read().strip()
            except OSError:
                pass
    return out


def remove_cgroup(path):
    for base in os.listdir(CGROUP):
        target = os.path.join(CGROUP, base, path.lstrip("/"))
        if os.path.isdir(target):
            try:
                os.rmdir(target)
            except OSError:
                pass


def wait_exit(pid, timeout=15):
    """The init is our child (we are a subreaper): its exit status, or None on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def sections(text):
    out, name = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            name = line[3:]
            out[name] = []
        elif name:
            out[name].append(line)
    return out


def propagation(optional):
    kinds = sorted(re.sub(r":\d+", "", o) for o in optional.split() if o)
    return ",".join(kinds) or "private"


def mounts(lines):
    """mountinfo as (mount point, fs type, per-mount options, super options, propagation), ids dropped."""
    out = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 6:
            continue
        fstype, _source, superopts = (right.split(" ") + ["", "", ""])[:3]
        out.append("%s %s %s %s %s" % (fields[4], fstype, fields[5], superopts,
                                       propagation(" ".join(fields[6:]))))
    return sorted(out)


def limits(lines):
    return [re.sub(r"\s{2,}", " ", line).strip() for line in lines]


class Observation:
    def __init__(self):
        self.created = None  # (code, stderr)
        self.state = {}
        self.running = {}
        self.cgroups = {}
        self.inside = {}
        self.exit_code = None
        self.stopped = {}


def observe(env, rt, case, bundle, cgroup_path):
    """create, state, cgroup files, start, the probe's output, SIGTERM, exit code, state, delete."""
    ob = Observation()
    cid = "diff-" + case
    out_path = os.path.join(env.tmp, "%s-%s.out" % (rt.name, case))
    with open(out_path, "w") as out:
        code, _, err = rt.call(["create", "--bundle", bundle, cid], stdout=out)
    ob.created = (code, err.strip())
    if code != 0:
        rt.delete(cid)
        remove_cgroup(cgroup_path)
        return ob
    try:
        ob.state = rt.state(cid)
        ob.cgroups = cgroup_files(cgroup_path)
        rt.call(["start", cid])
        deadline = time.time() + 15
        while time.time() < deadline and "== end" not in open(out_path).read():
            time.sleep(0.05)
        ob.running = rt.state(cid)
        ob.inside = sections(open(out_path).read())
        rt.call(["kill", cid, "TERM"])
        ob.exit_code = wait_exit(ob.state.get("pid", -1))
        ob.stopped = rt.state(cid)
    finally:
        rt.delete(cid)
        remove_cgroup(cgroup_path)
    return ob


def runtimes(env):
    return (Runtime("runc", RUNC, os.path.join(env.tmp, "runc-state")),
            Runtime("cryo", CRYO, os.path.join(env.tmp, "cryo-state")))


def runc_spec(env, case, edit=None, files=DEFAULT_FILES, writable=DEFAULT_WRITABLE, namespaces=()):
    """`runc spec`'s config with the rootfs, the probe and a cgroup path of this case; then edit."""
    bundle = os.path.join(env.tmp, "bundle-" + case)
    os.makedirs(bundle)
    subprocess.run([RUNC, "spec", "--bundle", bundle], check=True, timeout=30)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    script = PROBE.replace("FILES", " ".join(files)).replace("WRITABLE", " ".join(writable))
    config["root"]["path"] = env.rootfs
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", script.replace("NAMESPACES", " ".join(namespaces) or "uts")]
    config["linux"]["cgroupsPath"] = "/cryo-test-diff-" + case
    if edit:
        edit(config)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return bundle, config


def namespace_kinds(lines):
    """'uts uts:[N]' lines as 'uts host' or 'uts own': a namespace each runtime made has a number
    of its own (the kernel reuses a freed one only when the other runtime's is gone already)."""
    out = []
    for line in lines:
        kind, _, link = line.partition(" ")
        try:
            host = os.readlink("/proc/self/ns/" + kind)
        except OSError:
            host = None
        out.append("%s %s" % (kind, "host" if link == host else "own"))
    return out


def compare(env, case, edit=None, expect_differences=None, normalize_mount=None, **spec_args):
    """Runs the bundle under both runtimes and checks every view; expect_differences names the
    sections where cryo differs on purpose, each with the reason."""
    bundle, config = runc_spec(env, case, edit, **spec_args)
    runc, cryo = runtimes(env)
    a = observe(env, runc, case, bundle, config["linux"]["cgroupsPath"])
    b = observe(env, cryo, case, bundle, config["linux"]["cgroupsPath"])
    expected = expect_differences or {}
    check(a.created[0] == 0, "%s: runc creates it: %s" % (case, a.created[1]))
    check(b.created[0] == 0, "%s: cryo creates it: %s" % (case, b.created[1]))
    if a.created[0] != 0 or b.created[0] != 0:
        return a, b
    for name in sorted(set(a.inside) | set(b.inside)):
        left, right = a.inside.get(name, []), b.inside.get(name, [])
        if name == "mountinfo":
            # cryo also mounts the hybrid host's cgroup2 hierarchy (where controllers such as hugetlb live,
            # see limits_test.py); runc 1.1 mounts the v1 hierarchies only.
            left = [m for m in mounts(left) if not m.startswith("/sys/fs/cgroup/unified ")]
            right = [m for m in mounts(right) if not m.startswith("/sys/fs/cgroup/unified ")]
            if normalize_mount:
                left, right = sorted(map(normalize_mount, left)), sorted(map(normalize_mount, right))
        elif name == "rlimits":
            left, right = limits(left), limits(right)
        elif name == "ns":
            left, right = namespace_kinds(left), namespace_kinds(right)
        if name in expected:
            print("known difference in %s/%s (%s)" % (case, name, expected[name]), flush=True)
            continue
        only_runc = [x for x in left if x not in right]
        only_cryo = [x for x in right if x not in left]
        check(not only_runc and not only_cryo, "%s: %s is the same (runc only: %s; cryo only: %s)"
              % (case, name, only_runc, only_cryo))
    check(a.cgroups == b.cgroups, "%s: cgroup files from the host: %s vs %s" % (case, a.cgroups, b.cgroups))
    check(a.exit_code == b.exit_code == 7, "%s: exit code after SIGTERM: runc %s, cryo %s"
          % (case, a.exit_code, b.exit_code))
    for label, x, y in (("created", a.state, b.state), ("running", a.running, b.running),
                        ("stopped", a.stopped, b.stopped)):
        check(x.get("status") == y.get("status") == label, "%s: state says %s: %s / %s"
              % (case, label, x.get("status"), y.get("status")))
        check(x.get("bundle") == y.get("bundle") == bundle, "%s: state.bundle (%s)" % (case, label))
        check(bool(x.get("pid")) == bool(y.get("pid")), "%s: state.pid presence (%s)" % (case, label))
        # ociVersion is the runtime-spec version each implements (runc 1.1: 1.0.2-dev): only its form matches.
        check(all(re.match(r"^1\.\d+\.\d+", s.get("ociVersion", "")) for s in (x, y)),
              "%s: state.ociVersion is a runtime-spec version (%s)" % (case, label))
        check(set(x) & {"ociVersion", "id", "status", "pid", "bundle"} == set(y) & {"ociVersion", "id", "status", "pid",
                                                                                    "bundle"},
              "%s: state fields (%s)" % (case, label))
    return a, b


# The bundles.

def test_default_spec(env):
    compare(env, "default")


def full_edit(env):
    data = os.path.join(env.tmp, "data")
    os.makedirs(data, exist_ok=True)

    def edit(c):
        c["hostname"] = "full-host"
        c["domainname"] = "full.domain"
        p = c["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 0o027}
        p["env"] = ["PATH=/bin:/usr/bin", "A=1", "B=two words"]
        p["cwd"] = "/tmp"
        keep = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"]
        p["capabilities"] = {"bounding": keep, "effective": keep[:2], "permitted": keep, "inheritable": keep[:1],
                             "ambient": keep[:1]}
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200}]
        p["noNewPrivileges"] = True
        p["oomScoreAdj"] = 100
        c["root"]["readonly"] = False
        c["mounts"] += [{"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]},
                        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                         "options": ["nosuid", "nodev", "mode=755", "size=1m"]}]
        c["annotations"] = {"org.example": "1"}
        c["linux"]["namespaces"].append({"type": "cgroup"})
        c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
                                  "uid": 0, "gid": 0}]
        c["linux"]["resources"] = {
            "devices": [{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}],
            "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
            "pids": {"limit": 50}, "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"}}
        c["linux"]["sysctl"] = {"kernel.msgmax": "9999", "net.ipv4.ip_forward": "1"}
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                 "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
        c["linux"]["maskedPaths"] += ["/proc/cmdline"]
        c["linux"]["readonlyPaths"] += ["/etc"]
        c["linux"]["rootfsPropagation"] = "rslave"
    return edit


def test_full(env):
    # runc 1.1 implements runtime-spec 1.0.2, which has no domainname: it leaves "(none)".
    a, b = compare(env, "full", full_edit(env),
                   expect_differences={"uts": "runc 1.1 ignores domainname (runtime-spec 1.1)"},
                   files=DEFAULT_FILES + ["/proc/cmdline", "/dev/fuse", "/proc/self/oom_score_adj"],
                   writable=["/etc/x", "/data/x", "/run/x", "/tmp/x", "/proc/sys/kernel/msgmax"])
    check(a.inside.get("uts", [""])[0] == b.inside.get("uts", [""])[0] == "full-host", "full: hostname")
    check(b.inside.get("uts", ["", ""])[1] == "full.domain", "full: cryo sets domainname")


def test_hooks(env):
    log = os.path.join(env.tmp, "hooks")
    os.makedirs(log)
    script = os.path.join(env.tmp, "hook.sh")
    with open(script, "w") as f:
        # What a hook gets: its name, and the state's status and whether it has a pid.
        f.write("#!/bin/sh\nstate=$(cat | tr -d '\\n')\nstatus=$(echo \"$state\" | sed 's/.*\"status\": *\"\\([a-z]*\\)\".*/\\1/')\n"
                "pid=$(echo \"$state\" | grep -c '\"pid\": *[1-9]')\necho \"$1 $status $pid\" >> \"$2\"\n")
    os.chmod(script, 0o755)
    results = {}
    for name in ("runc", "cryo"):
        out = os.path.join(log, name)

        def hook(kind):
            return [{"path": script, "args": ["hook.sh", kind, out]}]

        def edit(c):
            c["hooks"] = {k: hook(k) for k in ("prestart", "createRuntime", "poststart", "poststop")}
            c["hooks"]["createContainer"] = hook("createContainer")
        bundle, config = runc_spec(env, "hooks-" + name, edit)
        rt = dict((r.name, r) for r in runtimes(env))[name]
        ob = observe(env, rt, "hooks-" + name, bundle, config["linux"]["cgroupsPath"])
        check(ob.created[0] == 0 and ob.exit_code == 7, "hooks: %s runs the bundle: %s" % (name, ob.created[1]))
        results[name] = open(out).read().splitlines() if os.path.exists(out) else []
    # runc 1.1 gives poststart hooks the state from before start ("created"); cryo gives the state after it
    # ("running"), as the runtime-spec's lifecycle has it (poststart runs once the process has started).
    runc_seen = [line.replace("poststart created", "poststart running") for line in results["runc"]]
    check(runc_seen == results["cryo"] and len(results["cryo"]) == 5,
          "hooks run in the same order with the same state: runc %s, cryo %s" % (results["runc"], results["cryo"]))


def test_namespaces_by_path(env):
    with NamespaceHolder("--uts", "--net", "--ipc") as ns_dir:
        def edit(c):
            for ns in c["linux"]["namespaces"]:
                if ns["type"] in ("uts", "network", "ipc"):
                    ns["path"] = ns_dir + {"network": "net"}.get(ns["type"], ns["type"])
        a, b = compare(env, "nspath", edit, namespaces=("uts", "net", "ipc"))
        want = ["%s %s" % (n, os.readlink(ns_dir + n)) for n in ("uts", "net", "ipc")]
        check(a.inside.get("ns") == b.inside.get("ns") == want, "nspath: both join the helper's namespaces: %s / %s"
              % (a.inside.get("ns"), b.inside.get("ns")))
        check(a.inside.get("uts", [""])[0] == "runc", "nspath: the hostname is set in the joined uts namespace")


def test_user_namespace(env):
    # runc 1.1 cannot reach a rootfs under a 0700 directory from the mapped user (cryo can: see
    # security_test.py); the comparison needs a bundle both run.
    os.chmod(env.tmp, 0o755)
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    compare(env, "userns", edit, namespaces=("user", "uts"))


def test_rlimits_sysctl(env):
    def edit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                   {"type": "RLIMIT_STACK", "soft": 4 << 20, "hard": 8 << 20},
                                   {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192}]
        c["linux"]["sysctl"] = {"kernel.msgmax": "4321", "kernel.shmmni": "1000", "fs.mqueue.msg_max": "20",
                                "net.ipv4.ip_forward": "1", "net.core.somaxconn": "999"}
    compare(env, "limits", edit, files=["/proc/sys/kernel/msgmax", "/proc/sys/kernel/shmmni",
                                        "/proc/sys/fs/mqueue/msg_max", "/proc/sys/net/ipv4/ip_forward",
                                        "/proc/sys/net/core/somaxconn"])


def test_propagation(env):
    def cgroup_binds_unlabelled(mount):
        # Known difference: under "rshared" runc 1.1 makes its cgroup v1 hierarchy binds shared although
        # the host's hierarchies are private here; cryo's binds keep the host mount's propagation.
        return re.sub(r" (shared|private)$", "", mount) if mount.startswith("/sys/fs/cgroup/") else mount
    for value in ("private", "rprivate", "shared", "rshared", "slave", "rslave"):
        compare(env, "prop-" + value, lambda c, v=value: c["linux"].update(rootfsPropagation=v),
                normalize_mount=cgroup_binds_unlabelled if value == "rshared" else None)


def test_masked_readonly(env):
    def edit(c):
        c["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/cmdline", "/sys/firmware", "/no/such/path"]
        c["linux"]["readonlyPaths"] = ["/proc/sys", "/tmp", "/no/such/ro"]
        c["root"]["readonly"] = False
    compare(env, "masked", edit, files=["/proc/kcore", "/proc/cmdline", "/sys/firmware", "/proc/sys/kernel/msgmax"],
            writable=["/tmp/x", "/proc/sys/kernel/msgmax", "/etc/x", "/proc/cmdline"])


def test_cgroup_limits(env):
    def edit(c):
        c["linux"]["resources"]["memory"] = {"limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20,
                                             "swappiness": 10}
        c["linux"]["resources"]["pids"] = {"limit": 64}
        c["linux"]["resources"]["cpu"] = {"shares": 256, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"}
    compare(env, "cgroups", edit)


def verdict(env, case, edit):
    """(runc's create code, cryo's create code, their stderr) for a bundle that may be refused."""
    bundle, config = runc_spec(env, case, edit)
    out = []
    for rt in runtimes(env):
        code, _, err = rt.call(["create", "--bundle", bundle, "e-" + case])
        if code == 0:
            pid = rt.state("e-" + case).get("pid")
            rt.delete("e-" + case)
            if pid:
                wait_exit(pid, 5)
        remove_cgroup(config["linux"]["cgroupsPath"])
        out.append((code, err.strip().splitlines()[-1:] if err.strip() else []))
    return out


def test_errors(env):
    def ns_without(kind):
        return lambda c: c["linux"].update(namespaces=[n for n in c["linux"]["namespaces"] if n["type"] != kind])
    same = {
        # Both run these.
        "unknown-property": lambda c: c.update({"org.example.ext": {"a": 1}}),
        "kernel-memory": lambda c: c["linux"]["resources"].update(memory={"kernel": 1 << 30, "kernelTCP": 1 << 30}),
        "unknown-capability": lambda c: c["process"]["capabilities"]["bounding"].append("CAP_TEST"),
        "no-hostname-no-uts": lambda c: (c.pop("hostname"), ns_without("uts")(c)),
        # Both refuse these.
        "bad-rlimit": lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
        "no-args": lambda c: c["process"].update(args=[]),
        "missing-program": lambda c: c["process"].update(args=["/no/such/program"]),
        "relative-cwd": lambda c: c["process"].update(cwd="tmp"),
        "hostname-no-uts": ns_without("uts"),
        "bad-namespace": lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
        "userns-no-maps": lambda c: c["linux"]["namespaces"].append({"type": "user"}),
        "no-rootfs": lambda c: c["root"].update(path="/no/such/rootfs"),
        "net-sysctl-host-netns": lambda c: (ns_without("network")(c), c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"})),
        "bad-sysctl": lambda c: c["linux"].update(sysctl={"kernel.no_such_knob": "1"}),
        "bad-propagation": lambda c: c["linux"].update(rootfsPropagation="sideways"),
        # An unbindable parent cannot give the rootfs bind.
        "runbindable": lambda c: c["linux"].update(rootfsPropagation="runbindable"),
        # AppArmor is not enabled on this host: runc refuses a profile, cryo refuses AppArmor anywhere.
        "apparmor": lambda c: c["process"].update(apparmorProfile="unconfined-profile"),
    }
    for case, edit in same.items():
        (runc_code, runc_err), (cryo_code, cryo_err) = verdict(env, case, edit)
        check((runc_code == 0) == (cryo_code == 0), "%s: runc %s, cryo %s (%s / %s)" % (
            case, "runs it" if runc_code == 0 else "refuses", "runs it" if cryo_code == 0 else "refuses",
            runc_err, cryo_err))
    # Deliberately stricter (oci/README.md): runc 1.1 does not know mounts[].uidMappings (runtime-spec 1.2),
    # ignores them and mounts without the id mapping; cryo cannot do idmapped mounts and refuses.
    stricter = {
        "idmapped-mount": lambda c: c["mounts"].append({"destination": "/mnt", "type": "bind", "source": env.tmp,
                                                        "options": ["rbind"],
                                                        "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
                                                        "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}),
    }
    for case, edit in stricter.items():
        (runc_code, _), (cryo_code, cryo_err) = verdict(env, case, edit)
        check(runc_code == 0 and cryo_code != 0 and "not supported" in " ".join(cryo_err),
              "%s: runc ignores it, cryo refuses naming it: %s" % (case, cryo_err))


if __name__ == "__main__":
    main({"default": test_default_spec, "full": test_full, "hooks": test_hooks, "nspath": test_namespaces_by_path,
          "userns": test_user_namespace, "limits": test_rlimits_sysctl, "propagation": test_propagation,
          "masked": test_masked_readonly, "cgroups": test_cgroup_limits, "errors": test_errors})
