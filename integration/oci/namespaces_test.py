"""Namespaces created and joined by path, hostname/domainname, sysctl, --no-pivot,
--preserve-fds, exec --process, features and spec."""
import json
import os
import subprocess

from cryo_oci import NamespaceHolder, check, main


def test_join_by_path(env):
    a = env.bundle("nsa", ["sh", "-c", "hostname > /tmp/a-host; exec sleep 100"],
                   edit=lambda c: c.update(hostname="host-a"))
    env.run(["run", "-d", "--bundle", a, "nsa"])
    pid = env.state("nsa")["pid"]

    def edit(c):
        c.pop("hostname", None)
        for ns in c["linux"]["namespaces"]:
            if ns["type"] in ("uts", "network", "ipc"):
                ns["path"] = "/proc/%d/ns/%s" % (pid, {"network": "net"}.get(ns["type"], ns["type"]))
    b = env.bundle("nsb", ["sh", "-c", "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/pid"], edit=edit)
    p = env.run(["run", "--bundle", b, "nsb"])
    lines = p.stdout.split()
    check(lines[0] == "host-a", "joined uts namespace by path has the other container's hostname: " + p.stdout)
    check(lines[1] == os.readlink("/proc/%d/ns/net" % pid), "joined network namespace by path")
    check(lines[2] != os.readlink("/proc/%d/ns/pid" % pid), "a new pid namespace is still new")
    env.run(["delete", "--force", "nsa"])

    # Namespaces of a process that is no container, the hostname set in the joined uts namespace (as runc does).
    with NamespaceHolder("--uts", "--ipc") as ns_dir:
        def edit_helper(c):
            c["hostname"] = "joined-host"
            for ns in c["linux"]["namespaces"]:
                if ns["type"] in ("uts", "ipc"):
                    ns["path"] = ns_dir + ns["type"]
        b = env.bundle("nsc", ["sh", "-c", "hostname; readlink /proc/self/ns/ipc"], edit=edit_helper)
        p = env.run(["run", "--bundle", b, "nsc"], check=False)
        check(p.returncode == 0 and p.stdout.split() == ["joined-host", os.readlink(ns_dir + "ipc")],
              "uts and ipc joined by path of an unshare'd process, hostname set: %s%s" % (p.stdout, p.stderr))
        with open("/proc/sys/kernel/hostname") as f:
            check(f.read().strip() != "joined-host", "the host's hostname is untouched")


def test_uts_sysctl_nopivot(env):
    def edit(c):
        c["hostname"] = "cryo-host"
        c["domainname"] = "cryo.domain"
        c["linux"]["sysctl"] = {"kernel.msgmax": "12345", "net.ipv4.ip_forward": "1"}
    b = env.bundle("uts", ["sh", "-c", "hostname; cat /proc/sys/kernel/domainname /proc/sys/kernel/msgmax "
                                       "/proc/sys/net/ipv4/ip_forward"], edit=edit)
    p = env.run(["run", "--no-pivot", "--bundle", b, "uts"])
    check(p.stdout.split() == ["cryo-host", "cryo.domain", "12345", "1"], "hostname, domainname, sysctl, --no-pivot: "
          + p.stdout + p.stderr)
    check(open("/proc/sys/kernel/hostname").read().strip() != "cryo-host", "the host's hostname is untouched")


def test_preserve_fds_and_process_file(env):
    r, w = os.pipe()
    os.set_inheritable(w, True)
    b = env.bundle("fds", ["sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd | wc -l"])
    # fd 3 in cryo is our pipe's write end.
    import subprocess
    p = subprocess.run("exec 3>&%d %d>&-; %s --root %s run --preserve-fds 1 --bundle %s fds"
                       % (w, w, os.environ.get("CRYO", "cryo"), env.root, b), shell=True, capture_output=True,
                       text=True, pass_fds=(w,), timeout=30)
    os.close(w)
    data = os.read(r, 100).decode()
    os.close(r)
    check(data.strip() == "via-fd3", "--preserve-fds 1 passes fd 3 to the container: %r %s" % (data, p.stderr))
    check(p.stdout.strip() == "5", "only fds 0-3 (and ls's own) are open in the container: " + p.stdout)
    b = env.bundle("proc", ["sleep", "100"])
    env.run(["run", "-d", "--bundle", b, "proc"])
    process = {"args": ["sh", "-c", "echo $A $(id -u) $(pwd)"], "env": ["A=from-file", "PATH=/bin"], "cwd": "/tmp",
               "user": {"uid": 65534, "gid": 65534}}
    path = os.path.join(env.tmp, "process.json")
    with open(path, "w") as f:
        json.dump(process, f)
    p = env.run(["exec", "--process", path, "proc"])
    check(p.stdout.strip() == "from-file 65534 /tmp", "exec --process FILE: " + p.stdout + p.stderr)
    env.run(["delete", "--force", "proc"])


