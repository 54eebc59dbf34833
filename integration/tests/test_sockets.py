#!/usr/bin/env python3
"""Sockets: the web-server demo (an HTTP request survives a checkpoint of its server),
100 idle keep-alive connections, data in flight both ways, unix/UDP/TCP sockets of every
kind in one workload, and the network lock: no nftables rule is left behind by a
restore, a failed restore, a failed dump or `dump -R`."""
import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (TestFailure, check, check_eq, exists, free_port, hash_dir, log, reap, run, snapshot, state,  # noqa: E402
                     wait_until)

PYTHON = "/usr/bin/python3"

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib", "web_server.py")

STREAMER = r'''
# Reads a numbered stream from one client and writes one back, both checked in order.
import socket, struct, sys, threading
port, ready, report = int(sys.argv[1]), sys.argv[2], sys.argv[3]
END = 0xffffffffffffffff
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1)
open(ready, "w").write("READY\n")
conn, _ = listener.accept()
stop = threading.Event()
sent = [0]
def writer():
    n = 0
    while not stop.is_set():
        conn.sendall(b"".join(struct.pack("<Q", n + i) for i in range(512)))
        n += 512
    sent[0] = n
    conn.sendall(struct.pack("<Q", END))
t = threading.Thread(target=writer)
t.start()
expect, buf, problem = 0, b"", None
while True:
    data = conn.recv(65536)
    if not data:
        problem = "the client's stream ended early"
        break
    buf += data
    while len(buf) >= 8:
        (value,) = struct.unpack("<Q", buf[:8])
        buf = buf[8:]
        if value == END:
            break
        if value != expect and problem is None:
            problem = f"record {expect} arrived as {value}"
        expect += 1
    else:
        continue
    break
stop.set()
t.join()
open(report, "w").write(f"OK received {expect} sent {sent[0]}\n" if problem is None else f"FAIL: {problem}\n")
'''

WORKLOAD = r'''
# Sockets of every kind, with queued data, checked after restore.
import os, signal, socket, sys, time
ready, report, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
problems = []
def ok(cond, what):
    if not cond:
        problems.append(what)
def rx(s, n):
    s.settimeout(5)
    return s.recv(n)
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.send(b"to-b"); b.send(b"to-a")
path = os.path.join(tmp, "named.sock")
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); listener.bind(path); listener.listen(5)
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); client.connect(path)
server, _ = listener.accept()
client.send(b"client-data"); server.send(b"server-data")
d1 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d1.bind("\0cryo-it-d1-%d" % os.getpid())
d2 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d2.bind("\0cryo-it-d2-%d" % os.getpid())
d2.connect(d1.getsockname())
for i in range(3): d2.send(b"dgram%d" % i)
q1, q2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
q1.send(b"packet-a"); q1.send(b"packet-b")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
udp_sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp_sender.bind(("127.0.0.1", 0))
for i in range(3): udp_sender.sendto(b"udp%d" % i, udp.getsockname())
udp_conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp_conn.connect(udp.getsockname())
tl = socket.socket(); tl.bind(("127.0.0.1", 0)); tl.listen(4)
tc = socket.create_connection(tl.getsockname()); ts, _ = tl.accept()
tc.send(b"c2s" * 3000); ts.send(b"s2c" * 3000)
t6l = socket.socket(socket.AF_INET6); t6l.bind(("::1", 0)); t6l.listen(1)
t6c = socket.create_connection(t6l.getsockname()[:2]); t6s, _ = t6l.accept()
t6c.send(b"over-v6")
pending_listener = socket.socket(); pending_listener.bind(("127.0.0.1", 0)); pending_listener.listen(8)
pending_client = socket.create_connection(pending_listener.getsockname()); pending_client.send(b"pending-hello")
time.sleep(0.1)
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
open(ready, "w").write("READY pid=%d\n" % os.getpid())
while not triggered:
    signal.pause()
ok(rx(b, 100) == b"to-b" and rx(a, 100) == b"to-a", "socketpair queues")
ok(rx(server, 100) == b"client-data" and rx(client, 100) == b"server-data", "named stream queues")
ok(client.getpeername() == path and server.getsockname() == path, "named stream addresses")
import struct
creds = [struct.unpack("3i", x.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0] for x in (client, server, a, b)]
ok(creds == [os.getpid()] * 4, "SO_PEERCRED of unix connections: %r, want %d" % (creds, os.getpid()))
ok([rx(d1, 100) for _ in range(3)] == [b"dgram0", b"dgram1", b"dgram2"], "unix datagram queue")
ok(d2.getpeername() == d1.getsockname(), "unix datagram peer")
ok(rx(q2, 100) == b"packet-a" and rx(q2, 100) == b"packet-b", "seqpacket boundaries")
got = [udp.recvfrom(100) for _ in range(3)]
ok([g[0] for g in got] == [b"udp0", b"udp1", b"udp2"], "udp queue %r" % got)
ok(all(g[1] == udp_sender.getsockname() for g in got), "udp sources %r" % got)
udp_conn.send(b"after"); ok(udp.recvfrom(100)[0] == b"after", "connected udp")
data = b""
while len(data) < 9000: data += rx(ts, 65536)
ok(data == b"c2s" * 3000, "tcp client to server")
data = b""
while len(data) < 9000: data += rx(tc, 65536)
ok(data == b"s2c" * 3000, "tcp server to client")
ok(rx(t6s, 100) == b"over-v6", "tcp over IPv6")
accepted, _ = pending_listener.accept()
ok(rx(accepted, 100) == b"pending-hello", "pending connection's bytes")
accepted.send(b"welcome"); ok(rx(pending_client, 100) == b"welcome", "pending connection answers")
a.send(b"x"); ok(rx(b, 1) == b"x", "socketpair still works")
tc.send(b"again"); ok(rx(ts, 100) == b"again", "tcp still works")
late = socket.create_connection(tl.getsockname()); ok(tl.accept() is not None, "tcp listener accepts")
late_unix = socket.socket(socket.AF_UNIX); late_unix.connect(path); ok(listener.accept() is not None, "unix listener accepts")
open(report, "w").write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
sys.exit(1 if problems else 0)
'''

