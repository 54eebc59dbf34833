#!/usr/bin/env python3
"""Process mode, namespaces the tree owns.

- uts: a tree whose root has a UTS namespace of its own (hostname, domain name set inside)
  comes back in a new UTS namespace with the same names, its child too; the host's names
  are untouched.
- uts_nested: a child in a UTS namespace of its own below the root refuses the dump,
  naming it; the tree runs on.
- pid_ns: the root is pid 1 of a pid namespace of its own (`unshare --pid --fork`), with a
  child, a grandchild and a thread: after restore each has the pid it had inside (in a new
  namespace), the counter goes on, and a second restore of the same image runs beside the
  first.
- pid_ns_failed_restore: --new-pidns is refused for an image with a pid namespace of its own.
  A restore that fails inside the new namespace (its worker killed while memory is restored)
  or outside it (cryo killed once the processes exist) leaves no process behind; the image
  then restores.
- new_pidns: a tree of cryo's own pid namespace restored twice at once with --new-pidns:
  each copy runs under cryo's init (pid 1 of a fresh namespace) at its recorded pids, and the
  init ends when the root does.
- time_ns: a tree in a time namespace of its own (monotonic and boottime offsets of days):
  after a restore 1.5 s after the dump its CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from
  where they were (less than a second later, never back); the program saw no clock go back.
- net_ns: a tree in a network namespace of its own with lo up, a TCP listener and a UDP socket
  on 127.0.0.1: after restore it is in a new namespace with only lo, up, where the listener
  still accepts (a client of its own connects) and the UDP socket still receives; the host's
  namespace has no such port.
- net_ns_device: a device of a kind cryo does not make (a bridge) in the namespace refuses the
  dump, naming it; the tree runs on. (veth pairs and the rest: test_net_ns.py)
- pid_ns_not_init: a root that is pid 2 of its namespace refuses the dump, naming it; it runs on.
- pid_ns_outsider: a process that entered the namespace from outside (nsenter) refuses the
  dump, naming it; the tree runs on."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, descendants, progress, reap, read_text, run, snapshot,  # noqa: E402
                     status_fields, wait_progress, wait_until)

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


PID_PROGRAM = r'''
import os, signal, sys, threading, time
ready, report, prog = sys.argv[1:4]
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
r, w = os.pipe()
me = os.getpid()
child = os.fork()
if child == 0:
    grandchild = os.fork()
    if grandchild == 0:
        while True:
            time.sleep(0.05)
    os.write(w, f"{grandchild}\n".encode())
    while True:
        time.sleep(0.05)
        if os.getppid() != me or os.waitpid(grandchild, os.WNOHANG)[0] != 0:
            os._exit(3)
grandchild = int(os.read(r, 64))
tids = []
def worker():
    while True:
        tids.append(threading.get_native_id())
        del tids[:-1]
        time.sleep(0.02)
threading.Thread(target=worker, daemon=True).start()
while not tids:
    time.sleep(0.01)
thread = tids[-1]
with open(ready + ".tmp", "w") as f:
    f.write(f"READY pid={os.getpid()} child={child} grandchild={grandchild} thread={thread}\n")
os.rename(ready + ".tmp", ready)
count = 0
# One file open all along, rewritten in place with one write: two restored
# copies of one image write here, and a file opened for a moment (a temporary
# one renamed after) might be gone for the second restore.
progress_fd = os.open(prog, os.O_WRONLY | os.O_CREAT, 0o644)
while not triggered:
    count += 1
    os.pwrite(progress_fd, f"{count}".ljust(31).encode() + b"\n", 0)
    time.sleep(0.02)
problems = []
if os.getpid() != me:
    problems.append(f"pid {os.getpid()}, want {me}")
time.sleep(0.1)
if tids[-1] != thread:
    problems.append(f"thread id {tids[-1]}, want {thread}")
if os.waitpid(child, os.WNOHANG)[0] != 0:
    problems.append(f"child {child} ended")
for pid in (child, grandchild):
    try:
        os.kill(pid, 0)
    except OSError as e:
        problems.append(f"pid {pid}: {e}")
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
'''


def nspid(pid):
    """NSpid of a task: its pid here, then in each nested namespace."""
    return [int(x) for x in status_fields(pid, keys=("NSpid",)).get("NSpid", "").split()]


def start_pid_ns(env, wrap=None):
    """Starts PID_PROGRAM as pid 1 of a new pid namespace (or under wrap, a shell command
    around it); returns (unshare's pid, the program's pid here, READY fields)."""
    script = env.path("pidns.py")
    with open(script, "w") as f:
        f.write(PID_PROGRAM)
    ready = env.path("ready")
    command = [sys.executable, script, ready, env.path("report"), env.path("progress")]
    if wrap:
        command = ["sh", "-c", wrap.format(" ".join(command))]
    # setsid: the program leads a session of its own inside (unshare's child is no group leader).
    outer = env.spawn(["unshare", "--pid", "--fork", "setsid"] + command, name="unshare")
    info = env.wait_ready(ready, outer)
    children = [int(x) for x in read_text(f"/proc/{outer}/task/{outer}/children").split()]
    check_eq(len(children), 1, "children of unshare")
    root = children[0]
    if wrap:  # the program runs below the shell
        root = [int(x) for x in read_text(f"/proc/{root}/task/{root}/children").split()][0]
    return outer, root, info


def restored_root(env, images):
    _, host = env.restore(images)
    check(host is not None, "no pid in the pid file")
    check_eq(nspid(host)[-1], 1, f"pid of restored root {host} in its namespace")
    check(os.readlink(f"/proc/{host}/ns/pid") != os.readlink("/proc/self/ns/pid"),
          "the restored root shares cryo's pid namespace")
    return host


def proc_ppid(pid):
    return int(status_fields(pid, keys=("PPid",))["PPid"])


def case_pid_ns(env):
    outer, root, info = start_pid_ns(env)
    check_eq(info["pid"], 1, "the program's pid inside")
    prog = env.path("progress")
    wait_progress(prog, 2)
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped root")
    count = progress(prog)[0]
    shown = env.cryo("inspect", images).stdout
    check('"own_pid_ns":true' in shown.replace(" ", ""), "inspect does not show the pid namespace")

    first = restored_root(env, images)
    children = [int(x) for x in read_text(f"/proc/{first}/task/{first}/children").split()]
    check_eq([nspid(c)[-1] for c in children], [info["child"]], "the restored child's pid inside")
    grand = [int(x) for x in read_text(f"/proc/{children[0]}/task/{children[0]}/children").split()]
    check_eq([nspid(g)[-1] for g in grand], [info["grandchild"]], "the restored grandchild's pid inside")
    threads = sorted(int(t) for t in os.listdir(f"/proc/{first}/task"))
    check_eq(sorted(int(status_fields(first, t, keys=("NSpid",))["NSpid"].split()[-1]) for t in threads),
             sorted([1, info["thread"]]), "thread ids inside")
    wait_progress(prog, count + 3)

    # The same image again, beside the first: a namespace of its own, the same pids inside.
    second = restored_root(env, images)
    check(os.readlink(f"/proc/{second}/ns/pid") != os.readlink(f"/proc/{first}/ns/pid"),
          "two restores share one pid namespace")
    for host in (first, second):
        env.trigger_and_report(host, env.path("report"))
        os.unlink(env.path("report"))


def case_pid_ns_failed_restore(env):
    outer, root, info = start_pid_ns(env)
    prog = env.path("progress")
    wait_progress(prog, 2)
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped root")
    refused = env.cryo("restore", "-D", images, "-d", "--new-pidns", expect=1)
    check("--new-pidns" in refused.stderr, f"--new-pidns is not refused by name: {refused.stderr.strip()!r}")
    for point, want in (("restore.memory", 1), ("restore.stubs", -9)):
        before = set(descendants(os.getpid()))
        result = env.cryo("restore", "-D", images, "-d", expect=want, env_extra={"CRYO_FAILPOINT": point})
        if want == 1:
            check("pid namespace" in result.stderr, f"the failure does not say where: {result.stderr.strip()!r}")
        # What is left must die by itself (the killed cryo's stubs come to us, the subreaper).
        reap(sorted(set(descendants(os.getpid())) - before), timeout=10,
             what=f"processes left after the restore failed at {point}")
    host = restored_root(env, images)
    env.trigger_and_report(host, env.path("report"))


def case_new_pidns(env):
    script = env.path("pidns.py")
    with open(script, "w") as f:
        f.write(PID_PROGRAM)
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    root = env.spawn([sys.executable, script, ready, report, prog], name="tree")
    info = env.wait_ready(ready, root)
    check_eq(info["pid"], root, "the program's pid")
    wait_progress(prog, 2)
    before = snapshot(root)
    images = env.path("images")
    env.dump(root, images)
    env.wait_dumped(before)
    count = progress(prog)[0]

    copies = []
    for _ in range(2):
        _, host = env.restore(images, "--new-pidns")
        check(host is not None, "no pid in the pid file")
        check_eq(nspid(host)[1:], [root], f"pid of restored root {host} in its namespace")
        init = proc_ppid(host)
        check_eq(nspid(init)[1:], [1], "pid of the restored root's parent in its namespace")
        check_eq(read_text(f"/proc/{init}/comm").strip(), "cryo-init", "the namespace's init")
        children = [int(x) for x in read_text(f"/proc/{host}/task/{host}/children").split()]
        check_eq([nspid(c)[-1] for c in children], [info["child"]], "the restored child's pid inside")
        copies.append((host, init))
    check(os.readlink(f"/proc/{copies[0][0]}/ns/pid") != os.readlink(f"/proc/{copies[1][0]}/ns/pid"),
          "two restores share one pid namespace")
    wait_progress(prog, count + 3)
    for host, init in copies:
        env.trigger_and_report(host, report)
        os.unlink(report)
        reap([init], what="cryo's init once the root has ended")


TIME_PROGRAM = r'''
import os, signal, sys, time
ready, report, prog = sys.argv[1:4]
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()}\n")
last = (0, 0)
problems = []
while not triggered:
    now = (time.clock_gettime_ns(time.CLOCK_MONOTONIC), time.clock_gettime_ns(time.CLOCK_BOOTTIME))
    if now[0] < last[0] or now[1] < last[1]:
        problems.append(f"a clock went back: {last} -> {now}")
    last = now
    tmp = f"{prog}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{now[0]} {now[1]}\n")
    os.rename(tmp, prog)
    time.sleep(0.01)
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems[:3]) + "\n")
'''


def case_time_ns(env):
    script = env.path("time.py")
    with open(script, "w") as f:
        f.write(TIME_PROGRAM)
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    outer = env.spawn(["unshare", "--time", "--fork", "--monotonic", "864000", "--boottime", "1728000", "setsid",
                       sys.executable, script, ready, report, prog], name="unshare")
    env.wait_ready(ready, outer)
    root = int(read_text(f"/proc/{outer}/task/{outer}/children").split()[0])
    check(os.readlink(f"/proc/{root}/ns/time") != os.readlink("/proc/self/ns/time"), "no time namespace of its own")
    wait_progress(prog, 864000 * 10**9)
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped root")
    mono, boot = progress(prog)
    time.sleep(1.5)
    _, host = env.restore(images)
    check(os.readlink(f"/proc/{host}/ns/time") != os.readlink("/proc/self/ns/time"),
          "the restored root shares cryo's time namespace")
    after = wait_until(lambda: progress(prog)[0] != mono and progress(prog), 10, what="the clocks after the restore")
    check(0 <= after[0] - mono < 10**9, f"CLOCK_MONOTONIC went from {mono} to {after[0]} across the restore")
    check(0 <= after[1] - boot < 10**9, f"CLOCK_BOOTTIME went from {boot} to {after[1]} across the restore")
    check_eq(read_text("/proc/self/timens_offsets").split(), ["monotonic", "0", "0", "boottime", "0", "0"],
             "cryo's own time namespace offsets")
    env.trigger_and_report(host, report)


NET_PROGRAM = r'''
import os, signal, socket, sys, time
ready, report, prog = sys.argv[1:4]
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
devices = [n for _, n in socket.if_nameindex()]
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()} tcp={listener.getsockname()[1]} udp={udp.getsockname()[1]}\n")
i = 0
while not triggered:
    i += 1
    with open(prog + ".tmp", "w") as f:
        f.write(f"{i}\n")
    os.rename(prog + ".tmp", prog)
    time.sleep(0.02)
problems = []
try:
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    client.sendall(b"ping")
    if server.recv(4) != b"ping":
        problems.append("tcp bytes")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"datagram", udp.getsockname())
    udp.settimeout(5)
    if udp.recv(64) != b"datagram":
        problems.append("udp bytes")
    names = [n for _, n in socket.if_nameindex()]
    if names != devices:
        problems.append(f"devices {names}, were {devices}")
except OSError as e:
    problems.append(repr(e))
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
'''


def start_net(env, setup="ip link set lo up"):
    script = env.path("net.py")
    with open(script, "w") as f:
        f.write(NET_PROGRAM)
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn(["unshare", "--net", "sh", "-c", f"{setup} && exec {sys.executable} {script} {ready} {report} {prog}"],
                    name="unshare")
    info = env.wait_ready(ready, pid)
    check(os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"), "no network namespace of its own")
    return pid, info, report, prog


def case_net_ns(env):
    pid, info, report, prog = start_net(env)
    wait_progress(prog, 2)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    check(os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"),
          "the restored tree shares cryo's network namespace")
    devices = [line.split(":")[0].strip() for line in read_text(f"/proc/{pid}/net/dev").splitlines()[2:]]
    check_eq(devices, ["lo"], "devices of the restored namespace")
    probe = socket.socket()
    try:
        check(probe.connect_ex(("127.0.0.1", info["tcp"])) != 0, "the tree's port answers in the host's namespace")
    finally:
        probe.close()
    env.trigger_and_report(pid, report)


def case_net_ns_device(env):
    pid, info, report, prog = start_net(env, setup="ip link set lo up && ip link add cryo-br0 type bridge")
    result = env.dump(pid, env.path("images"), expect=1)
    check("cryo-br0 (bridge)" in result.stderr and f"pid {pid}" in result.stderr,
          f"the refusal does not name the device: {result.stderr.strip()!r}")
    count = progress(prog)[0]
    wait_progress(prog, count + 3)
    env.trigger_and_report(pid, report)


def case_pid_ns_not_init(env):
    outer, root, info = start_pid_ns(env, wrap="{} & wait")
    check_eq(nspid(root)[-1], info["pid"], "the program's pid inside")
    check(info["pid"] != 1, "the program is the namespace's init")
    result = env.dump(root, env.path("images"), expect=1)
    check(f"pid {root}" in result.stderr and "not its init" in result.stderr,
          f"the refusal does not name pid {root} as no init: {result.stderr.strip()!r}")
    count = progress(env.path("progress"))[0]
    wait_progress(env.path("progress"), count + 3)
    env.trigger_and_report(root, env.path("report"))


def case_pid_ns_outsider(env):
    outer, root, info = start_pid_ns(env)
    stray = env.spawn(["nsenter", "-t", str(root), "--pid", "--", "sleep", "1000"], name="nsenter")
    inner = wait_until(lambda: [int(x) for x in (read_text(f"/proc/{stray}/task/{stray}/children") or "").split()],
                       10, what="the process nsenter starts")[0]
    result = env.dump(root, env.path("images"), expect=1)
    check(f"pid {inner}" in result.stderr and "entered it from outside" in result.stderr,
          f"the refusal does not name pid {inner}: {result.stderr.strip()!r}")
    count = progress(env.path("progress"))[0]
    wait_progress(env.path("progress"), count + 3)
    env.trigger_and_report(root, env.path("report"))


if __name__ == "__main__":
    run({"uts": case_uts, "uts_nested": case_uts_nested, "pid_ns": case_pid_ns,
         "pid_ns_failed_restore": case_pid_ns_failed_restore, "new_pidns": case_new_pidns,
         "time_ns": case_time_ns, "net_ns": case_net_ns, "net_ns_device": case_net_ns_device,
         "pid_ns_not_init": case_pid_ns_not_init, "pid_ns_outsider": case_pid_ns_outsider})
