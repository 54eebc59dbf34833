#!/usr/bin/env python3
"""Process mode, a tree in a network namespace of its own with its configuration.

- veth: the tree's namespace has a veth pair to the host (v4 and v6 addresses on both ends; promisc,
  mtu 1400, a second address inside), a veth pair with both ends inside, permanent neighbours (v4, v6 router), extra routes (main table, table 100, v6), rules (v4, v6),
  changed sysctls, an nft table, iptables/ip6tables rules and arptables/ebtables rules (one with
  arptables' mangle target, which nft cannot print back), rules of the legacy (x_tables)
  iptables and ip6tables (a chain of its own in the mangle table); the program listens on TCP (v4
  address, v6 address) and UDP. After dump, kill and restore the namespace's links, addresses,
  routes, rules, sysctls, qdiscs, nft ruleset and iptables, arptables, ebtables and legacy iptables rules read as before (the nft ruleset holds
  each table once), the outer end is back in the host's namespace under its name, and the host
  reaches the listeners through the veth with fresh connections. inspect shows the links,
  addresses and routes.
- external_veth: restore with --external veth[INNER]:OTHER@BRIDGE: the outer end is OTHER, on
  the bridge the test made (which has the host's addresses); the dumped name is not made; the
  host reaches the listener through the bridge.
- empty_ns: dump with --empty-ns net saves no configuration (the veth is not refused); restore
  with --empty-ns net gives a namespace with lo alone, where the tree's sockets are bound to
  the addresses the caller gives it afterwards; the test attaches a veth to it and the host
  reaches the tree's listeners (bound to the veth's v4 and v6 addresses).
- join_ns: restore with --join-ns net:/run/netns/NAME puts the tree in the namespace the test
  prepared (with a veth to the host), where the host reaches its listener.
- external_ns: dump with --external net[INODE]:KEY saves nothing of the namespace; restore without
  a namespace for KEY fails naming it; with --inherit-fd fd[0]:KEY (fd 0 the prepared namespace)
  the tree is in it.
- outer_name_taken: a restore whose veth's outer name is taken on the host fails naming it and
  --external veth[...], leaves the taker alone and no device behind; with --external
  veth[INNER]:OTHER it restores.
- refused_kind: a bridge device in the namespace refuses the dump, naming it and its kind; the
  tree runs on.
- qdiscs: the veth has an htb root (default class) with a parent class and two leaf classes
  (rate, ceil, prio, burst), a tbf (rate, burst, latency) under one and a pfifo (limit) under
  the other; lo has a bfifo root: after the restore `tc qdisc show` and `tc class show` read
  as before, and the host reaches the tree through the shaped veth. (This kernel has no
  netem, fq_codel or dummy device.)
- refused_qdisc: a qdisc of a kind cryo does not save (ingress) refuses the dump, naming the
  device and the qdisc; the tree runs on, its qdisc in place. (The kernel's own qdiscs,
  noqueue on lo and the veths, are not refused: veth.)
- refused_filter: a filter (u32) on an htb refuses the dump, naming the device, the qdisc and
  the filter's kind; the tree runs on.
Every veth, bridge and named namespace is removed at the end, passing or failing."""
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, run, snapshot, wait_until  # noqa: E402
from veth import VethNet, ip, link_exists, ns_run  # noqa: E402

PROGRAM = r'''
import os, select, signal, socket, sys, time
ready, report, go, v4, v6 = sys.argv[1:6]
while not os.path.exists(go):
    time.sleep(0.02)
tcp = socket.socket()
tcp.bind((v4, 0))
tcp.listen(8)
tcp6 = socket.socket(socket.AF_INET6)
tcp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
tcp6.bind((v6, 0))
tcp6.listen(8)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((v4, 0))
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()} tcp={tcp.getsockname()[1]} tcp6={tcp6.getsockname()[1]} "
            f"udp={udp.getsockname()[1]}\n")
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
served = 0
while not triggered:
    r, _, _ = select.select([tcp, tcp6, udp], [], [], 0.1)
    for s in r:
        if s is udp:
            data, peer = udp.recvfrom(100)
            udp.sendto(b"pong " + data, peer)
        else:
            c, _ = s.accept()
            c.sendall(b"pong " + c.recv(100))
            c.close()
        served += 1
with open(report, "w") as f:
    f.write(f"OK served={served}\n")
'''


