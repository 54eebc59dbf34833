#!/usr/bin/env python3
"""Process mode, pid namespaces nested inside the tree (CRIU refuses them).

The tree's root starts `unshare --pid --fork` below it: unshare's child is the init of a
nested pid namespace (pid 1 there), and forks a child of its own (pid 2 there); each runs
a second thread. Every one of them publishes what it sees of itself (getpid, getppid, its
thread's id) and its NSpid, over and over.

- in_host: the tree shares cryo's pid namespace. After dump and restore every task has
  its pid at every level again (NSpid equal), sees the same getpid/getppid and thread ids,
  and unshare's namespace for children is its child's again.
- in_own: the same below a root that is pid 1 of a namespace of its own (three levels), and
  the image restored twice side by side.
- refused: a nested process in another process group than its own or its parent's (its
  parent, the nested init, made a group of its own after forking it) is refused by name;
  the tree runs on.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, descendants, read_text, reap, run, snapshot,  # noqa: E402
                     wait_until)

INNER = r'''
import os, sys, threading, time
out = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else ""
def nspid():
    for line in open("/proc/self/status"):
        if line.startswith("NSpid:"):
            return line.split()[1:]
def publish(name, tid):
    n = 0
    while True:
        n += 1
        text = f"{n} {os.getpid()} {os.getppid()} {tid[0]} {' '.join(nspid())}\n"
        with open(f"{out}/{name}.tmp", "w") as f:
            f.write(text)
        try:
            os.rename(f"{out}/{name}.tmp", f"{out}/{name}")
        except FileNotFoundError:
            pass  # a second copy restored from one image, dumped between the write and the rename
        time.sleep(0.03)
def run(name):
    tid = [0]
    ready = threading.Event()
    def worker():
        tid[0] = threading.get_native_id()
        ready.set()
        while True:
            time.sleep(1)
    threading.Thread(target=worker, daemon=True).start()
    ready.wait()
    publish(name, tid)
child = os.fork()
if child == 0:
    run("grandchild")
if mode == "own-group":  # the grandchild stays in the group they shared
    os.setpgid(0, 0)
run("init")
'''

OUTER = r'''
import os, signal, sys, time
ready, report, prog, inner, out, mode = sys.argv[1:7]
done = []
signal.signal(signal.SIGUSR1, lambda *_: done.append(1))
u = os.fork()
if u == 0:
    os.execvp("unshare", ["unshare", "--pid", "--fork", sys.executable, inner, out, mode])
while not (os.path.exists(f"{out}/init") and os.path.exists(f"{out}/grandchild")):
    time.sleep(0.02)
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()} unshare={u}\n")
while not done:
    time.sleep(0.05)
# The nested namespace's init takes its namespace with it; unshare then ends.
kids = open(f"/proc/{u}/task/{u}/children").read().split()
for k in kids:
    os.kill(int(k), signal.SIGKILL)
_, status = os.waitpid(u, 0)
with open(report, "w") as f:
    f.write("OK\n" if kids else "FAIL: unshare had no child\n")
'''


def start(env, own_ns=False, mode="-"):
    inner, outer = env.path("inner.py"), env.path("outer.py")
    with open(inner, "w") as f:
        f.write(INNER)
    with open(outer, "w") as f:
        f.write(OUTER)
    out = env.path("seen")
    os.makedirs(out)
    ready, report = env.path("ready"), env.path("report")
    argv = [sys.executable, outer, ready, report, env.path("progress"), inner, out, mode]
    if own_ns:
        argv = ["unshare", "--pid", "--fork", "setsid"] + argv
    first = env.spawn(argv, name="outer")
    env.wait_ready(ready, first)
    root = first
    if own_ns:  # unshare's child is the root
        root = wait_until(lambda: [int(x) for x in (read_text(f"/proc/{first}/task/{first}/children") or "").split()],
                          10, what="the root below unshare")[0]
    return first, root, out, report


def seen(out):
    """{name: (count, getpid, getppid, thread id, NSpid...)} as each nested process last wrote it."""
    found = {}
    for name in ("init", "grandchild"):
        text = read_text(os.path.join(out, name)) or ""
        found[name] = [int(x) for x in text.split()]
    return found


def fresh(out, after):
    """What they write once each count has gone beyond `after`'s."""
    return wait_until(lambda: (lambda s: s if all(s[n] and s[n][0] > after[n][0] + 2 for n in s) else None)(seen(out)),
                      15, what="the nested processes to go on")


def check_nested_state(before, after, root, host_pids=True):
    """host_pids: the tree shares cryo's namespace, so the pids seen here are the image's too."""
    skip = 0 if host_pids else 1
    for name in before:
        check_eq(after[name][1:4] + after[name][4 + skip:], before[name][1:4] + before[name][4 + skip:],
                 f"what the {name} of the nested namespace sees (getpid, getppid, thread id, NSpid)")
    check_eq(before["init"][1], 1, "the nested init's own pid")
    check_eq(before["grandchild"][1:3], [2, 1], "the grandchild's pid and parent inside")
    unshare = [p for p in descendants(root) if read_text(f"/proc/{p}/comm", "").strip() == "unshare"]
    check(unshare, "no unshare below the restored root")
    init = int(read_text(f"/proc/{unshare[0]}/task/{unshare[0]}/children").split()[0])
    check_eq(os.readlink(f"/proc/{unshare[0]}/ns/pid_for_children"), os.readlink(f"/proc/{init}/ns/pid"),
             "unshare's pid namespace for children")
    check(os.readlink(f"/proc/{init}/ns/pid") != os.readlink(f"/proc/{root}/ns/pid"), "the init is not nested")


def case_in_host(env):
    _, root, out, report = start(env)
    before = fresh(out, {"init": [0], "grandchild": [0]})
    tree = snapshot(root)
    images = env.path("images")
    env.dump(root, images)
    env.wait_dumped(tree)
    _, rpid = env.restore(images)
    check_eq(rpid, root, "restored root")
    after = fresh(out, seen(out))
    check_nested_state(before, after, root)
    env.trigger_and_report(root, report)


def case_in_own(env):
    first, root, out, report = start(env, own_ns=True)
    before = fresh(out, {"init": [0], "grandchild": [0]})
    images = env.path("images")
    env.dump(root, images)
    reap([first, root], what="unshare and the dumped root")
    for copy in range(2):
        _, rpid = env.restore(images)
        after = fresh(out, seen(out))
        check_nested_state(before, after, rpid, host_pids=False)
        check_eq(len(after["init"]) - 4, 3, "levels of the nested init's NSpid")
        roots = [rpid] if copy == 0 else roots + [rpid]
    for r in roots:
        os.kill(r, signal.SIGUSR1)
    for r in roots:
        reap([r], timeout=30, what="a restored root after its trigger")


def case_refused(env):
    _, root, out, report = start(env, mode="own-group")
    before = fresh(out, {"init": [0], "grandchild": [0]})
    result = env.dump(root, env.path("images"), expect=1)
    check("nested pid namespace" in result.stderr and "process group" in result.stderr,
          f"the refusal does not say why: {result.stderr.strip()!r}")
    fresh(out, before)
    env.trigger_and_report(root, report)


if __name__ == "__main__":
    run({"in_host": case_in_host, "in_own": case_in_own, "refused": case_refused})
