"""containerd 1.6 with its runc shim driving cryo: a private containerd (own
socket, root and state under a temp dir), `ctr run`, `ctr task exec`, kill, delete."""
import os
import shutil
import signal
import subprocess
import time

from cryo_oci import CRYO, check, main, reap, run_on_pty

NAMESPACE = "cryotest"


class Containerd:
    def __init__(self, env):
        self.tmp = env.tmp
        self.rootfs = env.rootfs
        self.runc_root = os.path.join(self.tmp, "cryo-state")
        self.sock = os.path.join(self.tmp, "containerd.sock")
        config = os.path.join(self.tmp, "config.toml")
        with open(config, "w") as f:
            f.write("""version = 2
root = "{t}/root"
state = "{t}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{t}/containerd.sock"
[ttrpc]
  address = "{t}/containerd.sock.ttrpc"
[debug]
  address = "{t}/debug.sock"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "{cryo}"
  Root = "{t}/cryo-state"
""".format(t=self.tmp, cryo=CRYO))
        # ctr's fifos and the shims' sockets go to /run/containerd whatever the config says.
        self.made_run_dir = not os.path.exists("/run/containerd")
        self.log = open(os.path.join(self.tmp, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", config], stdout=self.log, stderr=self.log)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            time.sleep(0.05)
        if not os.path.exists(self.sock):
            raise AssertionError("containerd did not start")

    def ctr(self, *args, check=True, timeout=60, runtime=False):
        # ctr passes the runc options (BinaryName, Root) of the config above for the tasks it creates.
        extra = ["--runc-binary", CRYO, "--runc-root", self.runc_root] if runtime else []
        cmd = ["ctr", "-a", self.sock, "-n", NAMESPACE] + list(args)
        if runtime:
            cmd = cmd[:cmd.index("run") + 1] + extra + cmd[cmd.index("run") + 1:]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        reap()
        if check and p.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr))
        return p

    def on_pty(self, args):
        """Runs ctr with a pty as its stdio (ctr -t needs a terminal) and returns (status, output)."""
        code, out = run_on_pty(["ctr", "-a", self.sock, "-n", NAMESPACE] + args)
        reap()
        return code, out

    def stop(self):
        for cid in ("c0", "ct", "c1"):
            self.ctr("task", "kill", "-s", "SIGKILL", cid, check=False)
            self.ctr("task", "delete", "--force", cid, check=False)
            self.ctr("container", "delete", cid, check=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        # Shims daemonize; as subreaper we are their parent now: end those of our socket.
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmdline = open("/proc/%s/cmdline" % pid, "rb").read().decode(errors="replace")
                except OSError:
                    continue
                if "containerd-shim" in cmdline and self.sock in cmdline:
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        reap()
        if self.made_run_dir:
            shutil.rmtree("/run/containerd", ignore_errors=True)
        for line in open("/proc/mounts").read().splitlines()[::-1]:
            if line.split()[1].startswith(self.tmp):
                subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)
        for base in os.listdir("/sys/fs/cgroup"):
            parent = os.path.join("/sys/fs/cgroup", base, "cryo-test-ctr")
            if os.path.isdir(parent):
                for entry in os.listdir(parent):
                    if os.path.isdir(os.path.join(parent, entry)):
                        try:
                            os.rmdir(os.path.join(parent, entry))
                        except OSError:
                            pass
                try:
                    os.rmdir(parent)
                except OSError:
                    pass


def test_containerd(env):
    if not shutil.which("containerd"):
        raise AssertionError("containerd is not installed (make deps installs it)")
    cd = Containerd(env)
    try:
        p = cd.ctr("run", "--rm", "--cgroup", "/cryo-test-ctr/c0", "--rootfs", env.rootfs, "c0",
                   "sh", "-c", "echo hello-ctr $$", runtime=True)
        check(p.stdout.strip() == "hello-ctr 1", "ctr run --rm prints the output (pid 1 in its namespace): " + p.stdout)
        code, out = cd.on_pty(["run", "--rm", "-t", "--runc-binary", CRYO, "--runc-root", cd.runc_root, "--cgroup",
                               "/cryo-test-ctr/ct", "--rootfs", env.rootfs, "ct", "sh", "-c", "tty; exit 3"])
        check(code == 3 and "/dev/pts/0" in out, "ctr run -t: the shim's console socket gets the pty: %d %r" % (code, out))
        cd.ctr("run", "-d", "--cgroup", "/cryo-test-ctr/c1", "--rootfs", env.rootfs, "c1",
               "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done", runtime=True)
        check(len(os.listdir(os.path.join(cd.runc_root, NAMESPACE))) == 1, "the shim keeps cryo's state under its Root")
        p = cd.ctr("task", "exec", "--exec-id", "e1", "c1", "sh", "-c", "echo in-exec; cat /proc/1/cmdline")
        check(p.stdout.startswith("in-exec") and "trap" in p.stdout, "ctr task exec runs in the container: " + p.stdout)
        p = cd.ctr("task", "exec", "--exec-id", "e2", "c1", "sh", "-c", "exit 4", check=False)
        check(p.returncode == 4, "ctr task exec returns the exit status")
        p = cd.ctr("task", "ls")
        check("c1" in p.stdout and "RUNNING" in p.stdout, "ctr task ls shows it running")
        cd.ctr("task", "pause", "c1")
        check("PAUSED" in cd.ctr("task", "ls").stdout, "ctr task pause")
        cd.ctr("task", "resume", "c1")
        pids = cd.ctr("task", "ps", "c1").stdout
        check(len(pids.strip().splitlines()) >= 2, "ctr task ps lists the processes: " + pids)
        cd.ctr("task", "kill", "-s", "SIGTERM", "c1")
        for _ in range(100):
            if "STOPPED" in cd.ctr("task", "ls").stdout:
                break
            time.sleep(0.1)
        check("STOPPED" in cd.ctr("task", "ls").stdout, "ctr task kill stops it")
        cd.ctr("task", "delete", "c1")
        cd.ctr("container", "delete", "c1")
        check(os.listdir(os.path.join(cd.runc_root, NAMESPACE)) == [], "task delete removes cryo's state")
        check(not os.path.exists("/sys/fs/cgroup/memory/cryo-test-ctr/c1"), "task delete removes the cgroup")
    finally:
        cd.stop()


if __name__ == "__main__":
    main({"containerd": test_containerd})
