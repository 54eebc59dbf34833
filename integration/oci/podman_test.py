"""Podman 4.3 driving cryo (--runtime, cgroupfs): run, exec, logs, stop, rm.
Everything podman keeps lives in a temp dir; cryo's state in another."""
import os
import shutil
import subprocess
import sys
import tarfile
import time

from cryo_oci import CRYO, check, main, reap

PARENT = "/cryo-test-podman"


class Podman:
    def __init__(self, env, driver="vfs"):
        self.env = env
        self.tmp = env.tmp
        state = os.path.join(self.tmp, "cryo-state")
        wrapper = os.path.join(self.tmp, "cryo-runtime")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s --root %s \"$@\"\n" % (CRYO, state))
        os.chmod(wrapper, 0o755)
        self.state = state
        conf = os.path.join(self.tmp, "containers.conf")
        with open(conf, "w") as f:
            # Root here lacks CAP_SYS_RESOURCE: podman's default nofile/nproc limits cannot be set.
            f.write('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
                    '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        self.environ = dict(os.environ, CONTAINERS_CONF=conf)
        # podman keeps a blob-info cache in /var/lib/containers whatever --root says.
        self.made_var_lib = not os.path.exists("/var/lib/containers")
        self.base = ["podman", "--root", os.path.join(self.tmp, "storage"), "--runroot", os.path.join(self.tmp, "run"),
                     "--storage-driver", driver, "--tmpdir", os.path.join(self.tmp, "ptmp"), "--runtime", wrapper,
                     "--cgroup-manager", "cgroupfs"]

    def __call__(self, *args, check=True, timeout=90):
        p = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=timeout, env=self.environ)
        reap()
        if check and p.returncode != 0:
            raise AssertionError("podman %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr))
        return p

    def cleanup(self):
        self("rm", "--all", "--force", check=False)
        reap()
        if self.made_var_lib:
            shutil.rmtree("/var/lib/containers", ignore_errors=True)
        # conmon outlives the containers it watched by a moment (its cgroup empties late),
        # and its exit command, a podman of its own, mounts the storage again: unmount after.
        deadline = time.time() + 10
        while True:
            left = []
            for base in os.listdir("/sys/fs/cgroup"):
                parent = os.path.join("/sys/fs/cgroup", base, PARENT.lstrip("/"))
                for dirpath, _, _ in sorted(os.walk(parent), key=lambda x: -len(x[0])) if os.path.isdir(parent) else []:
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        left.append(dirpath)
            if not left or time.time() > deadline:
                break
            time.sleep(0.2)
        for line in open("/proc/mounts").read().splitlines()[::-1]:
            target = line.split()[1]
            if target.startswith(self.tmp):
                subprocess.run(["umount", "-l", target], capture_output=True)


def test_podman(env):
    if not shutil.which("podman"):
        raise AssertionError("podman is not installed (make deps installs it)")
    pm = Podman(env)
    try:
        tar = os.path.join(env.tmp, "rootfs.tar")
        with tarfile.open(tar, "w") as t:
            t.add(env.rootfs, arcname=".")
        pm("import", tar, "localhost/cryo-busybox")
        p = pm("run", "--rm", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
               "sh", "-c", "echo hello-podman; cat /proc/self/uid_map")
        check("hello-podman" in p.stdout, "podman run (foreground, --rm) prints the output")
        p = pm("run", "--rm", "--network", "none", "--cgroup-parent", PARENT, "--tmpfs", "/etc",
               "localhost/cryo-busybox", "grep", "-c", "nobody", "/etc/passwd")
        check(p.stdout.strip() == "1", "podman --tmpfs (tmpcopyup) keeps the image's files: " + p.stdout + p.stderr)
        vol = os.path.join(env.tmp, "vol")
        os.makedirs(vol)
        for opts, uid in ((["--read-only"], 0), (["--user", "65534:65534"], 65534), (["--cap-drop", "all"], 0),
                          (["--security-opt", "no-new-privileges"], 0), (["-v", vol + ":/data:ro"], 0),
                          (["--privileged"], 0), (["--pid", "host", "--ipc", "host"], 0),
                          (["--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"], 0),
                          (["--sysctl", "kernel.msgmax=5000", "--hostname", "hh"], 0), (["--device", "/dev/fuse"], 0)):
            p = pm("run", "--rm", "--network", "none", "--cgroup-parent", PARENT, *opts, "localhost/cryo-busybox",
                   "sh", "-c", "echo ok-$(id -u)", check=False)
            check(p.stdout.strip() == "ok-%d" % uid, "podman run %s: %s" % (" ".join(opts), (p.stdout + p.stderr)[-300:]))
        p = pm("run", "--rm", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox", "no-such-cmd",
               check=False)
        check(p.returncode != 0 and "no-such-cmd" in p.stderr, "podman run of a missing command fails with cryo's "
              "message: " + p.stderr.strip()[-200:])
        pm("run", "-d", "--name", "c1", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
           "sh", "-c", "echo log-line; trap 'exit 0' TERM; while true; do sleep 0.1; done")
        p = pm("exec", "c1", "sh", "-c", "echo in-exec $(cat /proc/1/cmdline | tr '\\0' ' ')")
        check("in-exec sh -c echo log-line" in p.stdout, "podman exec runs in the container: " + p.stdout)
        p = pm("exec", "-t", "c1", "tty")
        check("/dev/pts/" in p.stdout, "podman exec -t gets a terminal: " + p.stdout)
        p = pm("exec", "c1", "sh", "-c", "exit 5", check=False)
        check(p.returncode == 5, "podman exec returns the exit status")
        check("log-line" in pm("logs", "c1").stdout, "podman logs")
        p = pm("inspect", "--format", "{{.State.Status}} {{.State.Pid}}", "c1")
        status, pid = p.stdout.split()
        check(status == "running" and os.path.exists("/proc/" + pid), "podman sees it running: " + p.stdout)
        state_ids = os.listdir(pm.state)
        check(len(state_ids) == 1, "the container's state is under cryo's --root")
        pm("pause", "c1")
        p = pm("inspect", "--format", "{{.State.Status}}", "c1")
        check(p.stdout.strip() == "paused", "podman pause: " + p.stdout)
        pm("unpause", "c1")
        p = pm("top", "c1", "pid", "args")
        check("while true" in p.stdout, "podman top: " + p.stdout)
        cid = pm("inspect", "--format", "{{.Id}}", "c1").stdout.strip()
        pm("update", "--memory", "48m", "c1")
        limit = open("/sys/fs/cgroup/memory%s/libpod-%s/memory.limit_in_bytes" % (PARENT, cid)).read().strip()
        check(limit == str(48 << 20), "podman update --memory reaches the cgroup: " + limit)
        pm("stop", "-t", "10", "c1")
        p = pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "c1")
        check(p.stdout.split() == ["exited", "0"], "podman stop: TERM ends it with status 0: " + p.stdout)
        pm("rm", "c1")
        check(os.listdir(pm.state) == [], "podman rm deletes cryo's state")
        check(not os.path.exists("/sys/fs/cgroup/memory%s/libpod-%s" % (PARENT, state_ids[0])),
              "podman rm removes the container's cgroup")
        p = pm("run", "--rm", "--network", "none", "--cgroup-parent", PARENT, "--memory", "40m", "--pids-limit", "50",
               "localhost/cryo-busybox", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
               "/sys/fs/cgroup/pids/pids.max")
        check(p.stdout.split() == [str(40 * 1024 * 1024), "50"], "podman --memory/--pids-limit reach the cgroup: " + p.stdout)
    finally:
        pm.cleanup()