CREDS = r'''
# A socketpair made before fork: after restore, SO_PEERCRED on both ends still
# names the parent that made it, and the bytes queued in it are there.
import os, signal, socket, struct, sys
ready, report = sys.argv[1], sys.argv[2]
a, b = socket.socketpair()
parent = os.getpid()
def peer_pid(s):
    return struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
child = os.fork()
if child == 0:
    a.close()
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.pause()
    b.settimeout(5)
    got = b.recv(100)
    b.send(b"%d %s" % (peer_pid(b), got))
    os._exit(0)
b.close()
a.send(b"queued")
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
open(ready, "w").write("READY pid=%d child=%d\n" % (parent, child))
while not triggered:
    signal.pause()
os.kill(child, signal.SIGUSR1)
a.settimeout(5)
answer = a.recv(100)
os.waitpid(child, 0)
want = b"%d queued" % parent
ok = peer_pid(a) == parent and answer == want
open(report, "w").write("OK\n" if ok else f"FAIL: parent sees {peer_pid(a)}, child says {answer!r}, want {want!r}\n")
sys.exit(0 if ok else 1)
'''

CROSS = r'''
# A parent's named unix listener; a child connects; the parent accepts. After
# restore each end's SO_PEERCRED names the other process, queued bytes are there.
import os, signal, socket, struct, sys, time
ready, report, path = sys.argv[1], sys.argv[2], sys.argv[3]
def peer_pid(s):
    return struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(4)
parent = os.getpid()
child = os.fork()
if child == 0:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.send(b"from-child")
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.pause()
    c.settimeout(5)
    got = c.recv(100)
    c.send(b"%d %s" % (peer_pid(c), got))
    os._exit(0)
server, _ = listener.accept()
server.send(b"from-parent")
time.sleep(0.1)
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
open(ready, "w").write("READY pid=%d child=%d\n" % (parent, child))
while not triggered:
    signal.pause()
server.settimeout(5)
first = server.recv(100)
os.kill(child, signal.SIGUSR1)
answer = server.recv(100)
os.waitpid(child, 0)
problems = []
if peer_pid(server) != child:
    problems.append(f"the parent's end names {peer_pid(server)}, want {child}")
if first != b"from-child":
    problems.append(f"queued for the parent: {first!r}")
if answer != b"%d from-parent" % parent:
    problems.append(f"the child says {answer!r}, want its peer {parent} and the queued bytes")
open(report, "w").write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
sys.exit(1 if problems else 0)
'''