SYSCTLS = r'''
import json, os
out = {}
for top in ("core", "unix", "ipv4", "ipv6"):
    for d, _, files in os.walk("/proc/sys/net/" + top):
        for f in files:
            path = os.path.join(d, f)
            if os.stat(path).st_mode & 0o600 == 0o600 and f != "stable_secret":
                out[path[len("/proc/sys/net/"):]] = open(path).read().split()
print(json.dumps(out))
'''


def start(env, net, wildcard=False, setup=None):
    """The program in a network namespace of its own; setup(pid) runs before it binds."""
    script = env.path("net.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    ready, report, go = env.path("ready"), env.path("report"), env.path("go")
    v4, v6 = ("0.0.0.0", "::") if wildcard else (net.inner_v4, net.inner_v6)
    pid = env.spawn(["unshare", "--net", sys.executable, script, ready, report, go, v4, v6], name="unshare")
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        check(time.monotonic() < deadline, "the program has no network namespace of its own")
        time.sleep(0.01)
    if setup:
        setup(pid)
    open(go, "w").close()
    return pid, env.wait_ready(ready, pid), report


def exchange(addr, port, kind="tcp", family=socket.AF_INET):
    """A fresh connection (or datagram) to the tree: its answer."""
    s = socket.socket(family, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        if kind == "tcp":
            s.connect((addr, port))
            s.sendall(b"ping")
            return s.recv(100)
        s.sendto(b"ping", (addr, port))
        return s.recv(100)
    except OSError as e:
        return f"{e}".encode()
    finally:
        s.close()


def check_reaches(net, info, v6=True):
    check_eq(exchange(net.inner_v4, info["tcp"]), b"pong ping", "a TCP exchange with the tree over the veth")
    if v6:
        check_eq(exchange(net.inner_v6, info["tcp6"], family=socket.AF_INET6), b"pong ping",
                 "a TCP exchange over IPv6")
    check_eq(exchange(net.inner_v4, info["udp"], kind="udp"), b"pong ping", "a UDP exchange with the tree")


def full_setup(net):
    def setup(pid):
        net.attach(pid)
        h4, h6, inner = net.host_v4, net.host_v6, net.inner
        ns_run(pid, "sh", "-ec", f"""
            ip link set {inner} mtu 1400 promisc on
            ip link add cryoin0 type veth peer name cryoin1
            ip link set cryoin0 up
            ip link set cryoin1 mtu 9000 arp off up
            ip addr add 192.168.214.1/24 dev cryoin0
            ip neigh add 10.213.{net.subnet}.77 lladdr 02:00:00:00:00:77 dev {inner} nud permanent
            ip -6 neigh add fd00:213:{net.subnet}::77 lladdr 02:00:00:00:00:78 dev {inner} nud permanent router
            ip addr add 192.168.213.1/32 dev {inner}
            ip route add 10.214.0.0/16 via {h4} metric 50
            ip route add default via {h4} table 100
            ip -6 route add fd00:214::/64 via {h6} metric 70
            ip rule add fwmark 0x42 table 100 priority 1000
            ip -6 rule add from fd00:214::/64 table 100 priority 1001
            echo 1234 > /proc/sys/net/core/somaxconn
            echo '20000 30000' > /proc/sys/net/ipv4/ip_local_port_range
            echo 1 > /proc/sys/net/ipv4/ip_forward
            echo 33 > /proc/sys/net/ipv6/conf/{inner}/hop_limit
            echo 1 > /proc/sys/net/ipv6/conf/cryoin1/disable_ipv6
            echo 2 > /proc/sys/net/ipv4/conf/all/rp_filter
            echo 0 > /proc/sys/net/ipv4/conf/{inner}/rp_filter
            echo reno > /proc/sys/net/ipv4/tcp_congestion_control
            echo '4096 65536 1000000' > /proc/sys/net/ipv4/tcp_rmem
            echo 77 > /proc/sys/net/unix/max_dgram_qlen
            echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
            echo 0 > /proc/sys/net/ipv6/conf/{inner}/forwarding
            echo 1 > /proc/sys/net/ipv4/conf/default/arp_ignore
            nft add table inet cryotest
            nft add chain inet cryotest input '{{ type filter hook input priority 0; policy accept; }}'
            nft add rule inet cryotest input tcp dport 9 counter drop
            iptables -A INPUT -p tcp --dport 7 -j DROP
            ip6tables -A INPUT -p udp --dport 7 -j DROP
            arptables -A INPUT -s 10.9.9.9 -j DROP
            arptables -A OUTPUT -d 10.9.9.8 -j mangle --mangle-ip-s 10.9.9.7
            ebtables -A FORWARD --among-src 02:00:00:00:00:01 -j DROP
            ebtables -t nat -A POSTROUTING -p IPv4 -j ACCEPT
            iptables-legacy -A INPUT -p tcp --dport 6 -j DROP
            iptables-legacy -t mangle -N cryotest
            iptables-legacy -t mangle -A OUTPUT -p udp --dport 6 -j cryotest
            iptables-legacy -t mangle -A cryotest -j MARK --set-mark 5
            ip6tables-legacy -A OUTPUT -p tcp --dport 6 -j REJECT
        """)
    return setup


def net_state(pid):
    """What the namespace holds, as `ip`, /proc/sys, nft and iptables-save tell."""
    state = {"links": [], "addrs": [], "routes": []}
    for link in json.loads(ns_run(pid, "ip", "-j", "link")):
        flags = sorted(f for f in link["flags"] if f not in ("LOWER_UP", "M-DOWN"))
        state["links"].append((link["ifname"], flags, link["mtu"], link.get("address")))
        for a in link.get("addr_info", []):
            pass
    for link in json.loads(ns_run(pid, "ip", "-j", "addr")):
        for a in link.get("addr_info", []):
            state["addrs"].append((link["ifname"], a["local"], a["prefixlen"]))
    for family in ("-4", "-6"):
        for r in json.loads(ns_run(pid, "ip", family, "-j", "route", "show", "table", "all")):
            if r.get("protocol") == "kernel" or r.get("table") == "local":
                continue
            state["routes"].append((r["dst"], r.get("gateway"), r.get("dev"), r.get("table"), r.get("metric")))
    state["rules"] = ns_run(pid, "ip", "rule") + ns_run(pid, "ip", "-6", "rule")
    state["neighs"] = sorted(line for line in ns_run(pid, "ip", "neigh", "show", "nud", "permanent").splitlines())
    # Every sysctl it can read and write under these (stable_secret reads only once set).
    state["sysctls"] = json.loads(ns_run(pid, sys.executable, "-c", SYSCTLS))
    state["nft"] = re.sub(r"counter packets \d+ bytes \d+", "counter", ns_run(pid, "nft", "list", "ruleset"))
    state["iptables"] = [line for line in (ns_run(pid, "iptables-save") + ns_run(pid, "ip6tables-save")).splitlines()
                         if not line.startswith("#")]
    # The legacy iptables' tables (nft does not see them), without the chains' counters.
    state["legacy"] = [re.sub(r"\[\d+:\d+\]", "", line)
                       for line in (ns_run(pid, "iptables-legacy-save") + ns_run(pid, "ip6tables-legacy-save")).splitlines()
                       if not line.startswith("#")]
    state["arp_eb"] = [line for line in (ns_run(pid, "arptables-save") + ns_run(pid, "ebtables-save")).splitlines()
                       if not line.startswith("#")]
    state["qdiscs"] = sorted(ns_run(pid, "tc", "qdisc", "show").splitlines())
    for key in state:
        if isinstance(state[key], list):
            state[key] = sorted(state[key], key=repr)
    return state


def gone_before_restore(host_end):
    """The kernel tears a dead tree's namespace down, and with it the host's end of
    its veth, a little after the tree is gone. Waiting for that end to go before
    the restore makes a check of whether the restore made it again mean something."""
    wait_until(lambda: not link_exists(host_end), 10, what=f"the dumped tree's {host_end} to go with its namespace")


def case_veth(env):
    with VethNet("veth") as net:
        pid, info, report = start(env, net, setup=full_setup(net))
        check_reaches(net, info)
        state = net_state(pid)
        check(any(a[1] == net.inner_v6 for a in state["addrs"]), f"no v6 address: {state['addrs']}")
        check("fwmark 0x42" in state["rules"], f"no rule: {state['rules']}")
        check(len(state["neighs"]) == 2, f"no permanent neighbours: {state['neighs']}")
        check_eq(state["sysctls"]["core/somaxconn"], ["1234"], "somaxconn before")
        check("cryotest" in state["nft"] and "dport 7" in " ".join(state["iptables"]), "no firewall before")
        check("--mangle-ip-s" in " ".join(state["arp_eb"]) and "--among-src" in " ".join(state["arp_eb"]),
              f"no arptables or ebtables rules before: {state['arp_eb']}")
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images)
        env.wait_dumped(before)
        gone_before_restore(net.host)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        check(link_exists(net.host), f"the outer end {net.host} is not back in the host's namespace")
        after = net_state(pid)
        for key in state:
            env.soft(check_eq, after[key], state[key], f"the namespace's {key} after restore")
        env.soft(check_eq, after["nft"].count("table ip filter"), 1, "tables named filter in the nft ruleset")
        net.configure_host()  # the host's end is the host's business
        check_reaches(net, info)
        shown = env.cryo("inspect", images).stdout
        for word in (net.inner, "cryoin1", "192.168.213.1", net.inner_v4, net.inner_v6, "10.214.0.0", net.host):
            env.soft(check, word in shown, f"inspect does not show {word}")
        env.trigger_and_report(pid, report)


def case_external_veth(env):
    with VethNet("xveth") as net:
        pid, info, report = start(env, net, setup=lambda p: net.attach(p))
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images)
        env.wait_dumped(before)
        gone_before_restore(net.host)
        ip("link", "add", net.bridge, "type", "bridge")
        net.configure_host(net.bridge)
        _, rpid = env.restore(images, "--external", f"veth[{net.inner}]:{net.other}@{net.bridge}")
        check_eq(rpid, pid, "restored pid")
        check(not link_exists(net.host), f"the dumped name {net.host} was made despite --external")
        check(link_exists(net.other), f"the outer end {net.other} is missing")
        master = os.path.basename(os.readlink(f"/sys/class/net/{net.other}/master"))
        check_eq(master, net.bridge, "the outer end's bridge")
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