def podman_count(pm, name):
    p = pm("exec", name, "cat", "/tmp/count", check=False)
    return int(p.stdout.strip()) if p.stdout.strip().isdigit() else 0


def wait_count(pm, name, above, what):
    for _ in range(150):
        n = podman_count(pm, name)
        if n > above:
            return n
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_checkpoint(env):
    """podman container checkpoint / restore (and --export / --import) with cryo as the runtime
    and as Podman's criu (build/runtime/criu-path): the counter goes on from the checkpoint and
    its output still reaches podman logs through conmon's new pipe."""
    if not shutil.which("podman"):
        raise AssertionError("podman is not installed (make deps installs it)")
    criu_dir = os.path.join(os.path.dirname(CRYO), "criu-path")
    if not os.path.exists(os.path.join(criu_dir, "criu")):
        raise AssertionError("no %s/criu: Podman needs a criu that answers criu swrk" % criu_dir)
    pm = Podman(env)
    pm.environ["PATH"] = criu_dir + ":" + pm.environ["PATH"]
    try:
        tar = os.path.join(env.tmp, "rootfs.tar")
        with tarfile.open(tar, "w") as t:
            t.add(env.rootfs, arcname=".")
        pm("import", tar, "localhost/cryo-busybox")
        counter = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.tmp && mv /tmp/count.tmp /tmp/count; " \
                  "echo count=$i; sleep 0.1; done"
        pm("run", "-d", "--name", "k1", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
           "sh", "-c", counter)
        wait_count(pm, "k1", 10, "the counter")
        p = pm("container", "checkpoint", "--print-stats", "k1", check=False, timeout=120)
        check(p.returncode == 0, "podman container checkpoint: " + p.stderr.strip()[-400:])
        check("frozen_time" in p.stdout and "pages_written" in p.stdout,
              "--print-stats reads cryo's stats-dump (CRIU's format): " + p.stdout.strip()[-300:])
        status = pm("inspect", "--format", "{{.State.Status}}", "k1").stdout.strip()
        check(status == "exited", "checkpointed: the container is exited: " + status)
        p = pm("container", "restore", "--print-stats", "k1", check=False, timeout=120)
        check(p.returncode == 0, "podman container restore: " + p.stderr.strip()[-400:])
        check("restore_time" in p.stdout, "--print-stats reads cryo's stats-restore: " + p.stdout.strip()[-300:])
        status = pm("inspect", "--format", "{{.State.Status}}", "k1").stdout.strip()
        check(status == "running", "restored: running: " + status)
        first = wait_count(pm, "k1", 10, "the restored counter")
        later = wait_count(pm, "k1", first + 3, "the restored counter to count on")
        check(first > 10 and later > first, "the restored counter goes on (%d, then %d)" % (first, later))
        logs = [int(w[6:]) for w in pm("logs", "k1").stdout.split() if w.startswith("count=") and w[6:].isdigit()]
        check(logs and max(logs) >= later - 2, "podman logs gets the restored container's output through conmon's "
              "new pipe (last logged %s, counter at %d)" % (logs[-1:] or None, later))
        export = os.path.join(env.tmp, "k1-checkpoint.tar.gz")
        at_export = podman_count(pm, "k1")
        p = pm("container", "checkpoint", "--export", export, "k1", check=False, timeout=120)
        check(p.returncode == 0 and os.path.exists(export) and "stats-dump" not in p.stderr,
              "podman container checkpoint --export (stats-dump included): " + p.stderr[-400:])
        pm("rm", "--force", "k1")
        p = pm("container", "restore", "--import", export, check=False, timeout=120)
        check(p.returncode == 0, "podman container restore --import: " + p.stderr.strip()[-400:])
        after = wait_count(pm, "k1", 0, "the imported counter")
        check(after > at_export, "the imported container counts on from the export (%d, before the export %d)"
              % (after, at_export))
        pm("rm", "--force", "k1")
        check(os.listdir(pm.state) == [], "podman rm deletes cryo's state")
    finally:
        pm.cleanup()


if __name__ == "__main__":
    main({"podman": test_podman, "checkpoint": test_checkpoint})