def test_time_cgroup_personality_rlimits(env):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 1000000, "nanosecs": 0}}
        c["linux"]["personality"] = {"domain": "LINUX32"}
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    b = env.bundle("misc", ["sh", "-c", "readlink /proc/self/ns/time; grep memory /proc/self/cgroup; uname -m; "
                                        "ulimit -n; ulimit -Hn; ulimit -c; cut -d. -f1 /proc/uptime"], edit=edit)
    out = env.run(["run", "--bundle", b, "misc"]).stdout.split()
    host_uptime = int(open("/proc/uptime").read().split(".")[0])
    check(int(out[6]) >= 1000000 + host_uptime - 5, "linux.timeOffsets moves boottime: uptime %s" % out[6])
    out = out[:6]
    check(out[0] != os.readlink("/proc/self/ns/time"), "a new time namespace: " + out[0])
    check(out[1].endswith(":memory:/"), "a new cgroup namespace rooted at the container's group: " + out[1])
    check(out[2] in ("i686", "i386"), "personality LINUX32: uname -m says " + out[2])
    check(out[3:] == ["1000", "2000", "0"], "rlimits soft/hard: %s" % out[3:])


def test_scheduler_and_ioprio(env):
    def edit(c):
        c["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
        c["process"]["execCPUAffinity"] = {"initial": "0-1", "final": "1"}
    b = env.bundle("sched", ["sh", "-c", "cut -d' ' -f19,41 /proc/self/stat; ionice; "
                                         "grep Cpus_allowed_list /proc/self/status"], edit=edit)
    p = env.run(["run", "--bundle", b, "sched"])
    lines = p.stdout.splitlines()
    check(lines[0].split() == ["7", "3"], "process.scheduler: nice 7, policy SCHED_BATCH: " + p.stdout)
    check("idle" in lines[1], "process.ioPriority: idle class: " + p.stdout)
    check(lines[2].split() == ["Cpus_allowed_list:", "1"], "process.execCPUAffinity final: " + p.stdout)
    b = env.bundle("badsched", ["true"], edit=lambda c: c["process"].update(scheduler={"policy": "SCHED_NOPE"}))
    p = env.run(["create", "--bundle", b, "badsched"], check=False)
    check(p.returncode != 0 and "SCHED_NOPE" in p.stderr, "an unknown policy fails create: " + p.stderr.strip())


def test_info_commands(env):
    features = json.loads(env.run(["features"], root=False).stdout)
    check(features["ociVersionMax"] and "SCMP_ACT_ERRNO" in features["linux"]["seccomp"]["actions"]
          and "user" in features["linux"]["namespaces"], "features JSON")
    check("cryo version" in env.run(["--version"], root=False).stdout, "--version")
    help_text = env.run(["--help"], root=False).stdout
    check("exec" in help_text and "checkpoint" in help_text, "--help lists the verbs, checkpoint too")
    check(env.run(["checkpoint", "--help"], check=False).returncode == 0, "checkpoint --help answers (podman probes it)")
    os.makedirs(os.path.join(env.tmp, "sb"))
    env.run(["spec", "--bundle", os.path.join(env.tmp, "sb")], root=False)
    spec = json.load(open(os.path.join(env.tmp, "sb", "config.json")))
    check(spec["process"]["args"] == ["sh"] and spec["root"]["path"] == "rootfs", "spec writes a default config.json")
    check(env.run(["spec", "--bundle", os.path.join(env.tmp, "sb")], root=False, check=False).returncode != 0,
          "spec refuses to overwrite")
    b = env.bundle("tbl", ["sleep", "100"])
    env.run(["run", "-d", "--bundle", b, "tbl"])
    table = env.run(["list"]).stdout.splitlines()
    check(table[0].split()[:3] == ["ID", "PID", "STATUS"] and table[1].split()[2] == "running", "list table")
    env.run(["delete", "--force", "tbl"])


if __name__ == "__main__":
    main({"join": test_join_by_path, "uts_sysctl": test_uts_sysctl_nopivot, "fds": test_preserve_fds_and_process_file,
          "info": test_info_commands, "misc": test_time_cgroup_personality_rlimits,
          "sched": test_scheduler_and_ioprio})
