#!/usr/bin/env python3
"""Sockets in flight (SCM_RIGHTS, workloads/inflight.c): sockets sent over a unix socket,
not yet received, whose sender closed its copy, so that only the message holds them. The
dump saves each like a socket a process holds (its queue, its peer, the files in flight
it carries in turn) and the restore puts it back in its message; the receiver gets it
after the restore and it works: the bytes queued in it arrive and its peer answers. A
socket in flight in its own queue comes back as itself. Refused, with the pid and fd of
the socket the dump reached it from, the tree running on: sockets nested deeper than the
dump goes, and a socket whose peer only a queue outside the tree holds."""
import array
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, run, snapshot, state  # noqa: E402

MAX_DEPTH = 16  # files_dump.cpp, kMaxInFlightDepth


def start(env, mode, *extra):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("inflight"), mode, ready, report, env.dir, *extra], name=mode)
    info = env.wait_ready(ready, pid)
    return pid, info, report


def round_trip(env, pid, report, *flags):
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, *flags)
    try:
        env.wait_dumped(tree)
        _, rpid = env.restore(images, *flags)
    finally:
        # A restore that failed keeps the lock of the image's TCP connections: drop it.
        env.cryo("network-unlock", "-D", images, expect=None)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def refused(env, pid, info, report, *wanted):
    result = env.dump(pid, env.path("refused"), expect=1)
    named = f"pid {pid} fd {info['object_fd']}"
    check(named in result.stderr and all(w in result.stderr for w in wanted),
          f"the refusal names {named} and says {wanted}: {result.stderr.strip()!r}")
    check(state(pid) not in (None, "T", "t", "Z"), "the tree runs on after the refused dump")
    env.trigger_and_report(pid, report)


def case_handover(env):
    """The root sends its child one end of a socketpair, a TCP connection and a unix client
    (each with bytes queued in it), a listening unix socket and a seqpacket socket whose
    queue carries another socket with bytes queued, closing its copies. After the restore
    the child receives all five, reads the bytes and answers through each; the root reads
    the answers at the other ends and connects to the listener the child received."""
    pid, _, report = start(env, "handover")
    round_trip(env, pid, report, "--tcp-established")


def case_handover_leave_running(env):
    """The same handover dumped with --leave-running: the tree runs on untouched (the TCP
    connection in flight out of repair mode and unlocked, every socket still in its
    message, its queue unread)."""
    pid, _, report = start(env, "handover")
    env.dump(pid, env.path("images"), "--tcp-established", "--leave-running")
    check(state(pid) not in (None, "T", "t", "Z"), "the tree runs on after --leave-running")
    env.trigger_and_report(pid, report)


def case_cycles(env):
    """A socket in flight in its own queue while the process holds it, and one only the
    queues hold (its own and its peer's): each comes back as itself (the same inode as the
    socket received or held) and still carries bytes."""
    pid, _, report = start(env, "cycles")
    round_trip(env, pid, report)


def case_deep(env):
    """Sockets in flight one in another's queue, as deep as the dump goes: all of them come
    back, each in its message."""
    pid, _, report = start(env, "deep", str(MAX_DEPTH))
    round_trip(env, pid, report)


def case_too_deep(env):
    """One level deeper is refused, naming the socket the chain starts from, and the tree
    runs on with every level still there."""
    pid, info, report = start(env, "deep", str(MAX_DEPTH + 1))
    refused(env, pid, info, report, f"nested more than {MAX_DEPTH} deep")


def case_outside(env):
    """A socket whose peer is in flight in the queue of a socket this test holds (outside the
    tree), which no process holds: refused, naming the pid and fd of the socket left in the
    tree; the tree runs on, and the peer, received here, gets what the tree sends."""
    path = env.path("outside.sock")
    outside = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        outside.bind(path)
        pid, info, report = start(env, "outside", path)
        refused(env, pid, info, report, "which no process holds", "in flight (SCM_RIGHTS)")
        outside.settimeout(5)
        msg, ancdata, _, _ = outside.recvmsg(64, socket.CMSG_SPACE(4))
        fds = array.array("i")
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % 4])
        check(msg == b"outside" and len(fds) == 1, f"the message outside the tree: {msg!r} with {len(fds)} fds")
        with socket.socket(fileno=fds[0]) as peer:
            peer.settimeout(5)
            check_eq(peer.recv(64), b"still connected", "what the tree sent to the peer in flight")
    finally:
        outside.close()


CASES = {
    "handover": case_handover,
    "handover_leave_running": case_handover_leave_running,
    "cycles": case_cycles,
    "deep": case_deep,
    "too_deep": case_too_deep,
    "outside": case_outside,
}

if __name__ == "__main__":
    run(CASES)
