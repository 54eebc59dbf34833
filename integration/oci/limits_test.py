"""cgroup limits on this host's hierarchies (v1 controllers, the hybrid v2 mount)."""
import json
import os
import time

from cryo_oci import check, main

V1 = "/sys/fs/cgroup"


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_memory(env):
    def edit(c):
        c["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024}
    bundle = env.bundle("mem", ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=1M count=1 && echo small-ok;"
                                "dd if=/dev/zero of=/dev/null bs=96M count=1; echo never"], edit=edit)
    env.run(["create", "--bundle", bundle, "mem"])
    group = os.path.join(V1, "memory", "cryo-test-memory-mem")
    check(read(group + "/memory.limit_in_bytes") == str(32 * 1024 * 1024), "memory.limit_in_bytes is set")
    pid = env.state("mem")["pid"]
    check(str(pid) in read(group + "/cgroup.procs").split(), "init is in the memory cgroup")
    check(str(pid) in read("/sys/fs/cgroup/unified/cryo-test-memory-mem/cgroup.procs").split(),
          "init is in the cgroup v2 (unified) group too")
    import subprocess
    events_out = open(os.path.join(env.tmp, "events.out"), "w+")
    events = subprocess.Popen([env.cryo, "--root", env.root, "events", "--interval", "50ms", "mem"], stdout=events_out,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    env.run(["start", "mem"])
    env.wait_status("mem", "stopped", timeout=20)
    events.wait(10)
    types = [json.loads(line)["type"] for line in open(events_out.name).read().splitlines()]
    check("oom" in types, "events reports the OOM kill: %s" % types)
    oom = read(group + "/memory.oom_control")
    check("oom_kill 1" in oom, "the kernel OOM-killed the process over the limit: " + oom)
    env.run(["delete", "mem"])
    check(not os.path.exists(group), "delete removed the memory cgroup")
    check(not os.path.exists("/sys/fs/cgroup/unified/cryo-test-memory-mem"), "delete removed the v2 group")


def test_pids(env):
    def edit(c):
        c["linux"]["resources"]["pids"] = {"limit": 8}
    script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 3 & done; wait; echo done"
    bundle = env.bundle("pids", ["sh", "-c", script], edit=edit)
    p = env.run(["run", "--bundle", bundle, "pids"], check=False)
    check("can't fork" in p.stderr or "Resource temporarily unavailable" in p.stderr,
          "pids.max stops the ninth process: " + p.stderr.strip()[:200])


def test_cpu_and_blkio(env):
    def edit(c):
        c["linux"]["resources"]["cpu"] = {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}
        c["linux"]["resources"]["blockIO"] = {"weight": 300}
    bundle = env.bundle("cpu", ["sleep", "100"], edit=edit)
    p = env.run(["create", "--bundle", bundle, "cpu"], check=False)
    if p.returncode != 0 and "blkio.weight" in p.stderr:
        # No CFQ/BFQ weight file on this kernel: the error must name it.
        check("blkio" in p.stderr, "blkio.weight without a weight-capable scheduler fails naming the file")
        bundle = env.bundle("cpu2", ["sleep", "100"], edit=lambda c: (edit(c), c["linux"]["resources"].pop("blockIO")))
        env.run(["create", "--bundle", bundle, "cpu2"])
        name = "cpu2"
    else:
        check(p.returncode == 0, "create with cpu and blkio limits: " + p.stderr)
        name = "cpu"
    g = "cryo-test-cpu_blkio-" + name
    check(read("%s/cpu/%s/cpu.shares" % (V1, g)) == "512", "cpu.shares")
    check(read("%s/cpu/%s/cpu.cfs_quota_us" % (V1, g)) == "50000", "cpu.cfs_quota_us")
    check(read("%s/cpuset/%s/cpuset.cpus" % (V1, g)) == "0", "cpuset.cpus")
    env.run(["delete", name])


def test_update(env):
    bundle = env.bundle("upd", ["sleep", "100"])
    env.run(["run", "-d", "--bundle", bundle, "upd"])
    g = "cryo-test-update-upd"
    env.run(["update", "--memory", "64m", "--pids-limit", "20", "--cpu-shares", "300", "upd"])
    check(read("%s/memory/%s/memory.limit_in_bytes" % (V1, g)) == str(64 << 20), "update --memory 64m")
    check(read("%s/pids/%s/pids.max" % (V1, g)) == "20", "update --pids-limit")
    check(read("%s/cpu/%s/cpu.shares" % (V1, g)) == "300", "update --cpu-shares")
    res = os.path.join(env.tmp, "res.json")
    with open(res, "w") as f:
        f.write('{"memory": {"limit": 50331648}, "pids": {"limit": 30}}')
    env.run(["update", "--resources", res, "upd"])
    check(read("%s/memory/%s/memory.limit_in_bytes" % (V1, g)) == "50331648" and
          read("%s/pids/%s/pids.max" % (V1, g)) == "30", "update --resources FILE")
    check(env.run(["update", "--memory", "lots", "upd"], check=False).returncode != 0, "update rejects a bad size")
    env.run(["delete", "--force", "upd"])


def test_hugetlb_on_v2(env):
    """On this hybrid host hugetlb is a cgroup v2 controller only: the limit goes to the unified group."""
    if "hugetlb" not in read("/sys/fs/cgroup/unified/cgroup.controllers"):
        raise AssertionError("this test expects hugetlb on the cgroup2 mount")

    def edit(c):
        c["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4194304}]
    bundle = env.bundle("huge", ["sleep", "100"], edit=edit)
    env.run(["create", "--bundle", bundle, "huge"])
    check(read("/sys/fs/cgroup/unified/cryo-test-hugetlb-huge/hugetlb.2MB.max") == "4194304",
          "hugetlb.2MB.max is set in the v2 group")
    env.run(["delete", "huge"])


def test_pause_freezer(env):
    bundle = env.bundle("frz", ["sh", "-c", "while true; do echo x >> /tmp/ticks; sleep 0.05; done"])
    env.run(["run", "-d", "--bundle", bundle, "frz"])
    ticks = os.path.join(env.rootfs, "tmp/ticks")
    deadline = time.monotonic() + 10
    while not os.path.exists(ticks) and time.monotonic() < deadline:  # its first tick (slow under load)
        time.sleep(0.02)
    env.run(["pause", "frz"])
    check(read(V1 + "/freezer/cryo-test-pause-frz/freezer.state") == "FROZEN", "pause freezes the v1 freezer")
    size = os.path.getsize(ticks)
    time.sleep(0.4)
    check(os.path.getsize(ticks) == size, "a paused container does not run")
    env.run(["resume", "frz"])
    time.sleep(0.4)
    check(os.path.getsize(ticks) > size, "a resumed container runs again")
    env.run(["pause", "frz"])
    env.run(["delete", "--force", "frz"])
    check(not os.path.exists(V1 + "/freezer/cryo-test-pause-frz"), "delete --force of a paused container cleans up")


if __name__ == "__main__":
    main({"memory": test_memory, "pids": test_pids, "cpu_blkio": test_cpu_and_blkio, "pause": test_pause_freezer, "hugetlb": test_hugetlb_on_v2, "update": test_update})
