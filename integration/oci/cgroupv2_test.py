"""Pure cgroup v2 end to end. This host is hybrid (v1 controllers, a cgroup2 mount with hugetlb at
/sys/fs/cgroup/unified), so each cryo command runs in a private mount namespace whose
/sys/fs/cgroup is that cgroup2 mount alone: cryo then sees a pure v2 host."""
import json
import os
import time

from cryo_oci import CRYO, check, main

UNIFIED = "/sys/fs/cgroup/unified"


def v2_view(env):
    wrapper = os.path.join(env.tmp, "cryo-v2")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec unshare -m --propagation private sh -c "
                "'umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"' %s \"$@\"\n"
                % CRYO)
    os.chmod(wrapper, 0o755)
    env.cryo = wrapper


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_v2_lifecycle(env):
    v2_view(env)

    def edit(c):
        c["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 2097152}]
        c["mounts"].append({"destination": "/dev/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]})
    script = "exec sleep 100"
    bundle = env.bundle("v2", ["sh", "-c", script], edit=edit)
    env.run(["run", "-d", "--bundle", bundle, "v2"])
    group = UNIFIED + "/cryo-test-v2_lifecycle-v2"
    pid = env.state("v2")["pid"]
    check(str(pid) in read(group + "/cgroup.procs").split(), "init is in the v2 group")
    check(read(group + "/hugetlb.2MB.max") == "2097152", "hugetlb.2MB.max is set")
    pids = json.loads(env.run(["ps", "-f", "json", "v2"]).stdout)
    check(pids == [pid], "ps reads cgroup.procs: %s" % pids)
    env.run(["pause", "v2"])
    check("frozen 1" in read(group + "/cgroup.events"), "pause writes cgroup.freeze")
    check(env.state("v2")["status"] == "paused", "state says paused")
    env.run(["resume", "v2"])
    check("frozen 0" in read(group + "/cgroup.events"), "resume thaws")
    env.run(["exec", "-d", "v2", "sleep", "100"])
    env.run(["kill", "--all", "v2", "KILL"])  # cgroup.kill
    env.wait_status("v2", "stopped")
    env.run(["delete", "v2"])
    check(not os.path.exists(group), "delete removes the v2 group")


def test_v2_container_view(env):
    v2_view(env)

    def edit(c):
        c["mounts"].append({"destination": "/dev/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]})
    script = ("grep '^0::' /proc/self/cgroup; ls /sys/fs/cgroup | grep -c '^hugetlb.2MB.max$'; "
              "head -c 0 /dev/zero && echo zero-ok; head -c 1 /dev/kmsg > /dev/null 2>&1 || echo kmsg-denied")
    bundle = env.bundle("view", ["sh", "-c", script], edit=edit)
    p = env.run(["run", "--bundle", bundle, "view"])
    lines = p.stdout.split()
    check(lines[0] == "0::/", "a cgroup namespace rooted at the container's v2 group: " + p.stdout)
    check(lines[1] == "1", "the cgroup mount shows the group's own files")
    check("zero-ok" in lines, "the eBPF device filter allows the default devices: " + p.stdout + p.stderr)
    check("kmsg-denied" in lines, "and denies a device node the rules do not allow")
    bundle = env.bundle("mem", ["true"], edit=lambda c: c["linux"]["resources"].update(memory={"limit": 1 << 26}))
    p = env.run(["run", "--bundle", bundle, "mem"], check=False)
    check(p.returncode != 0 and "memory.max" in p.stderr and "memory" in p.stderr,
          "a v2 controller the host does not offer fails naming it: " + p.stderr.strip())


if __name__ == "__main__":
    main({"v2_lifecycle": test_v2_lifecycle, "v2_view": test_v2_container_view})
