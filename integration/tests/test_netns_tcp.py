#!/usr/bin/env python3
"""Process mode, TCP connections inside a network namespace of the tree's own.

The network lock of such a dump lives in the tree's namespace (the host's
firewall is never touched), and the restore locks the connections again in the
new namespace until the tree runs.

- loopback: a tree in its own network namespace (`unshare --net`) whose two processes talk
  over a TCP connection on 127.0.0.1 (numbered requests and answers, and 200 KiB sent but not
  yet read by the other side) is dumped with --tcp-established while the exchange goes on and
  restored: the same connection goes on in a new namespace (the numbers follow on, no byte is
  lost or doubled, nothing was reconnected), and no lock table of cryo's is left in the new
  namespace or the host's.
- leave_running: the same with --leave-running: the tree goes on in its own namespace, and no
  lock is left there.
- web_demo_veth: the web-server demo inside its own network namespace, with a veth pair to
  the host: curl, on the host, asks for a page the server takes 10 s to answer; two seconds
  in, the server is dumped with --tcp-established (its namespace and the veth go with it)
  and restored (cryo makes the pair again; the host gives its end its address back, as
  that end is the host's business): curl gets "Done after checkpoint!", and no lock is left
  in the restored namespace or the host's.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, log, progress, reap, run, snapshot, wait_progress  # noqa: E402
from veth import VethNet  # noqa: E402

PROGRAM = r'''
import os, signal, socket, struct, sys, time
ready, report, prog = sys.argv[1:4]
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
BULK = 200 * 1024

def pattern(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))

def recv_exact(s, n):
    data = b""
    while len(data) < n:
        try:
            chunk = s.recv(n - len(data))
        except InterruptedError:
            continue
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]
child = os.fork()
if child == 0:  # the client: asks numbered questions, then reads the bulk
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    listener.close()
    c = socket.create_connection(("127.0.0.1", port))
    n = 0
    while True:
        c.sendall(struct.pack("!Q", n))
        answer = struct.unpack("!Q", recv_exact(c, 8))[0]
        if answer == 2**64 - 1:  # the server's last word: the bulk follows
            break
        if answer != n * 2 + 1:
            os._exit(3)
        n += 1
    if recv_exact(c, BULK) != pattern(BULK):
        os._exit(4)
    c.sendall(b"bulk-ok!")
    os._exit(0)
s, _ = listener.accept()
# The bulk goes first, unread by the client until the end: it sits in the
# queues across the dump.
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()} child={child} port={port}\n")
problems = []
count = 0
try:
    while not triggered:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
        if n != count:
            problems.append(f"question {n}, want {count}")
            break
        s.sendall(struct.pack("!Q", n * 2 + 1))
        count += 1
        if count % 50 == 0:
            with open(prog + ".tmp", "w") as f:
                f.write(f"{count}\n")
            os.rename(prog + ".tmp", prog)
            time.sleep(0.01)
    n = struct.unpack("!Q", recv_exact(s, 8))[0]
    s.sendall(struct.pack("!Q", 2**64 - 1) + pattern(BULK))
    if recv_exact(s, 8) != b"bulk-ok!":
        problems.append("the client did not confirm the bulk")
    pid, status = os.waitpid(child, 0)
    if status != 0:
        problems.append(f"client status {status}")
except (OSError, EOFError) as e:
    problems.append(repr(e))
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
'''


def start(env):
    script = env.path("talk.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn(["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {sys.executable} {script} "
                     f"{ready} {report} {prog}"], name="unshare")
    env.wait_ready(ready, pid)
    check(os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"), "no network namespace of its own")
    wait_progress(prog, 100)
    return pid, report, prog


def lock_tables(pid=None):
    argv = ["nft", "list", "tables"]
    if pid:
        argv = ["nsenter", "-t", str(pid), "-n"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "cryo-lock" in line]


def case_loopback(env):
    pid, report, prog = start(env)
    host_tables = lock_tables()
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--tcp-established")
    env.wait_dumped(before)
    count = progress(prog)[0]
    _, rpid = env.restore(images, "--tcp-established")
    check_eq(rpid, pid, "restored pid")
    check(os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"),
          "the restored tree shares cryo's network namespace")
    wait_progress(prog, count + 200)
    check_eq(lock_tables(pid), [], "lock tables left in the restored namespace")
    check_eq(lock_tables(), host_tables, "lock tables in the host's namespace")
    env.trigger_and_report(pid, report)


def case_leave_running(env):
    pid, report, prog = start(env)
    host_tables = lock_tables()
    env.dump(pid, env.path("images"), "--tcp-established", "--leave-running")
    count = progress(prog)[0]
    wait_progress(prog, count + 200)
    check_eq(lock_tables(pid), [], "lock tables left in the tree's namespace")
    check_eq(lock_tables(), host_tables, "lock tables in the host's namespace")
    env.trigger_and_report(pid, report)


SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib", "web_server.py")


def case_web_demo_veth(env):
    with VethNet("web") as net:
        go, ready = env.path("go"), env.path("ready")
        pid = env.spawn(["unshare", "--net", "/usr/bin/python3", SERVER, net.inner_v4, 0, 10, ready, go], name="server")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            check(time.monotonic() < deadline, "the server has no network namespace of its own")
            time.sleep(0.01)
        net.attach(pid)
        open(go, "w").close()
        port = env.wait_ready(ready, pid)["port"]
        out = env.path("curl.out")
        curl = subprocess.Popen(["curl", "-sS", "-m", "60", "-w", "\nHTTP %{http_code}\n",
                                 f"http://{net.inner_v4}:{port}/"], stdout=open(out, "w"), stderr=subprocess.STDOUT)
        time.sleep(2)
        host_tables = lock_tables()
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images, "--tcp-established")
        env.wait_dumped(before)
        _, rpid = env.restore(images, "--tcp-established")
        check_eq(rpid, pid, "restored server pid")
        net.configure_host()
        rc = curl.wait(timeout=60)
        text = open(out).read()
        log(f"curl exit {rc}: {text.strip()!r}")
        check_eq(rc, 0, "curl exit code")
        check("Done after checkpoint!" in text and "HTTP 200" in text, f"curl got {text!r}")
        check_eq(lock_tables(pid), [], "lock tables left in the restored namespace")
        check_eq(lock_tables(), host_tables, "lock tables in the host's namespace")
        os.kill(pid, 15)
        reap([pid], what="the restored server")


if __name__ == "__main__":
    run({"loopback": case_loopback, "leave_running": case_leave_running, "web_demo_veth": case_web_demo_veth})
