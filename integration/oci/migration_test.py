"""Migration of a live container between two "hosts" through a registry.

Three network namespaces: host A, host B and the client's, which holds the LAN (a bridge that A's
and B's uplinks plug into); each host has a bridge of its own for its containers' veths, and its
own cryo state root. Debian's docker-registry listens on the machine's loopback; skopeo copies.

On A a container (python3's HTTP server, plus a counter thread) lives in a network namespace of
its own (joined by path, as CNI makes one), 10.77.0.2 on a veth to A's bridge. The client asks for
a page that streams for ~10 s. In the middle of it A checkpoints the container with
--tcp-established and pushes it to the registry; A's side of the network goes (the container's
namespace with it). B pulls the image, reads the address and MAC the container had from its
network.status (`cryo inspect`), makes a namespace with them on a veth to B's bridge, and
restores the container there. The client gets its whole answer over the same connection, the
counter goes on, and A holds no container, state, cgroup, mount or lock of it.

The downtime (checkpoint start to running on B) and the image size are printed; bench/migration.py
measures them without a client and next to a plain skopeo copy."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from cryo_oci import CRYO, check, main, reap
from checkpoint_image_test import Registry
from checkpoint_test import wait_for

IP, PREFIX, GATEWAY, PORT = "10.77.0.2", 24, "10.77.0.100", 8080
MAC = "02:77:00:00:00:02"

SERVER = r'''
import http.server, os, threading, time

def counter():
    i = 0
    while True:
        i += 1
        with open("/data/count.tmp", "w") as f:
            f.write("%d\n" % i)
        os.rename("/data/count.tmp", "/data/count")
        time.sleep(0.1)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        for n in range(1, 41):  # ~10 s of streaming
            self.wfile.write(b"chunk %d\n" % n)
            self.wfile.flush()
            time.sleep(0.25)
        self.wfile.write(b"end\n")

    def log_message(self, *args):
        pass

threading.Thread(target=counter, daemon=True).start()
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
server.daemon_threads = True
open("/data/ready", "w").close()
server.serve_forever()
'''

# The client, in its own namespace: the whole answer into OUT, what it got so far into OUT.partial.
CLIENT = r'''
import socket, sys
out = sys.argv[1]
s = socket.create_connection(("%s", %d), timeout=60)
s.sendall(b"GET /stream HTTP/1.0\r\nHost: web\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    with open(out + ".partial", "wb") as f:
        f.write(data)
with open(out, "wb") as f:
    f.write(data)
''' % (IP, PORT)


class Netns:
    """A network namespace held by a child (unshare --net sleep); it goes when the child is killed,
    with every link in it."""

    def __init__(self, name):
        self.name = name
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
        own = os.readlink("/proc/self/ns/net")
        wait_for(lambda: os.path.exists("/proc/%d/ns/net" % self.proc.pid)
                 and os.readlink("/proc/%d/ns/net" % self.proc.pid) != own, "netns " + name)
        self.path = "/proc/%d/ns/net" % self.proc.pid
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd, check=True):
        p = subprocess.run(["nsenter", "--net=" + self.path, "--", *[str(c) for c in cmd]], capture_output=True,
                           text=True)
        if check and p.returncode != 0:
            raise AssertionError("in netns %s: %s: %s" % (self.name, " ".join(map(str, cmd)), p.stderr.strip()))
        return p.stdout

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def plug(netns, name, into, port, bridge):
    """A veth pair: NAME in netns, PORT in `into` on its BRIDGE."""
    netns.run("ip", "link", "add", name, "type", "veth", "peer", "name", port, "netns", into.proc.pid)
    into.run("ip", "link", "set", port, "master", bridge, "up")
    netns.run("ip", "link", "set", name, "up")


class Host:
    """A "host": a network namespace with a bridge for its containers and an uplink to the LAN, and
    a cryo state root of its own."""

    def __init__(self, tmp, name, lan, address):
        self.name = name
        self.root = os.path.join(tmp, "state-" + name)
        self.netns = Netns("host-" + name)
        self.netns.run("ip", "link", "add", "br0", "type", "bridge")
        self.netns.run("ip", "link", "set", "br0", "up")
        lan.run("ip", "link", "add", "up" + name, "type", "veth", "peer", "name", "uplink", "netns",
                self.netns.proc.pid)
        lan.run("ip", "link", "set", "up" + name, "master", "br0", "up")
        self.netns.run("ip", "link", "set", "uplink", "master", "br0", "up")
        self.netns.run("ip", "addr", "add", address + "/24", "dev", "br0")

    def cryo(self, *args, timeout=120):
        if args[0] == "run":  # the container's stdio: /dev/null, as a shim's would be a pipe the image names
            p = subprocess.run([CRYO, "--root", self.root, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=timeout)
            p.stdout = p.stderr = ""
            reap()
            return p
        # Files, not pipes: a restored tree may keep what it was given open for as long as it lives.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run([CRYO, "--root", self.root, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               text=True, timeout=timeout)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        reap()
        return p

    def container_netns(self, ip, mac):
        """The container's namespace, its eth0 (ip, mac) on a veth to this host's bridge."""
        ns = Netns("ctr-" + self.name)
        ns.run("ip", "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", "ctr0", "netns",
               self.netns.proc.pid)
        self.netns.run("ip", "link", "set", "ctr0", "master", "br0", "up")
        ns.run("ip", "addr", "add", ip, "dev", "eth0")
        ns.run("ip", "link", "set", "eth0", "up")
        ns.run("ip", "route", "add", "default", "via", GATEWAY)
        return ns


def python_rootfs(env):
    """The busybox rootfs, with the host's /usr bound in (python3) and the merged-/usr links."""
    for link in ("lib", "lib64"):
        os.symlink("usr/" + link, os.path.join(env.rootfs, link))
    os.makedirs(os.path.join(env.rootfs, "app"))
    os.makedirs(os.path.join(env.rootfs, "data"))