def lock_tables():
    """Every network-lock rule of cryo: nftables tables and iptables rules."""
    out = ""
    for argv in (["nft", "list", "ruleset"], ["iptables", "-w", "-S"], ["ip6tables", "-w", "-S"]):
        out += subprocess.run(argv, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if "cryo" in line]


def check_no_lock(what):
    check_eq(lock_tables(), [], f"nftables tables left {what}")


def start_server(env, delay):
    port = free_port()
    ready = env.path(f"server-{port}.ready")
    pid = env.spawn([PYTHON, SERVER, "127.0.0.1", port, delay, ready], name="server")
    env.wait_file(ready, pid=pid)
    return pid, port


def start_curl(env, port):
    out = env.path("curl.out")
    proc = subprocess.Popen(["curl", "-sS", "-m", "60", "-w", "\nHTTP %{http_code}\n", f"http://127.0.0.1:{port}/"],
                            stdout=open(out, "w"), stderr=subprocess.STDOUT)
    return proc, out


def check_curl(proc, out):
    rc = proc.wait(timeout=60)
    text = open(out).read()
    log(f"curl exit {rc}: {text.strip()!r}")
    check_eq(rc, 0, "curl exit code")
    check("Done after checkpoint!" in text and "HTTP 200" in text, f"curl got {text!r}")


def dump_and_restore(env, pid, images, *extra):
    env.dump(pid, images, "--tcp-established", *extra)
    check(lock_tables(), "no network lock while the server is checkpointed")
    reap([pid], what="the dumped server")
    _, rpid = env.restore(images, "--tcp-established")
    check_eq(rpid, pid, "restored server pid")
    check_no_lock("after the restore")


def case_web_demo(env):
    pid, port = start_server(env, 10)
    proc, out = start_curl(env, port)
    time.sleep(2)
    dump_and_restore(env, pid, env.path("images"))
    check_curl(proc, out)


def dump_mid_request(env, delay):
    """A server answering after `delay` s, a curl waiting on it, and the server dumped
    (and gone) a second into the request; returns (pid, port, curl, curl's output, images)."""
    pid, port = start_server(env, delay)
    proc, out = start_curl(env, port)
    time.sleep(1)
    images = env.path("images")
    env.dump(pid, images, "--tcp-established")
    reap([pid], what="the dumped server")
    return pid, port, proc, out, images


def case_web_demo_foreground(env):
    """`cryo restore` without -d waits for the restored server; meanwhile the lock is
    gone and the waiting client gets its answer."""
    pid, port, proc, out, images = dump_mid_request(env, 4)
    restorer, _, _ = env.cryo_background("restore", "-D", images, "--tcp-established", "-o", env.path("restore.log"))
    check_curl(proc, out)
    check(restorer.poll() is None, "cryo restore did not wait for the restored server")
    check_no_lock("while cryo restore waits for the server")
    os.kill(pid, signal.SIGTERM)
    check_eq(restorer.wait(timeout=30), 128 + signal.SIGTERM, "exit code of cryo restore (the server's status)")


def filter_tables():
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return [t for t in ("ip", "ip6") if f"table {t} filter\n" in tables]


def case_web_demo_iptables(env):
    """The iptables lock works, and a filter table it had to make is gone with it."""
    before = filter_tables()
    pid, port = start_server(env, 4)
    proc, out = start_curl(env, port)
    time.sleep(1)
    dump_and_restore(env, pid, env.path("images"), "--network-lock", "iptables")
    check_curl(proc, out)
    check_eq(filter_tables(), before, "iptables filter tables after the lock is gone")


def case_web_demo_twice(env):
    pid, port = start_server(env, 10)
    proc, out = start_curl(env, port)
    time.sleep(2)
    dump_and_restore(env, pid, env.path("images1"))
    time.sleep(2)
    dump_and_restore(env, pid, env.path("images2"))
    check_curl(proc, out)


