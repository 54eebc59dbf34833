"""Helpers for cryo's OCI end-to-end tests: a busybox rootfs, bundles, running
the runtime with timeouts, and cleanup of everything a test made."""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CRYO = os.environ.get("CRYO", "cryo")
PR_SET_CHILD_SUBREAPER = 36

FAILURES = []


def become_subreaper():
    """Container inits outlive `cryo create`; they must become our children, not PID 1's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def make_rootfs(path):
    busybox = shutil.which("busybox") or "/bin/busybox"
    os.makedirs(os.path.join(path, "bin"))
    shutil.copy(busybox, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "usr/bin", "sbin"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


class Env:
    """One test's temp dir, state root and containers; cleans them all up."""

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="cryo-oci-%s-" % name)
        self.root = os.path.join(self.tmp, "state")
        self.rootfs = os.path.join(self.tmp, "rootfs")
        make_rootfs(self.rootfs)
        self.ids = []
        self.cryo = CRYO  # a test may put a wrapper here

    def bundle(self, cid, args, edit=None, terminal=False):
        """Writes a bundle for container cid (default spec, rootfs shared) and returns its dir."""
        bundle = os.path.join(self.tmp, "bundle-" + cid)
        os.makedirs(bundle)
        self.run(["spec", "--bundle", bundle], root=False)
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        config["root"] = {"path": self.rootfs, "readonly": False}
        config["process"]["args"] = args
        config["process"]["terminal"] = terminal
        config["linux"]["cgroupsPath"] = "/cryo-test-%s-%s" % (self.name, cid)
        if edit:
            edit(config)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        self.ids.append(cid)
        return bundle

    def run(self, args, root=True, check=True, timeout=30, input=None):
        cmd = [self.cryo] + (["--root", self.root] if root else []) + args
        # Files, not pipes: a created container keeps its stdio open for as long as it lives.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(cmd, stdout=out, stderr=err, text=True, timeout=timeout, input=input)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        reap()
        if check and p.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
        return p

    def state(self, cid):
        return json.loads(self.run(["state", cid]).stdout)

    def wait_status(self, cid, status, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            reap()
            if self.state(cid)["status"] == status:
                return
            time.sleep(0.05)
        raise AssertionError("%s did not reach %s: %s" % (cid, status, self.state(cid)))

    def cleanup(self):
        for cid in self.ids:
            subprocess.run([self.cryo, "--root", self.root, "delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
            reap()
        for base in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", base, "cryo-test-%s-" % self.name)
            parent = os.path.dirname(path)
            for entry in os.listdir(parent) if os.path.isdir(parent) else []:
                if entry.startswith(os.path.basename(path)):
                    try:
                        os.rmdir(os.path.join(parent, entry))
                    except OSError:
                        pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class NamespaceHolder:
    """`with NamespaceHolder("--uts", "--ipc") as ns_dir:` a child (unshare) that holds new
    namespaces of those kinds, for bundles that join them by path (ns_dir ends in
    /ns/); killed and reaped on leaving."""

    def __init__(self, *unshare_flags):
        self.flags = unshare_flags

    def __enter__(self):
        self.proc = subprocess.Popen(["unshare", *self.flags, "sleep", "1000"])
        ns_dir = "/proc/%d/ns/" % self.proc.pid
        for _ in range(100):
            if os.readlink(ns_dir + "uts") != os.readlink("/proc/self/ns/uts"):
                break
            time.sleep(0.05)
        return ns_dir

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def run_on_pty(argv, send=None, timeout=60):
    """Runs argv with a new pty as its stdin, stdout and stderr (as a person at a
    terminal would), types `send` after a moment, and returns (exit code, output)."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    if send:
        time.sleep(0.3)
        os.write(master, send.encode())
    out = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: every holder of the pty's other end is gone
            break
        if not data:
            break
        out += data
    code = p.wait(timeout)
    os.close(master)
    return code, out.decode(errors="replace")


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, flush=True)
    else:
        print("ok:", message, flush=True)


def main(tests):
    """Runs the named test functions (argv[1:] or all), each with its own Env."""
    become_subreaper()
    names = sys.argv[1:] or list(tests)
    for name in names:
        env = Env(name)
        try:
            tests[name](env)
        except Exception as e:  # a failed step fails the test, then cleanup runs
            FAILURES.append("%s: %s" % (name, e))
            print("FAIL: %s: %s" % (name, e), flush=True)
        finally:
            env.cleanup()
    reap()
    print("%s: %d failed checks" % (" ".join(names), len(FAILURES)))
    sys.exit(1 if FAILURES else 0)