def web_bundle(env, name, netns_path, app, data):
    def edit(config):
        config["mounts"] += [
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
            {"destination": "/app", "type": "bind", "source": app, "options": ["rbind", "ro"]},
            {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}]
        for n in config["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = netns_path
        config["linux"]["cgroupsPath"] = "/cryo-test-migration-web"  # the same path on either host
        config["process"]["env"] = ["PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"]
    return env.bundle(name, ["/usr/bin/python3", "/app/server.py"], edit=edit)


def count(data):
    try:
        with open(os.path.join(data, "count")) as f:
            text = f.read().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def chunks(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.startswith("chunk "))
    except OSError:
        return 0


def leftovers_of(host, name):
    """What host still holds of container NAME: its state, cgroups, mounts of its bundle."""
    left = []
    if os.path.isdir(host.root) and os.listdir(host.root):
        left.append("state root: %s" % os.listdir(host.root))
    for base in os.listdir("/sys/fs/cgroup"):
        if os.path.isdir(os.path.join("/sys/fs/cgroup", base, "cryo-test-migration-web")):
            left.append("cgroup %s" % base)
    mounts = open("/proc/mounts").read()
    if ("bundle-" + name) in mounts:
        left.append("mounts of its bundle")
    p = host.cryo("list", "--format", "json")
    if p.returncode == 0 and p.stdout.strip() not in ("", "null", "[]"):
        left.append("list: " + p.stdout.strip())
    return left


def test_migration(env):
    for tool in ("skopeo", "docker-registry", "python3"):
        if not shutil.which(tool):
            raise AssertionError("%s is not installed (make test-deps)" % tool)
    os.environ["TMPDIR"] = os.path.join(env.tmp, "tmpdir")
    os.makedirs(os.environ["TMPDIR"])
    python_rootfs(env)
    app, data = os.path.join(env.tmp, "app"), os.path.join(env.tmp, "data")
    os.makedirs(app)
    os.makedirs(data)
    with open(os.path.join(app, "server.py"), "w") as f:
        f.write(SERVER)
    client_py = os.path.join(env.tmp, "client.py")
    with open(client_py, "w") as f:
        f.write(CLIENT)
    answer = os.path.join(env.tmp, "answer")
    held = []
    client = None
    hosts = []
    try:
        lan = Netns("lan")
        held.append(lan)
        lan.run("ip", "link", "add", "br0", "type", "bridge")
        lan.run("ip", "addr", "add", GATEWAY + "/24", "dev", "br0")
        lan.run("ip", "link", "set", "br0", "up")
        a = Host(env.tmp, "a", lan, "10.77.0.11")
        b = Host(env.tmp, "b", lan, "10.77.0.12")
        hosts = [a, b]
        held += [a.netns, b.netns]
        ctr_a = a.container_netns("%s/%d" % (IP, PREFIX), MAC)
        held.append(ctr_a)

        # Host A: the container, its server ready, the counter counting.
        bundle_a = web_bundle(env, "web-a", ctr_a.path, app, data)
        p = a.cryo("run", "-d", "--bundle", bundle_a, "web")
        check(p.returncode == 0, "host A runs the container: " + p.stderr.strip()[-300:])
        wait_for(lambda: os.path.exists(os.path.join(data, "ready")) and count(data) >= 5, "the server on A", 30)
        # The client, mid-request.
        client = subprocess.Popen(["nsenter", "--net=" + lan.path, "--", sys.executable, client_py, answer])
        wait_for(lambda: chunks(answer + ".partial") >= 4, "the client to get the first chunks", 30)
        got_before = chunks(answer + ".partial")

        # A: checkpoint with the TCP connection, push.
        registry_ctx = Registry(env)
        registry = registry_ctx.__enter__()
        held.append(registry_ctx)
        ref = "docker://127.0.0.1:%d/migrate/web:v1" % registry.port
        t0 = time.monotonic()
        p = a.cryo("checkpoint", "--tcp-established", "--image-ref", ref, "--tls-verify=false", "web")
        t_pushed = time.monotonic()
        check(p.returncode == 0, "A: checkpoint --tcp-established --image-ref docker://: " + p.stderr.strip()[-500:])
        last = count(data)
        ctr_a.close()  # A's side of the network goes; the address moves to B
        check(client.poll() is None, "the client still waits")
        left = leftovers_of(a, "web-a")
        check(not left, "A holds nothing of the container: %s" % left)

        # B: pull, read network.status, the same address and MAC on B's bridge, restore.
        layout = os.path.join(env.tmp, "b-images")
        p = subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref, "oci:%s:web" % layout],
                           capture_output=True, text=True)
        t_pulled = time.monotonic()
        check(p.returncode == 0, "B: skopeo copy from the registry: " + p.stderr.strip()[-300:])
        p = b.cryo("inspect", "oci:%s:web" % layout)
        check(p.returncode == 0, "B: cryo inspect of the pulled image: " + p.stderr.strip()[-300:])
        status = json.loads(p.stdout).get("network.status", {})
        eth0 = status.get("cryo", {}).get("interfaces", {}).get("eth0", {})
        subnets = [s["ipnet"] for s in eth0.get("subnets", [])]
        check(subnets == ["%s/%d" % (IP, PREFIX)] and eth0.get("mac_address") == MAC
              and eth0["subnets"][0].get("gateway") == GATEWAY,
              "network.status names the container's address, gateway and MAC: %s" % status)
        ctr_b = b.container_netns(subnets[0] if subnets else "%s/%d" % (IP, PREFIX), eth0.get("mac_address", MAC))
        held.append(ctr_b)
        bundle_b = web_bundle(env, "web-b", ctr_b.path, app, data)
        p = b.cryo("restore", "-d", "--tcp-established", "--bundle", bundle_b, "--image-ref", "oci:%s:web" % layout,
                   "web")
        t_running = time.monotonic()
        check(p.returncode == 0, "B: restore --tcp-established: " + p.stderr.strip()[-500:])
        size = sum(os.path.getsize(os.path.join(layout, "blobs", "sha256", n))
                   for n in os.listdir(os.path.join(layout, "blobs", "sha256")))
        print("migration: downtime %.2f s (checkpoint+push %.2f s, pull %.2f s, restore %.2f s), image %.1f MiB"
              % (t_running - t0, t_pushed - t0, t_pulled - t_pushed, t_running - t_pulled, size / 2**20), flush=True)

        # The counter on, the client's whole answer.
        first = wait_for(lambda: count(data) if count(data) != last else 0, "the counter on B")
        check(last < first <= last + 10, "the counter goes on on B from %d (next %d)" % (last, first))
        client.wait(timeout=60)
        client_rc, client = client.returncode, None
        with open(answer) if os.path.exists(answer) else open(os.devnull) as f:
            lines = f.read().splitlines()
        body = lines[lines.index("") + 1:] if "" in lines else []
        check(client_rc == 0 and body == ["chunk %d" % n for n in range(1, 41)] + ["end"],
              "the client gets its whole answer over the same connection (%d chunks before the move): %s"
              % (got_before, body[-3:]))
        p = b.cryo("state", "web")
        check(p.returncode == 0 and json.loads(p.stdout)["status"] == "running", "B: the container runs")
        p = b.cryo("delete", "--force", "web")
        check(p.returncode == 0, "B: delete")
        left = leftovers_of(b, "web-b")
        check(not left, "B holds nothing once it is deleted: %s" % left)
    finally:
        if client is not None:
            client.kill()
            client.wait()
        for host in hosts:
            subprocess.run([CRYO, "--root", host.root, "delete", "--force", "web"], capture_output=True)
        reap()
        for h in reversed(held):
            if isinstance(h, Netns):
                h.close()
            else:
                h.__exit__(None, None, None)
        for base in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", base, "cryo-test-migration-web")
            if os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        os.environ.pop("TMPDIR", None)


if __name__ == "__main__":
    main({"migration": test_migration})