def case_empty_ns(env):
    with VethNet("empty") as net:
        pid, info, report = start(env, net, setup=lambda p: net.attach(p))
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images, "--empty-ns", "net")
        env.wait_dumped(before)
        gone_before_restore(net.host)
        _, rpid = env.restore(images, "--empty-ns", "net")
        check_eq(rpid, pid, "restored pid")
        check(os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"), "the tree shares cryo's netns")
        links = [link["ifname"] for link in json.loads(ns_run(pid, "ip", "-j", "link"))]
        check_eq(links, ["lo"], "the links of the restored namespace")
        for v in ("4", "6"):
            check_eq(ns_run(pid, "cat", f"/proc/sys/net/ipv{v}/ip_nonlocal_bind").strip(), "0",
                     f"net.ipv{v}.ip_nonlocal_bind once the sockets are made")
        check(not link_exists(net.host), "the veth was made again despite --empty-ns")
        net.attach(pid)  # the caller sets the namespace up
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


class NamedNs:
    """A namespace under /run/netns with a veth to the host, removed at exit."""

    def __init__(self, net):
        self.net, self.name = net, f"cryo-join-{os.getpid()}-{net.subnet}"
        self.path = f"/run/netns/{self.name}"

    def __enter__(self):
        ip("netns", "add", self.name)
        holder = subprocess.Popen(["ip", "netns", "exec", self.name, "sleep", "1000"])  # for ns_run's nsenter
        try:
            deadline = time.monotonic() + 10
            while os.readlink(f"/proc/{holder.pid}/ns/net") != f"net:[{os.stat(self.path).st_ino}]":
                check(time.monotonic() < deadline, "ip netns exec did not enter the namespace")
                time.sleep(0.01)
            self.net.attach(holder.pid)
        finally:
            holder.kill()
            holder.wait()
        return self

    def __exit__(self, *exc):
        ip("netns", "del", self.name, check=False)

    def inode(self):
        return os.stat(self.path).st_ino


def case_join_ns(env):
    with VethNet("join") as net, NamedNs(net) as named:
        pid, info, report = start(env, net, wildcard=True, setup=lambda p: ns_run(p, "ip", "link", "set", "lo", "up"))
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images)
        env.wait_dumped(before)
        _, rpid = env.restore(images, "--join-ns", f"net:{named.path}")
        check_eq(rpid, pid, "restored pid")
        check_eq(os.readlink(f"/proc/{pid}/ns/net"), f"net:[{named.inode()}]", "the restored tree's netns")
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


