#!/usr/bin/env python3
"""Unix sockets in the states that are easy to get wrong (workloads/unixsk.c): names
relative to the directory they were bound in, connections a listener has not accepted
yet (clients in the tree that sent nothing yet; bytes sent refuse the dump), unconnected datagram and seqpacket sockets,
names unlinked, taken by another file or in a removed directory, bytes queued by a
peer that is gone, file descriptors in flight (SCM_RIGHTS: a file only the message
holds, with its offset, a pipe with its bytes, a file also open in the task, a memfd
in a stream, a socket with bytes queued in it) and credentials queued for a reader with
SO_PASSCRED. Each workload checks from inside, after restore, that
every socket is as it was and still works."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, run, snapshot, state  # noqa: E402


def start(env, mode, *extra):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("unixsk"), mode, ready, report, env.dir, *extra], name=mode)
    info = env.wait_ready(ready, pid)
    return pid, info, report


def round_trip(env, pid, report, *dump_flags):
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, *dump_flags)
    env.wait_dumped(tree)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def simple(mode):
    def case(env):
        pid, _, report = start(env, mode)
        round_trip(env, pid, report)
    return case


def case_pending_quiet(env):
    """Connections a listener has not accepted yet, their clients in the tree (one in
    another process) having sent nothing: the clients connect to the restored listener
    again, which accepts each once, and bytes go both ways."""
    pid, _, report = start(env, "pending", "quiet")
    round_trip(env, pid, report)


def case_pending_bytes(env):
    """A connection not yet accepted holding bytes its client sent cannot be saved (they
    can be read only by accepting it, which the tree would miss): the dump is refused,
    naming the listener's pid and fd, and the tree runs on with every connection."""
    pid, info, report = start(env, "pending")
    result = env.dump(pid, env.path("refused"), expect=1)
    check(f"pid {pid} fd {info['object_fd']}:" in result.stderr and "bytes its client sent" in result.stderr,
          f"the refusal names the listener: {result.stderr.strip()!r}")
    check(state(pid) not in (None, "T", "t", "Z"), "the tree runs on after the refused dump")
    env.trigger_and_report(pid, report)


def case_in_flight_socket(env):
    """A socket in flight (SCM_RIGHTS) with bytes queued in it comes back in its message:
    its reader gets it after the restore, reads the bytes and its peer hears it (more in
    test_sockets_in_flight.py)."""
    pid, _, report = start(env, "in_flight", "socket")
    round_trip(env, pid, report)


def case_passcred(env):
    """Messages queued for a reader with SO_PASSCRED carry their senders' pids, which
    cannot be given back: the dump is refused naming the reader's pid and fd, and the
    tree runs on (its reader still sees who sent what)."""
    pid, info, report = start(env, "passcred")
    result = env.dump(pid, env.path("refused"), expect=1)
    check(f"pid {pid} fd {info['object_fd']}:" in result.stderr and "SO_PASSCRED" in result.stderr,
          f"the refusal names the reader: {result.stderr.strip()!r}")
    check(state(pid) not in (None, "T", "t", "Z"), "the tree runs on after the refused dump")
    env.trigger_and_report(pid, report)


def case_passcred_drained(env):
    """SO_PASSCRED without queued messages: the flag comes back, and a message the
    restored child sends carries its pid."""
    pid, _, report = start(env, "passcred", "drained")
    round_trip(env, pid, report)


CASES = {
    "relative": simple("relative"),
    "pending_quiet": case_pending_quiet,
    "pending_bytes": case_pending_bytes,
    "dgram": simple("dgram"),
    "unlinked": simple("unlinked"),
    "gone_peer": simple("gone_peer"),
    "in_flight": simple("in_flight"),
    "in_flight_socket": case_in_flight_socket,
    "passcred": case_passcred,
    "passcred_drained": case_passcred_drained,
}

if __name__ == "__main__":
    run(CASES)
