"""containerd 1.6 with its runc shim driving cryo: a private containerd (own
socket, root and state under a temp dir), `ctr run`, `ctr task exec`, kill, delete;
`ctr container checkpoint --task` and `ctr container restore --live` of a container made
from an image (the shim runs cryo's checkpoint and restore, handing its stdio pipes over)."""
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
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
        # ctr and containerd make their temp dirs (ctrd-checkpoint*) in TMPDIR: ours, removed with it.
        self.environ = dict(os.environ, TMPDIR=self.tmp)
        self.proc = subprocess.Popen(["containerd", "--config", config], stdout=self.log, stderr=self.log,
                                     env=self.environ)
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
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           env=self.environ)
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
        for cid in ("c0", "ct", "c1", "k1", "k2"):
            for args in (("task", "kill", "-s", "SIGKILL", cid), ("task", "delete", "--force", cid),
                         ("container", "delete", cid)):
                try:  # a test that failed half way may leave a task containerd cannot delete: go on
                    self.ctr(*args, check=False, timeout=20)
                except subprocess.TimeoutExpired:
                    pass
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


def oci_archive(rootfs, out, name):
    """An OCI image layout archive (one layer: rootfs) that `ctr image import` takes as `name`."""
    blobs = {}

    def blob(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
    layer_file = io.BytesIO()
    with tarfile.open(fileobj=layer_file, mode="w") as t:
        t.add(rootfs, arcname=".")
    layer = blob(layer_file.getvalue(), "application/vnd.oci.image.layer.v1.tar")
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode(),
                  "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer]}).encode(),
                    "application/vnd.oci.image.manifest.v1+json")
    index = {"schemaVersion": 2, "manifests": [dict(manifest, annotations={
        "org.opencontainers.image.ref.name": name, "io.containerd.image.name": name})]}
    with tarfile.open(out, "w") as t:
        def add(path, data):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest, data)


def exec_count(cd, cid, exec_id):
    p = cd.ctr("task", "exec", "--exec-id", exec_id, cid, "cat", "/count", check=False)
    return int(p.stdout.strip()) if p.stdout.strip().isdigit() else 0


