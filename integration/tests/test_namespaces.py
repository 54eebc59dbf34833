#!/usr/bin/env python3
"""Process mode, namespaces the tree owns.

- uts: a tree whose root has a UTS namespace of its own (hostname, domain name set inside)
  comes back in a new UTS namespace with the same names, its child too; the host's names
  are untouched.
- uts_nested: a child in a UTS namespace of its own below the root refuses the dump,
  naming it; the tree runs on."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, run, snapshot  # noqa: E402

PROGRAM = r'''
import ctypes, os, signal, socket, sys, time
ready, report, _ = sys.argv[1:4]
want_host, want_domain, nested = sys.argv[4], sys.argv[5], sys.argv[6] == "nested"
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
r, w = os.pipe()
child = os.fork()
if child == 0:
    if nested and ctypes.CDLL(None, use_errno=True).unshare(0x04000000) != 0:  # CLONE_NEWUTS
        os._exit(4)
    os.write(w, b"x")
    while True:
        time.sleep(0.05)
        u = os.uname()
        if (u.nodename, open("/proc/sys/kernel/domainname").read().strip()) != (want_host, want_domain):
            os._exit(3)
os.read(r, 1)  # the child is settled
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()} child={child}\n")
while not triggered:
    time.sleep(0.02)
problems = []
names = (socket.gethostname(), open("/proc/sys/kernel/domainname").read().strip())
if names != (want_host, want_domain):
    problems.append(f"names {names}, want {(want_host, want_domain)}")
pid, status = os.waitpid(child, os.WNOHANG)
if pid:
    problems.append(f"the child ended with {status}")
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
'''


def start(env, nested=False):
    script = env.path("uts.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    ready, report = env.path("ready"), env.path("report")
    # unshare without --fork: the program itself is the root, in its own namespace.
    inner = f"hostname cryo-uts-test && domainname cryo.example && exec {sys.executable} {script} " \
            f"{ready} {report} - cryo-uts-test cryo.example {'nested' if nested else 'plain'}"
    pid = env.spawn(["unshare", "--uts", "sh", "-c", inner])
    info = env.wait_ready(ready, pid)
    return pid, info, report


def uts_of(pid):
    return os.readlink(f"/proc/{pid}/ns/uts")


def case_uts(env):
    host = socket.gethostname()
    pid, info, report = start(env)
    check(uts_of(pid) != uts_of(os.getpid()), "the workload is not in a uts namespace of its own")
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    check(uts_of(pid) != uts_of(os.getpid()), "the restored root shares cryo's uts namespace")
    check_eq(uts_of(info["child"]), uts_of(pid), "the restored child's uts namespace")
    check_eq(socket.gethostname(), host, "the host's name after the restore")
    tree = env.cryo("inspect", images).stdout
    check("cryo-uts-test" in tree and "cryo.example" in tree, "inspect does not show the uts namespace")
    env.trigger_and_report(pid, report)


def case_uts_nested(env):
    pid, info, report = start(env, nested=True)
    images = env.path("images")
    result = env.dump(pid, images, expect=1)
    check(f"pid {info['child']}" in result.stderr and "uts" in result.stderr,
          f"the refusal does not name pid {info['child']} and its uts namespace: {result.stderr.strip()!r}")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"uts": case_uts, "uts_nested": case_uts_nested})
