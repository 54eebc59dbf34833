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
/sys are read-only, /dev/null works, /etc/hosts (a host file bound read-only into it, as runc's
callers bind it) is there and read-only, and its mount table (mount points, options, filesystems and
their options) is the one it saw when it started (runc's /dev/console, a bind of the console's
pty, comes back as a bind of the terminal handed over, of another devpts: only its mount point
and options are compared).

- cryo_run: the cryo-run container; its image restored twice at once, each copy counting on
  from where the dump left it in a /dev/shm of its own, the second in cgroups of its own (the
  container's cgroup with -2, the root of its cgroup namespace).
- cryo_run_userns: the same with a user namespace of its own (config.json's uid and gid maps),
  which owns its other namespaces: both copies come back in user namespaces with its map.
- runc: the same container run by runc; restored after `runc delete`.
- console, runc_console: the container on a console (process.terminal), whose pty master the
  test receives on its console socket as a runtime's caller does: the dump without
  --external tty[RDEV:DEV] says how to name it; dumped with it, restored on a new pty's slave
  handed over by --inherit-fd (bound at /dev/console for runc's), the counter goes on on the
  new console, and inside, stdio is a terminal and the init still has a controlling one."""
import array
import json
import os
import pty
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, read_text, reap, run, wait_until  # noqa: E402

COUNTER = r'''#!/bin/sh
awk '{ for (i = 7; $i != "-"; i++); if ($5 == "/dev/console") print $5, $6; else print $5, $6, $(i + 1), $(i + 3) }' /proc/self/mountinfo | sort > /dev/shm/mounts
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
  echo count=$i
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
    grep -q cryo-test-host /etc/hosts || p="$p /etc/hosts"
    if echo x 2>/dev/null >> /etc/hosts; then p="$p /etc/hosts-writable"; fi
    if [ -e /expect-console ]; then
      [ -t 0 ] && [ -t 1 ] || p="$p stdio-not-a-terminal"
      [ "$(cut -d' ' -f7 /proc/1/stat)" != 0 ] || p="$p no-controlling-terminal"
    fi
    awk '{ for (i = 7; $i != "-"; i++); if ($5 == "/dev/console") print $5, $6; else print $5, $6, $(i + 1), $(i + 3) }' /proc/self/mountinfo | sort > /dev/shm/mounts.now
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

    def bundle(self, cid, terminal=False, user_ns=False):
        bundle = self.env.path("bundle-" + cid)
        os.makedirs(bundle)
        self.env.cryo("spec", "--bundle", bundle)
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["root"] = {"path": self.rootfs, "readonly": False}
        config["process"]["terminal"] = terminal
        config["process"]["args"] = ["/bin/sh", "/counter.sh"]
        cgroup = f"/cryo-it-containers-{os.getpid()}-{cid}"
        config["linux"]["cgroupsPath"] = cgroup
        self.cgroups.append(cgroup + "-2")  # a second restored copy's (see core/cgroup/copies.h)
        hosts = self.env.path("hosts")  # a file bound read-only from the host, as runc's callers bind /etc/hosts
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost cryo-test-host\n")
        config["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": hosts,
                                 "options": ["rbind", "ro"]})
        if user_ns:  # a rootless-style container: root inside is host uid 300000
            config["linux"]["namespaces"].append({"type": "user"})
            config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
            config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
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

    def run(self, cid, user_ns=False):
        """Runs a container detached, its stdio /dev/null; returns its init's pid."""
        bundle = self.bundle(cid, user_ns=user_ns)
        self.ids.append(cid)
        self.command("run", "-d", "--bundle", bundle, cid, output=False)
        pid = json.loads(self.command("state", cid))["pid"]
        wait_until(lambda: count(pid) >= 2, 10, what=f"the counter in container {cid}")
        return pid

    def run_with_console(self, cid):
        """Runs a container detached on a console (process.terminal): the runtime sends the
        master of its pty to our console socket. Returns (init pid, master fd)."""
        bundle = self.bundle(cid, terminal=True)
        open(os.path.join(self.rootfs, "expect-console"), "w").close()
        self.ids.append(cid)
        path = self.env.path("console.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(1)
            server.settimeout(30)
            with open(self.env.path("runtime.log"), "ab") as log:
                runtime = subprocess.Popen([self.runtime, "--root", self.state_root, "run", "-d", "--console-socket", path,
                                            "--bundle", bundle, cid], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            connection, _ = server.accept()
            with connection:
                _, ancillary, _, _ = connection.recvmsg(4096, socket.CMSG_SPACE(4))
            check(runtime.wait(timeout=60) == 0, f"{self.runtime} run --console-socket failed")
        check(ancillary and ancillary[0][1] == socket.SCM_RIGHTS, "no fd on the console socket")
        master = array.array("i", ancillary[0][2][:4])[0]
        os.set_blocking(master, False)
        pid = json.loads(self.command("state", cid))["pid"]
        wait_until(lambda: count(pid) >= 2, 10, what=f"the counter in container {cid}")
        return pid, master

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


def dump_and_restore(env, containers, cid, copies, user_ns=False):
    pid = containers.run(cid, user_ns=user_ns)
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
            a, b = (read_text(f"/proc/{p}/cgroup") for p in restored)
            check(a != b and "-2" in b, f"the two copies share cgroups: {a!r} {b!r}")
        if user_ns:
            for host in restored:
                check(os.readlink(f"/proc/{host}/ns/user") != os.readlink("/proc/self/ns/user"), "no user namespace")
                check_eq(read_text(f"/proc/{host}/uid_map").split(), ["0", "300000", "65536"], "uid_map of the copy")
                check_eq(os.stat(f"/proc/{host}/root/dev/shm/count").st_uid, 300000, "owner of what the copy writes")
        check_copies(containers.rootfs, restored, before_dump)
    finally:
        for host in restored:
            os.kill(host, 9)
        reap(restored, what="the restored copies")


class Console:
    """What a pty master reads: the lines the container wrote on its console."""

    def __init__(self, master):
        self.master = master
        self.text = ""

    def drain(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                return self.text
            if not data:
                return self.text
            self.text += data.decode(errors="replace")

    def last_count(self):
        counts = [int(line[6:]) for line in self.drain().split() if line.startswith("count=") and line[6:].isdigit()]
        return counts[-1] if counts else 0


def dump_and_restore_console(env, containers, cid):
    """The container's console: a pty of its own devpts whose master the test holds (as
    a runtime's console socket receiver does) is external to the tree: dumped with
    --external tty[RDEV:DEV], restored on a new pty's slave handed over by --inherit-fd."""
    pid, master = containers.run_with_console(cid)
    console = Console(master)
    wait_until(lambda: console.last_count() >= 5, 10, what="the counter on the console")
    st = os.stat(f"/proc/{pid}/fd/0")
    key = f"tty[{st.st_rdev:x}:{st.st_dev:x}]"
    images = env.path("images")
    before_dump = count(pid)
    result = env.dump(pid, images, expect=None)
    check(result.returncode != 0 and "--external tty[" in result.stderr,
          f"a dump without --external names no way out: {result.stderr.strip()!r}")
    env.dump(pid, images, "--external", key)
    reap([pid], what="the dumped container")
    os.close(master)
    containers.command("delete", cid)
    new_master, new_slave = pty.openpty()
    os.set_blocking(new_master, False)
    pidfile = env.path("console-restore.pid")
    with open(env.path("console-restore.err"), "wb") as err:
        rc = subprocess.run([env.cryo_path, "restore", "-D", images, "-d", "--pidfile", pidfile, "--inherit-fd",
                             f"fd[{new_slave}]:{key}"], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                            pass_fds=(new_slave,), timeout=120).returncode
    os.close(new_slave)
    check_eq(rc, 0, "cryo restore --inherit-fd of the console: " + (read_text(env.path("console-restore.err")) or ""))
    host = int(read_text(pidfile).strip())
    try:
        console = Console(new_master)
        wait_until(lambda: console.last_count() > before_dump + 3, 10,
                   what=f"the counter on the new console to go on from {before_dump}")
        first = int(console.text.split()[0][6:]) if console.text.split()[0].startswith("count=") else 0
        check(first >= before_dump, f"the new console starts at {console.text.split()[:1]}, below {before_dump}")
        check_copies(containers.rootfs, [host], before_dump)
    finally:
        os.kill(host, 9)
        reap([host], what="the restored container")
        os.close(new_master)


def case_console(env):
    containers = Containers(env, env.cryo_path)
    try:
        dump_and_restore_console(env, containers, "t1")
    finally:
        containers.cleanup()
        containers.remove_cgroups()


def case_runc_console(env):
    runc = shutil.which("runc")
    check(runc is not None, "runc is not installed")
    containers = Containers(env, runc)
    try:
        dump_and_restore_console(env, containers, "rt1")
    finally:
        containers.cleanup()
        containers.remove_cgroups()


def case_cryo_run(env):
    containers = Containers(env, env.cryo_path)
    try:
        dump_and_restore(env, containers, "c1", copies=2)
    finally:
        containers.cleanup()
        containers.remove_cgroups()


def case_cryo_run_userns(env):
    """cryo_run with a user namespace (0 -> host 300000, 65536 ids) owning the others."""
    os.chmod(env.dir, 0o755)  # the namespace's root reaches the rootfs through it
    containers = Containers(env, env.cryo_path)
    for dirpath, dirnames, filenames in os.walk(containers.rootfs):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), 300000, 300000)
    os.chown(containers.rootfs, 300000, 300000)
    try:
        dump_and_restore(env, containers, "u1", copies=2, user_ns=True)
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
    run({"cryo_run": case_cryo_run, "cryo_run_userns": case_cryo_run_userns, "runc": case_runc, "console": case_console, "runc_console": case_runc_console})