def test_checkpoint(env):
    """`ctr container checkpoint --task --rw` (the shim: cryo checkpoint --leave-running, its
    --log in JSON) and `ctr container restore --live --rw` (the shim: cryo restore -d with the
    shim's pipes as stdio): the counter goes on, its output reaches ctr through the new pipes;
    `ctr task checkpoint` into a directory, leaving the task running or (--exit) stopping it;
    an error of cryo's reaches ctr in cryo's words."""
    if not shutil.which("containerd"):
        raise AssertionError("containerd is not installed (make deps installs it)")
    cd = Containerd(env)
    try:
        archive = os.path.join(env.tmp, "image.tar")
        oci_archive(env.rootfs, archive, "localhost/cryo-busybox:latest")
        cd.ctr("image", "import", archive)
        counter = "i=0; while true; do i=$((i+1)); echo $i > /count.tmp && mv /count.tmp /count; echo count=$i; sleep 0.1; done"
        cd.ctr("run", "-d", "--cgroup", "/cryo-test-ctr/k1", "localhost/cryo-busybox:latest", "k1", "sh", "-c", counter,
               runtime=True)
        for _ in range(100):
            if exec_count(cd, "k1", "e0") >= 5:
                break
            time.sleep(0.1)
        p = cd.ctr("container", "checkpoint", "--task", "--rw", "k1", "localhost/ckpt-k1:1", check=False, timeout=120)
        check(p.returncode == 0, "ctr container checkpoint --task: " + p.stderr.strip()[-400:])
        at_checkpoint = exec_count(cd, "k1", "e1")
        check("RUNNING" in cd.ctr("task", "ls").stdout, "the task runs on after ctr's checkpoint (--leave-running)")
        cd.ctr("task", "kill", "-s", "SIGKILL", "k1")
        for _ in range(100):
            if "STOPPED" in cd.ctr("task", "ls").stdout:
                break
            time.sleep(0.1)
        cd.ctr("task", "delete", "k1")
        cd.ctr("container", "delete", "k1")
        p = cd.ctr("container", "restore", "--live", "--rw", "k1", "localhost/ckpt-k1:1", check=False, timeout=120)
        check(p.returncode == 0, "ctr container restore --live: " + p.stderr.strip()[-400:])
        counts = [int(w[6:]) for w in p.stdout.split() if w.startswith("count=") and w[6:].isdigit()]
        check("RUNNING" in cd.ctr("task", "ls").stdout, "the restored task runs")
        first = exec_count(cd, "k1", "e2")
        time.sleep(0.5)
        later = exec_count(cd, "k1", "e3")
        check(first > 0 and later > first, "the restored counter counts (%d, then %d)" % (first, later))
        check(not counts or min(counts) > 1, "the output ctr read through the shim's new pipe goes on from the "
              "checkpoint, not from 1: %s" % counts[:5])
        check(at_checkpoint > 0, "read %d at checkpoint" % at_checkpoint)

        # ctr task checkpoint: into a directory of ours, leaving the task running, then with --exit.
        images = os.path.join(env.tmp, "task-checkpoint")
        p = cd.ctr("task", "checkpoint", "--image-path", images, "k1", check=False, timeout=120)
        check(p.returncode == 0 and os.path.exists(os.path.join(images, "inventory.img")),
              "ctr task checkpoint --image-path writes cryo's image there: " + p.stderr.strip()[-300:])
        before = exec_count(cd, "k1", "e4")
        time.sleep(0.5)
        check("RUNNING" in cd.ctr("task", "ls").stdout and exec_count(cd, "k1", "e5") > before,
              "the task counts on after ctr task checkpoint")
        inspected = subprocess.run([CRYO, "inspect", images], capture_output=True, text=True, timeout=30)
        check(inspected.returncode == 0 and '"sh"' in inspected.stdout,
              "cryo inspect reads the image ctr task checkpoint made: " + inspected.stderr.strip()[-300:])
        p = cd.ctr("task", "checkpoint", "--exit", "--image-path", images + "-exit", "k1", check=False, timeout=120)
        check(p.returncode == 0 and os.path.exists(os.path.join(images + "-exit", "inventory.img")),
              "ctr task checkpoint --exit: " + p.stderr.strip()[-300:])
        for _ in range(100):
            if "STOPPED" in cd.ctr("task", "ls").stdout:
                break
            time.sleep(0.1)
        check("STOPPED" in cd.ctr("task", "ls").stdout, "ctr task checkpoint --exit stops the task")
        cd.ctr("task", "delete", "k1")
        cd.ctr("container", "delete", "k1")
        check(os.listdir(os.path.join(cd.runc_root, NAMESPACE)) == [], "task delete removes cryo's state")

        # A refusal of cryo's comes back to ctr in its words (the shim reads cryo's JSON log).
        holder = subprocess.Popen(["unshare", "--ipc", "sleep", "100"])
        try:
            time.sleep(0.2)
            cd.ctr("run", "-d", "--cgroup", "/cryo-test-ctr/k2", "--with-ns", "ipc:/proc/%d/ns/ipc" % holder.pid,
                   "localhost/cryo-busybox:latest", "k2", "sleep", "100", runtime=True)
            p = cd.ctr("container", "checkpoint", "--task", "k2", "localhost/ckpt-k2:1", check=False, timeout=120)
            check(p.returncode != 0 and "joined the ipc namespace" in p.stderr,
                  "cryo's refusal reaches ctr: " + p.stderr.strip()[-300:])
            check("RUNNING" in cd.ctr("task", "ls").stdout, "the refused task runs on")
        finally:
            holder.kill()
            holder.wait()
    finally:
        cd.stop()


if __name__ == "__main__":
    main({"containerd": test_containerd, "checkpoint": test_checkpoint})