def case_external_ns(env):
    with VethNet("extns") as net, NamedNs(net) as named:
        pid, info, report = start(env, net, wildcard=True, setup=lambda p: ns_run(p, "ip", "link", "set", "lo", "up"))
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images, "--external", f"net[{inode}]:cryo-netns-key")
        env.wait_dumped(before)
        result, _ = env.restore(images, expect=1)
        check("cryo-netns-key" in result.stderr, f"the refusal does not name the key: {result.stderr.strip()!r}")
        with open(named.path) as ns:
            _, rpid = env.restore(images, "--inherit-fd", "fd[0]:cryo-netns-key", stdin=ns)
        check_eq(rpid, pid, "restored pid")
        check_eq(os.readlink(f"/proc/{pid}/ns/net"), f"net:[{named.inode()}]", "the restored tree's netns")
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


def case_outer_name_taken(env):
    with VethNet("taken") as net:
        pid, info, report = start(env, net, setup=lambda p: net.attach(p))
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images)
        env.wait_dumped(before)
        gone_before_restore(net.host)
        ip("link", "add", net.host, "type", "bridge")  # somebody took the outer end's name meanwhile
        # (only the names of this test: other tests may come and go meanwhile)
        ours = lambda: sorted(n for n in os.listdir("/sys/class/net") if n.startswith(net.host[:-1]) or n == net.inner)
        links_before = ours()
        result, _ = env.restore(images, expect=1)
        check(f"its peer {net.host} exists in cryo's network namespace" in result.stderr and
              f"--external veth[{net.inner}]:" in result.stderr,
              f"the failure does not name the taken name and the way out: {result.stderr.strip()!r}")
        check_eq(os.path.realpath(f"/sys/class/net/{net.host}/subsystem"), "/sys/class/net", "the taker is untouched")
        check(os.path.exists(f"/sys/class/net/{net.host}/bridge"), f"{net.host} is no longer the test's bridge")
        check_eq(ours(), links_before, "the host's devices of this test after the failed restore")
        _, rpid = env.restore(images, "--external", f"veth[{net.inner}]:{net.other}")
        check_eq(rpid, pid, "restored pid")
        ip("link", "del", net.host)
        net.configure_host(net.other)
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