def case_keepalive_100(env):
    pid, port = start_server(env, 0)
    conns = []
    for _ in range(100):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/")
        r = c.getresponse()
        check_eq(r.status, 200, "first answer")
        r.read()
        conns.append(c)
    dump_and_restore(env, pid, env.path("images"))
    for i, c in enumerate(conns):
        c.request("GET", "/")
        r = c.getresponse()
        check_eq(r.status, 200, f"answer on connection {i} after restore")
        check_eq(r.read(), b"Done after checkpoint!\n", f"body on connection {i}")


def case_in_flight(env):
    port = free_port()
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([PYTHON, env.write("streamer.py", STREAMER), port, ready, report], name="streamer")
    env.wait_file(ready, pid=pid)
    sock = socket.create_connection(("127.0.0.1", port))
    stop = threading.Event()
    state_ = {"sent": 0, "received": 0, "problem": None}

    def writer():
        n = 0
        while not stop.is_set():
            sock.sendall(b"".join(struct.pack("<Q", n + i) for i in range(256)))
            n += 256
        state_["sent"] = n
        sock.sendall(struct.pack("<Q", 0xffffffffffffffff))

    def reader():
        expect, buf = 0, b""
        while True:
            data = sock.recv(65536)
            if not data:
                state_["problem"] = state_["problem"] or "server stream ended early"
                return
            buf += data
            while len(buf) >= 8:
                (value,) = struct.unpack("<Q", buf[:8])
                buf = buf[8:]
                if value == 0xffffffffffffffff:
                    state_["received"] = expect
                    return
                if value != expect and not state_["problem"]:
                    state_["problem"] = f"server record {expect} arrived as {value}"
                expect += 1

    sock.settimeout(30)
    threads = [threading.Thread(target=writer, daemon=True), threading.Thread(target=reader, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1)
    dump_and_restore(env, pid, env.path("images"))
    time.sleep(1)
    stop.set()
    threads[0].join(30)
    threads[1].join(30)
    check(not threads[1].is_alive(), "the server's stream did not end")
    check(state_["problem"] is None, state_["problem"] or "")
    text = env.wait_file(report, timeout=30, what="streamer report")
    log(f"client sent {state_['sent']}, received {state_['received']}; server: {text.strip()}")
    check(text.startswith("OK"), f"server reports {text.strip()}")
    check_eq(int(text.split()[2]), state_["sent"], "records the server received")
    reap([pid], timeout=10, what="streamer")


def case_socket_kinds(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([PYTHON, env.write("workload.py", WORKLOAD), ready, report, env.dir], name="sockets")
    env.wait_file(ready, pid=pid)
    images = env.path("images")
    dump_and_restore(env, pid, images)
    inspect = env.cryo("inspect", images)
    import json
    kinds = {(s["family"], s["type"], s["state"]) for s in json.loads(inspect.stdout)["sockets"]}
    for want in [("unix", "stream", "LISTENING"), ("unix", "dgram", "BOUND"), ("unix", "seqpacket", "CONNECTED"),
                 ("inet", "dgram", "BOUND"), ("inet", "stream", "CONNECTED"), ("inet6", "stream", "LISTENING")]:
        check(want in kinds, f"inspect shows no {want} socket: {kinds}")
    env.trigger_and_report(pid, report)


def case_refused_without_flag(env):
    pid, port = start_server(env, 0)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/")
    c.getresponse().read()
    result = env.dump(pid, env.path("images"), expect=1)
    check("--tcp-established" in result.stderr and f"127.0.0.1:{port}" in result.stderr,
          f"the error names the connection and the flag: {result.stderr!r}")
    check(state(pid) not in (None, "T", "t", "Z"), f"the server is in state {state(pid)} after the refused dump")
    check_no_lock("after a refused dump")
    c.request("GET", "/")
    check_eq(c.getresponse().status, 200, "the server still serves its connection")


def case_leave_running_unlocks(env):
    pid, port = start_server(env, 0)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/")
    c.getresponse().read()
    env.dump(pid, env.path("images"), "--tcp-established", "-R")
    check_no_lock("after dump -R")
    c.request("GET", "/")
    check_eq(c.getresponse().status, 200, "the connection still works after dump -R")


def case_failed_restore(env):
    """A restore that fails (the server's port is taken) kills what it made, leaves
    the image untouched and keeps the network lock, so that the image stays
    restorable with its connection: once the port is free again, a second restore
    brings the server back and the waiting client gets its whole answer."""
    pid, port, proc, out, images = dump_mid_request(env, 10)
    before = hash_dir(images)
    # Somebody else takes the server's port: the restore must fail cleanly.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    result, _ = env.restore(images, "--tcp-established", expect=1)
    check("bind" in result.stderr or "Address already in use" in result.stderr, f"restore error: {result.stderr!r}")
    check("network-unlock" in result.stderr, f"the error does not say the lock stays: {result.stderr!r}")
    check(not exists(pid) or state(pid) == "Z", f"pid {pid} exists after a failed restore")
    check(lock_tables(), "the network lock went with a failed restore (its connection is lost)")
    check_eq(hash_dir(images), before, "image directory after a failed restore")
    check(proc.poll() is None, "the client gave up during the failed restore")
    blocker.close()
    env.restore(images, "--tcp-established", "-d")
    check_curl(proc, out)
    check_no_lock("after the second restore")


def case_network_unlock(env):
    """`cryo network-unlock -D DIR` drops the lock an image's dump left (a checkpoint
    that will not be restored); `cryo check` lists a lock until then."""
    pid, port, proc, out, images = dump_mid_request(env, 10)
    tables = lock_tables()
    check(tables, "no network lock after the dump")
    names = set(re.findall(r"cryo-lock-[0-9-]+", "\n".join(tables)))
    listed = env.cryo("check").stdout
    check(names and all(n in listed for n in names), f"cryo check does not list the lock {names}: {listed!r}")
    env.cryo("network-unlock", "-D", images)
    check_no_lock("after cryo network-unlock")
    env.cryo("network-unlock", "-D", images)  # again: nothing to do, no error
    proc.kill()
    proc.wait()


def case_peer_credentials(env):
    from harness import snapshot
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([PYTHON, env.write("creds.py", CREDS), ready, report], name="creds")
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    env.dump(pid, env.path("images"))
    env.wait_dumped(tree)
    _, rpid = env.restore(env.path("images"))
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


EXT_CLIENT = r'''
# Connected to a unix listener outside the tree; after restore it talks again.
import os, signal, socket, sys
path, ready, report = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
open(ready, "w").write("READY pid=%d\n" % os.getpid())
while not triggered:
    signal.pause()
s.send(b"hello again")
s.settimeout(5)
answer = s.recv(100)
open(report, "w").write("OK\n" if answer == b"welcome back" else f"FAIL: got {answer!r}\n")
'''


def case_cross_process_credentials(env):
    from harness import snapshot
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([PYTHON, env.write("cross.py", CROSS), ready, report, env.path("named.sock")], name="cross")
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    env.dump(pid, env.path("images"))
    env.wait_dumped(tree)
    _, rpid = env.restore(env.path("images"))
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_external_unix_peer(env):
    path = env.path("outside.sock")
    outside = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    outside.bind(path)
    outside.listen(4)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([PYTHON, env.write("client.py", EXT_CLIENT), path, ready, report], name="client")
    env.wait_ready(ready, pid)
    first, _ = outside.accept()
    result = env.dump(pid, env.path("refused"), expect=1)
    check("--ext-unix-sk" in result.stderr and path in result.stderr, f"the refusal names the peer: {result.stderr!r}")
    check(state(pid) not in (None, "T", "t", "Z"), "the client runs on after the refused dump")
    images = env.path("images")
    env.dump(pid, images, "--ext-unix-sk")
    reap([pid], what="the dumped client")
    first.close()
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    outside.settimeout(10)
    again, _ = outside.accept()
    os.kill(pid, __import__("signal").SIGUSR1)
    again.settimeout(10)
    check_eq(again.recv(100), b"hello again", "what the restored client sends")
    again.send(b"welcome back")
    text = env.wait_file(report, timeout=10, what="client report")
    check(text.startswith("OK"), f"client reports {text.strip()}")
    reap([pid], what="the client")


NAMED_LISTENER = r"""
import os, signal, socket, sys
ready, report, progress = sys.argv[1:4]
path = os.path.join(os.path.dirname(ready), "named.sock")
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen()
done = []
signal.signal(signal.SIGUSR1, lambda *_: done.append(1))
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()}\n")
while not done:
    signal.pause()
client = socket.socket(socket.AF_UNIX)
client.connect(path)
conn, _ = listener.accept()
client.sendall(b"ping")
with open(report, "w") as f:
    f.write("OK\n" if conn.recv(4) == b"ping" else "FAIL: the listener lost its name\n")
"""


def case_name_taken(env):
    """A unix name that a live socket holds by restore time is not taken from it:
    the restore is refused and the live socket keeps its name; once it is gone,
    the restore binds the name again."""
    pid, _, report, _ = env.start_python(NAMED_LISTENER, "named_listener")
    path = env.path("named.sock")
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    os.unlink(path)  # the dumped socket's file; someone else binds the name meanwhile
    squatter = socket.socket(socket.AF_UNIX)
    squatter.bind(path)
    squatter.listen()
    result, _ = env.restore(images, expect=1)
    check("in use" in result.stderr and path in result.stderr, f"the refusal does not say so: {result.stderr.strip()!r}")
    check(not exists(pid), f"pid {pid} is left after the refused restore")
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(path)  # the live socket still answers on its name
    squatter.close()
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def md5_key(key):
    """struct tcp_md5sig for the peer 127.0.0.1 (setsockopt TCP_MD5SIG)."""
    addr = struct.pack("=H2s4s120x", socket.AF_INET, b"", socket.inet_aton("127.0.0.1"))
    return addr + struct.pack("=BBHI80s", 0, 0, len(key), 0, key)


MD5_ECHO = r'''
import socket, struct, sys
TCP_MD5SIG = 14
key = struct.pack("=H2s4s120x", socket.AF_INET, b"", socket.inet_aton("127.0.0.1")) + \
    struct.pack("=BBHI80s", 0, 0, 6, 0, b"secret")
srv = socket.socket()
srv.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, key)  # accepted connections take it
srv.bind(("127.0.0.1", 0))
srv.listen()
open(sys.argv[1], "w").write(f"READY port={srv.getsockname()[1]}\n")
conn, _ = srv.accept()
while True:
    data = conn.recv(100)
    if not data:
        break
    conn.sendall(data.upper())
'''


def case_md5_signatures(env):
    """A connection signed with TCP MD5 keys (RFC 2385, as BGP speakers use them: no
    getsockopt reads them back, sock_diag shows them) comes back with its key: its
    peer outside the tree, which drops unsigned segments, still gets its answers."""
    ready = env.path("ready")
    pid = env.spawn([PYTHON, "-c", MD5_ECHO, ready], name="md5-echo")
    info = env.wait_ready(ready, pid)
    client = socket.socket()
    client.setsockopt(socket.IPPROTO_TCP, 14, md5_key(b"secret"))  # TCP_MD5SIG
    client.settimeout(10)
    client.connect(("127.0.0.1", info["port"]))
    client.sendall(b"before")
    check_eq(client.recv(100), b"BEFORE", "the answer before the dump")
    dump_and_restore(env, pid, env.path("images"))
    client.sendall(b"after")
    try:
        answer = client.recv(100)
    except socket.timeout:
        answer = None
    check_eq(answer, b"AFTER", "the answer after the restore (none: the restored end sends no signature)")
    client.close()
    reap([pid], what="the echo server once its client left")


CASES = {
    "web_demo": case_web_demo,
    "web_demo_iptables": case_web_demo_iptables,
    "web_demo_foreground": case_web_demo_foreground,
    "web_demo_twice": case_web_demo_twice,
    "keepalive_100": case_keepalive_100,
    "in_flight": case_in_flight,
    "socket_kinds": case_socket_kinds,
    "refused_without_flag": case_refused_without_flag,
    "leave_running_unlocks": case_leave_running_unlocks,
    "network_unlock": case_network_unlock,
    "failed_restore": case_failed_restore,
    "peer_credentials": case_peer_credentials,
    "external_unix_peer": case_external_unix_peer,
    "cross_process_credentials": case_cross_process_credentials,
    "name_taken": case_name_taken,
    "md5_signatures": case_md5_signatures,
}

if __name__ == "__main__":
    run(CASES)
