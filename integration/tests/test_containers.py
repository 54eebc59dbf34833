#!/usr/bin/env python3
"""Process mode on real containers: a busybox container made from the default `cryo spec`
bundle by `cryo run -d` (cryo's own OCI runtime) and by `runc run -d` (the oracle: its mount
table is what users of containers have), dumped by the pid of its init, killed, and restored
with `cryo restore -d`. Their mount namespaces hold what runc makes: proc with masked paths (a
bind of the container's /dev/null over /proc/keys and /proc/timer_list, an empty read-only tmpfs
over /proc/acpi and /sys/firmware) and read-only binds of /proc/sys, /proc/bus, /proc/fs and
/proc/irq onto themselves, a read-only sysfs, a tmpfs /dev with its device nodes, a devpts of
its own, /dev/shm, /dev/mqueue, and the cgroup hierarchies at the root of the container's
cgroup namespace.

The container's init counts in /dev/shm (a tmpfs of its own) and, when /check appears in its
rootfs, checks from inside and writes /dev/shm/report: it is pid 1, a named pipe in /dev/shm
(held open by the init) still holds the line queued before the dump and carries new ones, the
container's syslogd (busybox, its datagram socket bound at /dev/log in the container's tmpfs
/dev) still receives what `logger` sends, the masked paths are still
masked (/proc/keys and /proc/timer_list are /dev/null, /sys/firmware is empty), /proc/sys and
/sys are read-only, /dev/null works, and its mount table (mount points, options, filesystems and
their options) is the one it saw when it started.

- cryo_run: the cryo-run container; its image restored twice at once, each copy counting on
  from where the dump left it in a /dev/shm of its own.
- runc: the same container run by runc; restored after `runc delete`."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, read_text, reap, run, wait_until  # noqa: E402

COUNTER = r'''#!/bin/sh
awk '{ for (i = 7; $i != "-"; i++); print $5, $6, $(i + 1), $(i + 3) }' /proc/self/mountinfo | sort > /dev/shm/mounts
mkfifo /dev/shm/fifo
exec 7<>/dev/shm/fifo
echo queued >&7
syslogd -n -O /dev/shm/messages &
while [ ! -S /dev/log ]; do sleep 0.01; done
logger -t cryo before
i=0
while :; do
  i=$((i+1))
  echo $i > /dev/shm/count.tmp && mv /dev/shm/count.tmp /dev/shm/count
  if [ -e /check ] && [ ! -e /dev/shm/report ]; then
    p=""
    [ "$$" = 1 ] || p="$p pid=$$"
    [ -c /proc/keys ] || p="$p /proc/keys-unmasked"
    [ -c /proc/timer_list ] || p="$p /proc/timer_list-unmasked"
    [ -z "$(ls /sys/firmware)" ] || p="$p /sys/firmware-visible"
    if echo cryo 2>/dev/null > /proc/sys/kernel/hostname; then p="$p /proc/sys-writable"; fi
    if touch /sys/cryo 2>/dev/null; then p="$p /sys-writable"; fi
    echo data > /dev/null || p="$p /dev/null"
    read -r line <&7; [ "$line" = queued ] || p="$p fifo-queue=$line"
    echo again >&7; read -r line <&7; [ "$line" = again ] || p="$p fifo=$line"
    logger -t cryo after
    n=0; while ! grep -q 'cryo: after' /dev/shm/messages && [ $n -lt 100 ]; do n=$((n+1)); sleep 0.05; done
    grep -q 'cryo: before' /dev/shm/messages && grep -q 'cryo: after' /dev/shm/messages || p="$p syslog:$(cat /dev/shm/messages | tr '\n' ' ')"
    [ -n "$(cat /proc/1/cmdline)" ] || p="$p proc"
    awk '{ for (i = 7; $i != "-"; i++); print $5, $6, $(i + 1), $(i + 3) }' /proc/self/mountinfo | sort > /dev/shm/mounts.now
    cmp -s /dev/shm/mounts /dev/shm/mounts.now || p="$p mounts:$(diff /dev/shm/mounts /dev/shm/mounts.now | grep '^[-+]/' | tr '\n' ' ')"
    echo "${p:-OK}" > /dev/shm/report.tmp && mv /dev/shm/report.tmp /dev/shm/report
  fi
  sleep 0.05
done
'''


def make_rootfs(env):
    root = env.path("rootfs")
    os.makedirs(os.path.join(root, "bin"))
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "counter.sh"), "w") as f:
        f.write(COUNTER)
    return root


class Containers:
    """The containers of one case, under a runtime's state root of the case's own; the
    cgroups they (and their restored copies) live in are removed at the end."""

    def __init__(self, env, runtime):
        self.env = env
        self.runtime = runtime  # the binary: cryo or runc
        self.state_root = env.path(f"state-{os.path.basename(runtime)}")
        self.rootfs = make_rootfs(env)
        self.ids = []
        self.cgroups = []

    def bundle(self, cid):
        bundle = self.env.path("bundle-" + cid)
        os.makedirs(bundle)
        self.env.cryo("spec", "--bundle", bundle)
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["root"] = {"path": self.rootfs, "readonly": False}
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/sh", "/counter.sh"]
        cgroup = f"/cryo-it-containers-{os.getpid()}-{cid}"
        config["linux"]["cgroupsPath"] = cgroup
        self.cgroups.append(cgroup)
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        return bundle

    def command(self, *args, check_rc=True, output=True):
        """The runtime's command; output=False: its stdio (a container's) is /dev/null."""
        argv = [self.runtime, "--root", self.state_root, *args]
        with open(self.env.path("runtime.log"), "ab") as log:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if output else subprocess.DEVNULL,
                               stderr=log if output else subprocess.DEVNULL, timeout=60)
        if check_rc and p.returncode != 0:
            check(False, f"{' '.join(argv)} failed ({p.returncode}): {read_text(self.env.path('runtime.log'))[-800:]}")
        return p.stdout.decode() if output else ""

    def run(self, cid):
        """Runs a container detached, its stdio /dev/null; returns its init's pid."""
        bundle = self.bundle(cid)
        self.ids.append(cid)
        self.command("run", "-d", "--bundle", bundle, cid, output=False)
        pid = json.loads(self.command("state", cid))["pid"]
        wait_until(lambda: count(pid) >= 2, 10, what=f"the counter in container {cid}")
        return pid

    def cleanup(self):
        for cid in self.ids:
            self.command("delete", "--force", cid, check_rc=False)
        shutil.rmtree(self.state_root, ignore_errors=True)

    def remove_cgroups(self):
        """After every process of the case is gone."""
        for base in os.listdir("/sys/fs/cgroup"):
            for cgroup in self.cgroups:
                path = os.path.join("/sys/fs/cgroup", base) + cgroup
                if os.path.isdir(path):
                    for sub, dirs, _ in sorted(os.walk(path, topdown=False)):
                        try:
                            os.rmdir(sub)
                        except OSError as e:
                            check(False, f"cgroup {sub} left behind: {e}")


