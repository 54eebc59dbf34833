#!/usr/bin/env python3
"""TCP sockets outside LISTEN and ESTABLISHED: each half-closed state (CLOSE_WAIT,
FIN_WAIT2, FIN_WAIT1, CLOSING, LAST_ACK) and SYN_SENT is dumped with
--tcp-established and restored, and a real peer outside the tree (this test) and
the program itself check that the connection goes on as it would have: the bytes
queued either way arrive, each end sees the other's end of stream where it should,
and the program still sees its recorded state. Also: unconnected sockets,
--tcp-close on either side, --skip-in-flight, and listeners restored beside the
connections accepted from them (SO_REUSEPORT, IPv4-mapped IPv6, peers in the tree)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, free_port, log, read_text, reap, run  # noqa: E402

PYTHON = "/usr/bin/python3"

# The workload: builds one scenario's sockets, says READY (with what the test
# needs), waits for SIGUSR1, checks what it sees, reports OK or FAIL.
WORKLOAD = r'''
import errno, os, signal, socket, struct, sys, threading, time
scenario, ready, report, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 7: "CLOSE", 8: "CLOSE_WAIT",
          9: "LAST_ACK", 11: "CLOSING"}
problems = []
def ok(cond, what):
    if not cond:
        problems.append(what)
def tcp_state(s):
    return STATES.get(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0], "?")
def wait_state(s, want, timeout=10):
    deadline = time.time() + timeout
    while tcp_state(s) != want and time.time() < deadline:
        time.sleep(0.01)
    return tcp_state(s)
def recv_all(s, timeout=20):
    s.settimeout(timeout)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d
def pattern(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))
def write_pattern_stream(s):
    # Bytes i*7+3 mod 251 for stream offset i, whatever the chunk boundaries.
    s.setblocking(False)
    sent = 0
    while True:
        chunk = bytes(((sent + i) * 7 + 3) % 251 for i in range(65536))
        try:
            n = s.send(chunk)
        except BlockingIOError:
            time.sleep(0.1)
            try:
                n = s.send(chunk)
            except BlockingIOError:
                break
        sent += n
    s.setblocking(True)
    return sent
extra = ""
conn = None
if scenario in ("close_wait", "fin_wait2", "fin_wait1", "closing", "last_ack", "tcp_close", "established"):
    conn = socket.socket()
    if scenario in ("fin_wait1", "closing", "last_ack"):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # a few round trips to drain
    conn.connect(("127.0.0.1", port))
    conn.send(b"hello")
    if scenario == "close_wait":
        # The peer sent bytes and its FIN: both wait unread.
        ok(wait_state(conn, "CLOSE_WAIT") == "CLOSE_WAIT", "not in CLOSE_WAIT before the dump")
    elif scenario == "fin_wait2":
        conn.shutdown(socket.SHUT_WR)
        ok(wait_state(conn, "FIN_WAIT2") == "FIN_WAIT2", "not in FIN_WAIT2 before the dump")
    elif scenario == "fin_wait1":
        extra = " sent=%d" % write_pattern_stream(conn)
        conn.shutdown(socket.SHUT_WR)
        ok(wait_state(conn, "FIN_WAIT1") == "FIN_WAIT1", "not in FIN_WAIT1 before the dump")
    elif scenario == "closing":
        extra = " sent=%d" % write_pattern_stream(conn)
        conn.shutdown(socket.SHUT_WR)
        open(ready + ".half", "w").write("x")  # the peer now sends its FIN
        ok(wait_state(conn, "CLOSING") == "CLOSING", "not in CLOSING before the dump: %s" % tcp_state(conn))
    elif scenario == "last_ack":
        ok(wait_state(conn, "CLOSE_WAIT") == "CLOSE_WAIT", "not in CLOSE_WAIT before the dump")
        extra = " sent=%d" % write_pattern_stream(conn)
        conn.shutdown(socket.SHUT_WR)
        ok(wait_state(conn, "LAST_ACK") == "LAST_ACK", "not in LAST_ACK before the dump: %s" % tcp_state(conn))
    before = tcp_state(conn)
elif scenario == "syn_sent":
    conn = socket.socket()
    result = {}
    def connect():
        try:
            conn.connect(("127.0.0.1", port))
            result["ok"] = True
        except OSError as e:
            result["error"] = e
    t = threading.Thread(target=connect)
    t.start()
    ok(wait_state(conn, "SYN_SENT") == "SYN_SENT", "not in SYN_SENT before the dump")
    before = "SYN_SENT"
elif scenario == "unconnected":
    plain = socket.socket()
    bound = socket.socket(); bound.bind(("127.0.0.1", 0))
    bound6 = socket.socket(socket.AF_INET6); bound6.bind(("::1", 0))
    extra = " bound=%d" % bound.getsockname()[1]
    # Connected once, closed both ways (CLOSE): a read sees the end of the stream.
    lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
    closed = socket.create_connection(lst.getsockname()); a, _ = lst.accept(); lst.close()
    a.close(); ok(closed.recv(1) == b"", "the peer's FIN"); closed.shutdown(socket.SHUT_WR)
    ok(wait_state(closed, "CLOSE") == "CLOSE", "closed both ways: state %s" % tcp_state(closed))
elif scenario == "in_flight":
    listener = socket.socket(); listener.bind(("127.0.0.1", port)); listener.listen(8)
elif scenario == "reset_unread":
    lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
    reset = socket.create_connection(lst.getsockname()); a, _ = lst.accept(); lst.close()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); a.close()
    ok(wait_state(reset, "CLOSE") == "CLOSE", "reset: state %s" % tcp_state(reset))
elif scenario.startswith("accepted"):
    # A listener and connections accepted from it, from a peer outside the
    # tree (the test) and from a client inside.
    family = socket.AF_INET6 if scenario == "accepted_mapped" else socket.AF_INET
    listener = socket.socket(family)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if scenario == "accepted_reuseport":
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        second = socket.socket()
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", port))
    else:
        listener.bind(("0.0.0.0" if scenario == "accepted_any" else "127.0.0.1", port))
    listener.listen(8)
    if scenario == "accepted_reuseport":
        second.bind(("127.0.0.1", port)); second.listen(8)
    def accept_any():
        # With two listeners on the port (SO_REUSEPORT), either may have it.
        import select
        r, _, _ = select.select([listener] + ([second] if scenario == "accepted_reuseport" else []), [], [], 20)
        return r[0].accept()[0]
    open(ready + ".listening", "w").write("x")
    outside = accept_any()
    inner_client = socket.create_connection(("127.0.0.1", port))
    inner_server = accept_any()
    inner_client.send(b"in-tree")
    outside.send(b"to-outside")
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
open(ready, "w").write("READY pid=%d%s\n" % (os.getpid(), extra))
while not triggered:
    signal.pause()

if scenario in ("close_wait", "fin_wait2", "fin_wait1", "closing", "last_ack"):
    ok(tcp_state(conn) == before or scenario in ("fin_wait1", "closing", "last_ack"),
       "state %s after the restore, want %s" % (tcp_state(conn), before))
if scenario == "close_wait":
    ok(recv_all(conn) == b"from-peer", "the peer's bytes before its FIN")
    conn.send(b"answer after restore")
    conn.close()
elif scenario == "fin_wait2":
    try:
        conn.send(b"x")
        problems.append("a write after shutdown(SHUT_WR) worked")
    except BrokenPipeError:
        pass
    ok(recv_all(conn) == b"late data from the peer", "the peer's late bytes and its FIN")
elif scenario in ("fin_wait1", "closing", "last_ack"):
    got = recv_all(conn)
    want = b"" if scenario == "fin_wait1" else b"peer-said"
    if scenario == "fin_wait1":
        want = b"peer-closes"
    ok(got == want, "what the peer sent before its FIN: %r, want %r" % (got[:40], want))
    final = wait_state(conn, "CLOSE", 20)
    ok(final == "CLOSE", "the connection ends in %s, want CLOSE (our FIN acknowledged)" % final)
elif scenario == "syn_sent":
    t.join(30)
    ok(result.get("ok"), "connect after the restore: %r" % result)
    if result.get("ok"):
        conn.send(b"connected after restore")
        ok(recv_all(conn) == b"welcome", "the listener's answer")
elif scenario == "unconnected":
    lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
    plain.connect(lst.getsockname())
    a, _ = lst.accept(); plain.send(b"x"); ok(a.recv(1) == b"x", "an unbound socket connects after restore")
    ok(bound.getsockname()[1] == int(extra.split("=")[1]), "the bound socket's port %r" % (bound.getsockname(),))
    bound.listen(1)
    c = socket.create_connection(bound.getsockname()); ok(bound.accept() is not None, "the bound socket listens")
    ok(bound6.getsockname()[0] == "::1", "the bound IPv6 socket's address")
    try:
        ok(closed.recv(1) == b"", "a connection closed both ways reads the end of its stream")
    except OSError as e:
        problems.append("a read of a connection closed both ways: %s, want the end of the stream" % e)
elif scenario == "reset_unread":
    try:
        reset.recv(1)
        problems.append("the reset connection reads without its error")
    except ConnectionResetError:
        pass
elif scenario == "tcp_close":
    ok(conn.recv(100) == b"", "a read of a connection restored closed sees the end of the stream")
    try:
        conn.send(b"x")
        problems.append("a write to a connection restored closed worked")
    except BrokenPipeError:
        pass
elif scenario == "in_flight":
    listener.settimeout(20)
    late, _ = listener.accept()
    ok(recv_all(late) == b"late client", "the listener accepts after the restore")
elif scenario.startswith("accepted"):
    outside.settimeout(20); inner_server.settimeout(20)
    ok(inner_server.recv(100) == b"in-tree", "bytes queued between the in-tree ends")
    inner_server.send(b"back"); inner_client.settimeout(20)
    ok(inner_client.recv(100) == b"back", "the in-tree connection works")
    ok(outside.recv(100) == b"from-outside", "bytes from the peer outside")
    # Inherited from the listener; repair mode must not have cleared it.
    ok(outside.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0, "SO_REUSEADDR of the accepted connection")
    outside.send(b"ok-outside")
    ok(recv_all(accept_any()) == b"new", "a new connection to the restored listener")
open(report, "w").write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
sys.exit(1 if problems else 0)
'''




def lock_rules():
    out = ""
    for argv in (["nft", "list", "ruleset"], ["iptables", "-w", "-S"], ["ip6tables", "-w", "-S"]):
        out += subprocess.run(argv, capture_output=True, text=True).stdout
    return out


def lock_of(result):
    """The network lock a dump made (its log names it), or None."""
    m = re.search(r"network locked with \S+ (?:table|rules marked) (cryo-lock-[0-9-]+)", read_text(result.log_path, ""))
    return m.group(1) if m else None


def start(env, scenario, port):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([PYTHON, env.write("workload.py", WORKLOAD), scenario, ready, report, port], name=scenario)
    return pid, ready, report


def ready_fields(env, ready, pid):
    text = env.wait_file(ready, pid=pid, timeout=30)
    check(text.startswith("READY"), f"READY file holds {text!r}")
    return dict(f.split("=", 1) for f in text.split()[1:])


def dump_restore(env, pid, dump_flags=("--tcp-established",), restore_flags=("--tcp-established",)):
    images = env.path("images")
    lock = lock_of(env.dump(pid, images, *dump_flags))
    try:
        check(lock is None or lock in lock_rules(), f"the lock {lock} is not in place after the dump")
        reap([pid], what="the dumped workload")
        _, rpid = env.restore(images, *restore_flags)
        check_eq(rpid, pid, "restored pid")
        check(lock is None or lock not in lock_rules(), f"the lock {lock} is left after the restore")
    finally:
        if lock and lock in lock_rules():  # a failed restore keeps it: the test must not
            env.cryo("network-unlock", "-D", images, expect=None)
    return images


def finish(env, pid, report):
    env.trigger_and_report(pid, report, timeout=60)


def peer_listener(rcvbuf=None, backlog=1):
    port = free_port()
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    lst.bind(("127.0.0.1", port))
    lst.listen(backlog)
    return lst, port


def recv_exact(s, n, timeout=20):
    s.settimeout(timeout)
    out = b""
    while len(out) < n:
        d = s.recv(min(65536, n - len(out)))
        if not d:
            break
        out += d
    return out


def recv_to_eof(s, timeout=20):
    s.settimeout(timeout)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def pattern_stream(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


def case_close_wait(env):
    """The peer sent bytes and closed its side: the program can still write, the
    peer reads it; the program reads the bytes, then the end; closes; the peer
    sees the end of the stream."""
    lst, port = peer_listener()
    pid, ready, report = start(env, "close_wait", port)
    peer, _ = lst.accept()
    check_eq(recv_exact(peer, 5), b"hello", "the program's first bytes")
    peer.send(b"from-peer")
    peer.shutdown(socket.SHUT_WR)
    ready_fields(env, ready, pid)
    images = dump_restore(env, pid)
    states = [s.get("tcp", {}).get("state") for s in json.loads(env.cryo("inspect", images).stdout)["sockets"]]
    log(f"inspect: TCP states {states}")
    finish(env, pid, report)
    check_eq(recv_to_eof(peer), b"answer after restore", "what the peer reads after the restore, then the end")


def case_fin_wait2(env):
    """The program shut its side down and the peer acknowledged: the peer can
    still send, the program reads it, then the peer's end."""
    lst, port = peer_listener()
    pid, ready, report = start(env, "fin_wait2", port)
    peer, _ = lst.accept()
    check_eq(recv_to_eof(peer), b"hello", "the program's bytes, then its FIN")
    ready_fields(env, ready, pid)
    dump_restore(env, pid)
    os.kill(pid, signal.SIGUSR1)  # the program checks its state, then reads
    time.sleep(0.2)
    peer.send(b"late data from the peer")
    peer.close()
    text = env.wait_file(report, timeout=30)
    reap([pid], timeout=30, what="the workload")
    check(text.startswith("OK"), f"the program reports {text.strip()}")