def tc_state(pid, devs):
    shown = {}
    for dev in devs:
        qdiscs = ns_run(pid, "tc", "qdisc", "show", "dev", dev)
        shown[dev] = (re.sub(r"direct_packets_stat \d+ ", "", qdiscs), ns_run(pid, "tc", "class", "show", "dev", dev))
    return shown


def case_qdiscs(env):
    with VethNet("qdisc") as net:
        dev = net.inner

        def setup(pid):
            net.attach(pid)
            for cmd in (f"qdisc add dev {dev} root handle 1: htb default 20",
                        f"class add dev {dev} parent 1: classid 1:1 htb rate 10mbit ceil 10mbit",
                        f"class add dev {dev} parent 1:1 classid 1:10 htb rate 2mbit ceil 5mbit prio 1",
                        f"class add dev {dev} parent 1:1 classid 1:20 htb rate 1mbit ceil 10mbit burst 15k",
                        f"qdisc add dev {dev} parent 1:10 handle 10: tbf rate 3mbit burst 32kbit latency 400ms",
                        f"qdisc add dev {dev} parent 1:20 handle 20: pfifo limit 50",
                        "qdisc add dev lo root handle 3: bfifo limit 200000"):
                ns_run(pid, "tc", *cmd.split())
        pid, info, report = start(env, net, setup=setup)
        before = tc_state(pid, (dev, "lo"))
        for word in ("htb 1:", "tbf 10:", "pfifo 20:", "class htb 1:10", "class htb 1:20", "class htb 1:1 "):
            check(word in before[dev][0] + before[dev][1], f"no {word} before the dump: {before[dev]}")
        check("bfifo 3:" in before["lo"][0], f"no bfifo on lo before the dump: {before['lo']}")
        taken = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images)
        env.wait_dumped(taken)
        gone_before_restore(net.host)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        after = tc_state(pid, (dev, "lo"))
        for name in before:
            env.soft(check_eq, after[name], before[name], f"the qdiscs and classes of {name} after the restore")
        net.configure_host()
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


