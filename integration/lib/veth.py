"""Helpers for tests whose tree lives in a network namespace of its own with a
veth pair to the host (test_net_ns.py; usable by any test):

    with VethNet("web") as net:           # unique names and subnets, cleaned up at exit
        pid = env.spawn(["unshare", "--net", ...])   # the tree, in its own namespace
        net.attach(pid)                   # veth net.host <-> net.inner (inside pid's netns),
                                          # net.host_v4/net.inner_v4 (/24), net.host_v6/net.inner_v6 (/64), both up
        ns_run(pid, "ip", "route")        # a command in pid's network namespace
        ...dump, restore...               # cryo makes the pair again, the outer end as net.host
        net.configure_host()              # the host's end is the host's business: addresses again

At exit every link it named (and the bridge, if any) is removed, whatever happened."""
import os
import random
import subprocess


def ip(*args, check=True):
    """Runs `ip ARGS` in the test's (cryo's) network namespace; returns stdout."""
    r = subprocess.run(["ip", *[str(a) for a in args]], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(map(str, args))}: {r.stderr.strip()}")
    return r.stdout


def ns_run(pid, *cmd, check=True, input=None):
    """Runs a command in the network namespace of pid (nsenter -n); returns stdout."""
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", *[str(c) for c in cmd]], capture_output=True,
                       text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"in the netns of {pid}: {' '.join(map(str, cmd))}: {r.stderr.strip()}")
    return r.stdout


def link_exists(name):
    return os.path.exists(f"/sys/class/net/{name}")


class VethNet:
    """Names and addresses for one veth pair between the host and a tree."""

    def __init__(self, tag):
        n = random.randrange(1, 250)
        stem = f"cv{tag[:4]}{os.getpid() % 1000}{n}"[:12]
        self.host, self.inner = stem + "h", "eth" + str(n)
        self.bridge = stem + "br"
        self.other = stem + "o"  # another name for the outer end (--external veth[INNER]:OTHER)
        self.host_v4, self.inner_v4 = f"10.213.{n}.1", f"10.213.{n}.2"
        self.host_v6, self.inner_v6 = f"fd00:213:{n}::1", f"fd00:213:{n}::2"
        self.subnet = n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def cleanup(self):
        for name in (self.host, self.other, self.bridge):
            if link_exists(name):
                ip("link", "del", name, check=False)

    def attach(self, pid, mtu=None):
        """Makes the pair: net.host here, net.inner in pid's namespace, both addressed and up."""
        ip("link", "add", self.host, "type", "veth", "peer", "name", self.inner, "netns", pid)
        if mtu:
            ip("link", "set", self.host, "mtu", mtu)
            ns_run(pid, "ip", "link", "set", self.inner, "mtu", mtu)
        self.configure_host()
        ns_run(pid, "ip", "addr", "add", self.inner_v4 + "/24", "dev", self.inner)
        ns_run(pid, "ip", "-6", "addr", "add", self.inner_v6 + "/64", "dev", self.inner, "nodad")
        ns_run(pid, "ip", "link", "set", self.inner, "up")
        ns_run(pid, "ip", "link", "set", "lo", "up")

    def configure_host(self, name=None):
        """The host's end (or the device name given: a bridge) gets its addresses and is up."""
        name = name or self.host
        ip("addr", "replace", self.host_v4 + "/24", "dev", name)
        ip("-6", "addr", "replace", self.host_v6 + "/64", "dev", name, "nodad")
        ip("link", "set", name, "up")