def half_closed_with_backlog(env, scenario):
    """The peer does not read: the program's bytes and its FIN wait behind a
    zero window. After the restore the peer reads every byte, then the end."""
    lst, port = peer_listener(rcvbuf=4096)
    pid, ready, report = start(env, scenario, port)
    peer, _ = lst.accept()
    if scenario == "last_ack":
        peer.send(b"peer-said")
        peer.shutdown(socket.SHUT_WR)
    if scenario == "closing":
        env.wait_file(ready + ".half", pid=pid)
        peer.send(b"peer-said")
        peer.shutdown(socket.SHUT_WR)
    fields = ready_fields(env, ready, pid)
    sent = int(fields["sent"])
    dump_restore(env, pid)
    got = recv_to_eof(peer, timeout=30)
    check_eq(got[:5], b"hello", "the program's first bytes")
    body = got[5:]
    check_eq(len(body), sent, "bytes the peer reads after the restore")
    check(body == pattern_stream(sent), "the bytes the peer reads differ from those written")
    if scenario == "fin_wait1":
        peer.send(b"peer-closes")
        peer.close()
    finish(env, pid, report)


def case_fin_wait1(env):
    half_closed_with_backlog(env, "fin_wait1")


def case_closing(env):
    half_closed_with_backlog(env, "closing")