def count(pid):
    text = (read_text(f"/proc/{pid}/root/dev/shm/count") or "").strip()
    return int(text) if text.isdigit() else 0


def check_copies(rootfs, copies, before_dump):
    """Each copy counts on from where the dump left it (not from 0)."""
    for host in copies:
        first = wait_until(lambda: count(host), 10, what=f"the count of copy {host}")
        check(first >= before_dump, f"copy {host} counts from {first}, below {before_dump} read before the dump")
        wait_until(lambda: count(host) > first + 3, 10, what=f"copy {host} to count on from {first}")
    open(os.path.join(rootfs, "check"), "w").close()
    for host in copies:
        report = wait_until(lambda: read_text(f"/proc/{host}/root/dev/shm/report"), 10,
                            what=f"the report of copy {host}")
        check_eq(report.strip(), "OK", f"what copy {host} sees inside")
    os.unlink(os.path.join(rootfs, "check"))


def dump_and_restore(env, containers, cid, copies):
    pid = containers.run(cid)
    wait_until(lambda: count(pid) >= 20, 10, what="the counter to pass 20")
    images = env.path("images")
    before_dump = count(pid)
    env.dump(pid, images)
    reap([pid], what="the dumped container")
    containers.command("delete", cid)  # the runtime's state and cgroups go: the restore makes its own
    shown = env.cryo("inspect", images).stdout
    check('"/proc/sys"' in shown and '"OWN_BIND"' in shown, "inspect does not show the mount table")
    restored = []
    try:
        for _ in range(copies):
            _, host = env.restore(images)
            check(host is not None, "no pid in the pid file")
            restored.append(host)
        if copies == 2:
            a, b = (os.readlink(f"/proc/{p}/ns/mnt") for p in restored)
            check(a != b, "the two copies share a mount namespace")
        check_copies(containers.rootfs, restored, before_dump)
    finally:
        for host in restored:
            os.kill(host, 9)
        reap(restored, what="the restored copies")


def case_cryo_run(env):
    containers = Containers(env, env.cryo_path)
    try:
        dump_and_restore(env, containers, "c1", copies=2)
    finally:
        containers.cleanup()
        containers.remove_cgroups()


def case_runc(env):
    runc = shutil.which("runc")
    check(runc is not None, "runc is not installed")
    containers = Containers(env, runc)
    try:
        dump_and_restore(env, containers, "r1", copies=1)
    finally:
        containers.cleanup()
        containers.remove_cgroups()


if __name__ == "__main__":
    run({"cryo_run": case_cryo_run, "runc": case_runc})
