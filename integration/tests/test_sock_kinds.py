#!/usr/bin/env python3
"""Socket kinds and options beyond TCP, UDP, unix and netlink (workload sockkinds.c):
ping, raw, UDP-lite and packet sockets come back and carry traffic; options (filters,
bound device, buffer lock, IP/IPv6 header fields, freebind, UDP shutdown and cork)
read the same; a packet socket's receive ring (TPACKET_V2 and V3, workload
packetring.c) comes back at its address with the frames not yet read, and the reader
walking it in order gets the frames sent after the restore where it waits for them; a
packet socket's transmit ring, a corked UDP datagram and a ping socket's unread echo
reply are refused, naming the pid and the fd, and the process runs on."""
import contextlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, log, read_text, run, snapshot, state  # noqa: E402

PING_RANGE = "/proc/sys/net/ipv4/ping_group_range"


@contextlib.contextmanager
def ping_allowed():
    """ICMP ping sockets need the creator's group in net.ipv4.ping_group_range
    (Debian's default, "1 0", allows no one); put back afterwards."""
    old = read_text(PING_RANGE).strip()
    with open(PING_RANGE, "w") as f:
        f.write("0 2147483647")
    try:
        yield
    finally:
        with open(PING_RANGE, "w") as f:
            f.write(old.replace("\t", " "))


def round_trip(env, case):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("sockkinds"), ready, report, case])
    env.wait_ready(ready, pid)
    env.round_trip(pid, snapshot(pid))
    env.trigger_and_report(pid, report)


def ring_round_trip(env, case):
    """The ring is mapped at the same address from the restored socket (the
    workload checks the rest)."""
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("packetring"), ready, report, case])
    info = env.wait_ready(ready, pid)
    env.round_trip(pid, snapshot(pid))
    maps = read_text(f"/proc/{pid}/maps")
    lines = [line for line in maps.splitlines() if line.startswith(info["ring"] + "-")]
    check(len(lines) == 1 and "socket:[" in lines[0] and " rw-s " in lines[0],
          f"the restored ring at {info['ring']} is mapped as {lines}")
    env.trigger_and_report(pid, report)


def refused(env, case, *phrases, workload="sockkinds"):
    """The dump fails naming the pid and the fd, and the process runs on."""
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload(workload), ready, report, case])
    info = env.wait_ready(ready, pid)
    result = env.dump(pid, env.path("images"), expect=None)
    check(result.returncode != 0, f"the dump of {case} succeeded; it must be refused")
    text = result.stderr
    who = f"pid {pid} fd {info['fd']}"
    check(who in text, f"the refusal does not name {who}: {text.strip()}")
    for phrase in phrases:
        check(phrase in text, f"the refusal does not say {phrase!r}: {text.strip()}")
    log(f"refused as expected: {text.strip()}")
    check(state(pid) not in ("Z", "X", "T", "t"), f"pid {pid} is in state {state(pid)} after the refused dump")
    env.trigger_and_report(pid, report)


def case_ping(env):
    with ping_allowed():
        round_trip(env, "ping")


def case_ping_unread(env):
    with ping_allowed():
        refused(env, "ping_unread", "ping socket has packets not yet read")


def case_raw(env):
    round_trip(env, "raw")


def case_udplite(env):
    round_trip(env, "udplite")


def case_packet(env):
    round_trip(env, "packet")


def case_options(env):
    round_trip(env, "options")


def case_packet_ring(env):
    ring_round_trip(env, "v2")


def case_packet_ring_v3(env):
    ring_round_trip(env, "v3")


def case_packet_tx_ring(env):
    refused(env, "tx", "PACKET_TX_RING", workload="packetring")


def case_udp_corked(env):
    refused(env, "udp_corked", "UDP_CORK or MSG_MORE")


if __name__ == "__main__":
    run({"ping": case_ping, "raw": case_raw, "udplite": case_udplite, "packet": case_packet,
         "options": case_options, "ping_unread": case_ping_unread, "packet_ring": case_packet_ring, "packet_ring_v3": case_packet_ring_v3,
         "packet_tx_ring": case_packet_tx_ring, "udp_corked": case_udp_corked})