def case_last_ack(env):
    half_closed_with_backlog(env, "last_ack")


def case_syn_sent(env):
    """A connect() still waiting for an answer: the listener's queue is full, so
    its SYNs are dropped. After the restore the listener makes room; the
    program's connect() completes and the connection works."""
    lst, port = peer_listener(backlog=0)
    filler = socket.create_connection(("127.0.0.1", port))
    pid, ready, report = start(env, "syn_sent", port)
    ready_fields(env, ready, pid)
    dump_restore(env, pid)
    first, _ = lst.accept()  # the filler: room for the program's connection now
    os.kill(pid, signal.SIGUSR1)  #: the program joins its connect()
    lst.settimeout(30)
    conn, addr = lst.accept()
    check_eq(recv_exact(conn, 23), b"connected after restore", "the program's bytes")
    conn.send(b"welcome")
    conn.close()
    text = env.wait_file(report, timeout=30)
    reap([pid], timeout=30, what="the workload")
    check(text.startswith("OK"), f"the program reports {text.strip()}")
    first.close()
    filler.close()


def case_unconnected(env):
    """TCP sockets never connected, unbound and bound (IPv4, IPv6)."""
    pid, ready, report = start(env, "unconnected", 0)
    ready_fields(env, ready, pid)
    dump_restore(env, pid, (), ())
    finish(env, pid, report)