def case_refused_qdisc(env):
    with VethNet("qdisc") as net:
        def setup(pid):
            net.attach(pid)
            ns_run(pid, "tc", "qdisc", "add", "dev", net.inner, "ingress")
        pid, info, report = start(env, net, setup=setup)
        result = env.dump(pid, env.path("images"), expect=1)
        check(f"dev {net.inner}: qdisc ingress is not supported" in result.stderr and f"pid {pid}" in result.stderr,
              f"the refusal does not name the device and its qdisc: {result.stderr.strip()!r}")
        check("ingress" in ns_run(pid, "tc", "qdisc", "show", "dev", net.inner), "the qdisc is gone")
        check_reaches(net, info)  # the tree runs on, its namespace as it was
        env.trigger_and_report(pid, report)


def case_refused_filter(env):
    with VethNet("filter") as net:
        def setup(pid):
            net.attach(pid)
            for cmd in (f"qdisc add dev {net.inner} root handle 1: htb default 10",
                        f"class add dev {net.inner} parent 1: classid 1:10 htb rate 10mbit",
                        f"filter add dev {net.inner} parent 1: protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:10"):
                ns_run(pid, "tc", *cmd.split())
        pid, info, report = start(env, net, setup=setup)
        result = env.dump(pid, env.path("images"), expect=1)
        check(f"dev {net.inner} 1:0: filter u32 is not supported" in result.stderr,
              f"the refusal does not name the device, the qdisc and the filter: {result.stderr.strip()!r}")
        check_reaches(net, info)
        env.trigger_and_report(pid, report)


def case_refused_kind(env):
    with VethNet("kind") as net:
        def setup(pid):
            net.attach(pid)
            ns_run(pid, "ip", "link", "add", "cryobr0", "type", "bridge")
        pid, info, report = start(env, net, setup=setup)
        result = env.dump(pid, env.path("images"), expect=1)
        check("network device cryobr0 (bridge) is not supported" in result.stderr and f"pid {pid}" in result.stderr,
              f"the refusal does not name the device and its kind: {result.stderr.strip()!r}")
        check_reaches(net, info)  # the tree runs on, its namespace as it was
        env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"veth": case_veth, "external_veth": case_external_veth, "empty_ns": case_empty_ns, "join_ns": case_join_ns,
         "external_ns": case_external_ns, "outer_name_taken": case_outer_name_taken,
         "refused_kind": case_refused_kind, "refused_qdisc": case_refused_qdisc, "qdiscs": case_qdiscs, "refused_filter": case_refused_filter})