def case_reset_unread(env):
    """A connection reset by its peer whose error the process has not read yet: the
    dump is refused (the error could not be given back) naming it, and the tree runs on
    and still reads ECONNRESET."""
    pid, ready, report = start(env, "reset_unread", 0)
    ready_fields(env, ready, pid)
    result = env.dump(pid, env.path("images"), expect=1)
    check(f"pid {pid} fd " in result.stderr and "has not read yet" in result.stderr,
          f"the refusal names the socket: {result.stderr.strip()!r}")
    finish(env, pid, report)


def case_tcp_close_dump(env):
    """dump --tcp-close: no state saved and nothing locked; the connection comes
    back closed (the end of the stream on read, EPIPE on write) without any
    flag on restore; the peer's connection is gone (reset on its next write)."""
    lst, port = peer_listener()
    pid, ready, report = start(env, "tcp_close", port)
    peer, _ = lst.accept()
    peer.send(b"unread")
    ready_fields(env, ready, pid)
    images = env.path("images")
    check_eq(lock_of(env.dump(pid, images, "--tcp-close")), None, "the network lock of a --tcp-close dump")
    reap([pid], what="the dumped workload")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    finish(env, pid, report)


def case_tcp_close_restore(env):
    """restore --tcp-close of an image dumped with --tcp-established: the
    connection comes back closed and the dump's lock goes."""
    lst, port = peer_listener()
    pid, ready, report = start(env, "tcp_close", port)
    peer, _ = lst.accept()
    peer.send(b"unread")
    ready_fields(env, ready, pid)
    dump_restore(env, pid, ("--tcp-established",), ("--tcp-close",))
    finish(env, pid, report)


def case_skip_in_flight(env):
    """A connection from outside the tree waits in the listener's queue: the
    dump fails and names it, unless --skip-in-flight leaves it out; the
    restored listener accepts new connections."""
    port = free_port()
    pid, ready, report = start(env, "in_flight", port)
    ready_fields(env, ready, pid)
    waiting = socket.create_connection(("127.0.0.1", port))
    waiting.send(b"early")
    time.sleep(0.2)
    result = env.dump(pid, env.path("refused"), "--tcp-established", expect=1)
    check("--skip-in-flight" in result.stderr and f"pid {pid} fd" in result.stderr,
          f"the refusal names the socket and the option: {result.stderr.strip()!r}")
    dump_restore(env, pid, ("--tcp-established", "--skip-in-flight"))
    late = socket.create_connection(("127.0.0.1", port))
    late.send(b"late client")
    late.close()
    finish(env, pid, report)
    waiting.settimeout(10)
    try:
        waiting.send(b"more")
        got = waiting.recv(10)
        check_eq(got, b"", "the skipped connection after the restore")
    except ConnectionResetError:
        pass


def accepted(env, scenario, leave_running=False):
    port = free_port()
    pid, ready, report = start(env, scenario, port)
    env.wait_file(ready + ".listening", pid=pid)
    family = socket.AF_INET
    outside = socket.create_connection(("127.0.0.1", port))
    ready_fields(env, ready, pid)
    outside.send(b"from-outside")
    check_eq(recv_exact(outside, 10), b"to-outside", "bytes from the program")
    if leave_running:
        lock = lock_of(env.dump(pid, env.path("images"), "--tcp-established", "-R"))
        check(lock is not None and lock not in lock_rules(), f"the lock {lock} is left after dump -R")
    else:
        dump_restore(env, pid)
    new = socket.create_connection(("127.0.0.1", port), timeout=10)
    new.send(b"new")
    new.close()
    finish(env, pid, report)
    check_eq(recv_exact(outside, 10), b"ok-outside", "the program's answer after the restore")


def case_accepted(env):
    accepted(env, "accepted")


def case_accepted_leave_running(env):
    """dump -R: the connections leave repair mode as they were (SO_REUSEADDR too)."""
    accepted(env, "accepted", leave_running=True)


def case_accepted_any(env):
    accepted(env, "accepted_any")


def case_accepted_reuseport(env):
    accepted(env, "accepted_reuseport")


def case_accepted_mapped(env):
    accepted(env, "accepted_mapped")


CASES = {
    "close_wait": case_close_wait,
    "fin_wait2": case_fin_wait2,
    "fin_wait1": case_fin_wait1,
    "closing": case_closing,
    "last_ack": case_last_ack,
    "syn_sent": case_syn_sent,
    "unconnected": case_unconnected,
    "reset_unread": case_reset_unread,
    "tcp_close_dump": case_tcp_close_dump,
    "tcp_close_restore": case_tcp_close_restore,
    "skip_in_flight": case_skip_in_flight,
    "accepted": case_accepted,
    "accepted_leave_running": case_accepted_leave_running,
    "accepted_any": case_accepted_any,
    "accepted_reuseport": case_accepted_reuseport,
    "accepted_mapped": case_accepted_mapped,
}

if __name__ == "__main__":
    run(CASES)
