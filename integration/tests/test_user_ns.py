#!/usr/bin/env python3
"""Process mode, a tree in a user namespace of its own.

- nested: a child that made a user namespace of its own below the root refuses the dump,
  naming it; so does a root whose user namespace is nested in another one below cryo's.
  The tree runs on.
- foreign_owner: a tree whose network namespace is owned by another user namespace than
  its own refuses the dump, naming the namespace: a root in a user namespace of its own
  inside a network namespace the host made (`unshare --net unshare --user`), and a root in
  cryo's user namespace that joined a network namespace made in a child user namespace.
  The tree runs on.
- root_map: `unshare --user --map-root-user --pid --fork`, a root that is pid 1 and uid 0
  inside with a child that dropped capabilities (CAP_SYS_ADMIN from every set, CAP_NET_RAW,
  CAP_CHOWN inheritable) and, where the map has more than root, set other ids (uid 1000,
  gid 100, groups 5 and 6): after restore each checks from inside that its ids, groups,
  capabilities, /proc/self/uid_map, gid_map and setgroups and the owner of a file it made
  are what they were; the restored root is in a user namespace of its own, not cryo's;
  `cryo inspect` shows the maps; the image restores a second time beside the first.
- host_pidns: `unshare --user --map-root-user` without a pid namespace: a root with a thread
  and a child, in cryo's pid namespace. A restore as it is refuses before it makes anything,
  naming --new-pidns (only a pid namespace the tree's user namespace owns lets it give the
  child and the thread their pids); two restores with --new-pidns run at once, each under
  cryo's init in a pid namespace its own user namespace owns, the root, its thread and its
  child at their recorded pids inside, each checking its ids, maps and capabilities.
- shifted_map: the same with a map the test writes itself (0 100000 65536 for uids and
  gids, setgroups allowed) for a program that made its user and pid namespaces itself: the restored root is uid 100000 seen from the host and the
  maps read the same from the host."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, hash_dir, progress, read_text, reap, run, status_fields, wait_progress,  # noqa: E402
                     wait_until)

PROGRAM = r'''
import ctypes, os, signal, sys, time
ready, report, prog, shared, mode = sys.argv[1:6]
libc = ctypes.CDLL(None, use_errno=True)
if mode == "wait-map":
    # The user and pid namespaces are made here, with no exec after (an exec
    # with ids the namespace does not map would drop every capability). The
    # test writes the maps; the init of the pid namespace is our child.
    if libc.unshare(0x10000000 | 0x20000000) != 0:  # CLONE_NEWUSER | CLONE_NEWPID
        sys.exit(7)
    with open(os.path.join(shared, "unshared"), "w") as f:
        f.write("yes")
    while not open("/proc/self/gid_map").read().strip():
        time.sleep(0.01)
    init = os.fork()
    if init:
        os.waitpid(init, 0)
        sys.exit(0)
    os.setsid()
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))


def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        out[key] = value.split()
    return out


def view(path):
    s = status()
    st = os.stat(path)
    return {"uid_map": open("/proc/self/uid_map").read().split(),
            "gid_map": open("/proc/self/gid_map").read().split(),
            "setgroups": open("/proc/self/setgroups").read().strip(),
            "ids": (os.getresuid(), os.getresgid(), sorted(os.getgroups())),
            "caps": [s[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
            "file": (st.st_uid, st.st_gid)}


mine = os.path.join(shared, "made-by-root")
with open(mine, "w") as f:
    f.write("root")
if mode == "threaded":  # a thread that only sleeps: the restore must give it its tid
    import threading
    threading.Thread(target=lambda: time.sleep(10 ** 6), daemon=True).start()
r, w = os.pipe()
child = os.fork()
if child == 0:
    if mode == "nested":
        if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
            os._exit(4)
    else:
        # Fewer capabilities: no CAP_SYS_ADMIN (21) in any set, no CAP_NET_RAW (13),
        # CAP_CHOWN (0) inheritable.
        if libc.prctl(24, 21, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(5)
        full = int(status()["CapPrm"][0], 16)
        kept = full & ~((1 << 21) | (1 << 13))
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)(kept & 0xffffffff, kept & 0xffffffff, 1, kept >> 32, kept >> 32, 0)
        if libc.syscall(126, header, data) != 0:  # capset
            os._exit(6)
        if mode == "wait-map":  # more than root is mapped
            os.setgroups([5, 6])
            os.setresgid(100, 100, 100)
            os.setresuid(1000, 1000, 1000)
    theirs = os.path.join(shared, "made-by-child")
    with open(theirs, "w") as f:
        f.write("child")
    before = view(theirs)
    os.write(w, b"x")
    while True:
        time.sleep(0.05)
        if view(theirs) != before:
            os._exit(3)
os.read(r, 1)  # the child is settled
before = view(mine)
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()} child={child} uid={os.getuid()} caps={before['caps'][2]}\n")
n = 0
while not triggered:
    n += 1
    tmp = f"{prog}.{os.urandom(4).hex()}"  # two restored copies write it too
    with open(tmp, "w") as f:
        f.write(f"{n}\n")
    os.rename(tmp, prog)
    time.sleep(0.02)
problems = []
after = view(mine)
for key in before:
    if after[key] != before[key]:
        problems.append(f"{key}: {after[key]}, was {before[key]}")
pid, code = os.waitpid(child, os.WNOHANG)
if pid:
    problems.append(f"the child ended with {code} (its ids or maps changed)")
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
'''


def start(env, wrapper, mode="mapped", name="userns"):
    """Runs PROGRAM under `wrapper` (a command list that ends where the program's argv
    goes) in a directory every id may use; returns (the wrapper's pid, the program's pid,
    READY fields, the shared directory)."""
    os.chmod(env.dir, 0o755)  # its namespace's root is no root here
    shared = env.path("shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    script = env.path("userns.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    ready = os.path.join(shared, "ready")
    argv = [sys.executable, script, ready, os.path.join(shared, "report"), os.path.join(shared, "progress"),
            shared, mode]
    outer = env.spawn(wrapper + argv, name=name)
    if mode == "wait-map":
        env.wait_file(os.path.join(shared, "unshared"), pid=outer, what="the program's user namespace")
        for kind in ("uid_map", "gid_map"):  # the program waits for gid_map, the last
            with open(f"/proc/{outer}/{kind}", "w") as f:
                f.write("0 100000 65536\n")
    env.wait_file(ready, pid=outer, what="READY")
    info = {k: int(v) if v.lstrip("-").isdigit() else v
            for k, _, v in (t.partition("=") for t in read_text(ready).split()[1:])}
    if mode == "wait-map":  # the program's child is the root
        return outer, int(read_text(f"/proc/{outer}/task/{outer}/children").split()[0]), info, shared
    return outer, program_pid(outer), info, shared


def program_pid(outer):
    """The python below the wrappers (unshare, its fork, setsid exec in place)."""
    pid = outer
    for _ in range(5):
        if "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe")):
            return pid
        children = [int(x) for x in (read_text(f"/proc/{pid}/task/{pid}/children") or "").split()]
        check(len(children) == 1, f"pid {pid} has children {children}")
        pid = children[0]
    raise AssertionError("no python below " + str(outer))


def user_ns(pid):
    return os.readlink(f"/proc/{pid}/ns/user")


def clear(shared):
    for name in os.listdir(shared):
        os.unlink(os.path.join(shared, name))
    os.rmdir(shared)


def finish(env, host, shared):
    report = os.path.join(shared, "report")
    env.trigger_and_report(host, report)
    os.unlink(report)


def case_nested(env):
    outer, root, info, shared = start(env, ["unshare", "--user", "--map-root-user"], mode="nested")
    result = env.dump(root, env.path("images"), expect=1)
    # The child's pid here: the program shares cryo's pid namespace.
    check(f"pid {info['child']}" in result.stderr and "user namespace of its own inside the tree" in result.stderr,
          f"the refusal does not name pid {info['child']} and its user namespace: {result.stderr.strip()!r}")
    count = progress(os.path.join(shared, "progress"))[0]
    wait_progress(os.path.join(shared, "progress"), count + 3)
    finish(env, root, shared)
    reap([outer], what="unshare")

    # A root two user namespaces below cryo's.
    clear(shared)
    outer, root, info, shared = start(env, ["unshare", "--user", "--map-root-user", "unshare", "--user",
                                            "--map-root-user"], name="nested-root")
    result = env.dump(root, env.path("images2"), expect=1)
    check(f"pid {root}" in result.stderr and "nested in another" in result.stderr,
          f"the refusal does not name pid {root} in a nested user namespace: {result.stderr.strip()!r}")
    count = progress(os.path.join(shared, "progress"))[0]
    wait_progress(os.path.join(shared, "progress"), count + 3)
    finish(env, root, shared)
    reap([outer], what="unshare")


def case_foreign_owner(env):
    # A user namespace made inside a network namespace the host made.
    outer, root, info, shared = start(env, ["unshare", "--net", "unshare", "--user", "--map-root-user"])
    result = env.dump(root, env.path("images"), expect=1)
    check(f"pid {root}" in result.stderr and "net namespace is owned by another user namespace" in result.stderr,
          f"the refusal does not name the network namespace of pid {root}: {result.stderr.strip()!r}")
    count = progress(os.path.join(shared, "progress"))[0]
    wait_progress(os.path.join(shared, "progress"), count + 3)
    finish(env, root, shared)
    reap([outer], what="unshare")

    # cryo's user namespace in a network namespace a child user namespace made.
    holder = env.spawn(["unshare", "--user", "--map-root-user", "--net", "sleep", "1000"], name="netns-holder")
    wait_until(lambda: os.readlink(f"/proc/{holder}/ns/net") != os.readlink("/proc/self/ns/net") or None, 10,
               what="the holder's network namespace")
    clear(shared)
    outer, root, info, shared = start(env, ["nsenter", f"--net=/proc/{holder}/ns/net"], name="joined")
    check_eq(user_ns(root), user_ns(os.getpid()), "the joined program's user namespace")
    result = env.dump(root, env.path("images2"), expect=1)
    check(f"pid {root}" in result.stderr and "net namespace is owned by another user namespace" in result.stderr,
          f"the refusal does not name the network namespace of pid {root}: {result.stderr.strip()!r}")
    count = progress(os.path.join(shared, "progress"))[0]
    wait_progress(os.path.join(shared, "progress"), count + 3)
    finish(env, root, shared)
    reap([outer], what="nsenter")
    os.kill(holder, 9)
    reap([holder], what="the network namespace's holder")


def restored(env, images, want_uid):
    """Restores the image; checks the root is pid 1 and uid 0 of a user namespace of its own
    (want_uid seen from here)."""
    _, host = env.restore(images)
    check(host is not None, "no pid in the pid file")
    check(user_ns(host) != user_ns(os.getpid()), "the restored root shares cryo's user namespace")
    check_eq(int(status_fields(host, keys=("NSpid",))["NSpid"].split()[-1]), 1, "the restored root's pid inside")
    check_eq(int(status_fields(host, keys=("Uid",))["Uid"].split()[0]), want_uid, "the restored root's uid here")
    return host


def round_trip(env, wrapper, mode, want_map, want_uid):
    outer, root, info, shared = start(env, wrapper, mode=mode)
    check_eq((info["pid"], info["uid"]), (1, 0), "the program's pid and uid inside")
    check_eq(read_text(f"/proc/{root}/uid_map").split(), want_map, "the program's uid map")
    prog = os.path.join(shared, "progress")
    wait_progress(prog, 2)
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped root")
    shown = json.loads(env.cryo("inspect", images).stdout)["tree"].get("user_ns", {})
    check_eq([[e.get(k, 0) for k in ("inside", "outside", "count")] for e in shown.get("uid_map", [])],
             [[int(x) for x in want_map]], "the uid map inspect shows")
    first = restored(env, images, want_uid)
    check_eq(read_text(f"/proc/{first}/uid_map").split(), want_map, "the restored uid map, seen from here")
    check_eq(read_text(f"/proc/{first}/gid_map").split(), want_map, "the restored gid map, seen from here")
    count = progress(prog)[0]
    wait_progress(prog, count + 3)
    second = restored(env, images, want_uid)
    check(user_ns(second) != user_ns(first), "two restores share one user namespace")
    for host in (first, second):
        finish(env, host, shared)


def pid_ns(pid):
    return os.readlink(f"/proc/{pid}/ns/pid")


def case_host_pidns(env):
    outer, root, info, shared = start(env, ["unshare", "--user", "--map-root-user"], mode="threaded")
    check_eq(info["pid"], root, "the program's pid (cryo's pid namespace)")
    threads = sorted(int(t) for t in os.listdir(f"/proc/{root}/task"))
    check_eq(len(threads), 2, f"the threads of pid {root}")
    prog = os.path.join(shared, "progress")
    wait_progress(prog, 2)
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root, info["child"]], what="unshare and the dumped tree")
    before = hash_dir(images)
    result, _ = env.restore(images, expect=1)
    check("--new-pidns" in result.stderr and "3 processes and threads" in result.stderr,
          f"the refusal does not name --new-pidns: {result.stderr.strip()!r}")
    check_eq(hash_dir(images), before, "the image after the refused restore")
    for pid in (root, info["child"]):
        check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} exists after the refused restore")
    copies = []
    for _ in range(2):
        _, host = env.restore(images, "--new-pidns")
        check(host is not None, "no pid in the pid file")
        check(user_ns(host) != user_ns(os.getpid()), "the restored root shares cryo's user namespace")
        check(pid_ns(host) != pid_ns(os.getpid()), "the restored root shares cryo's pid namespace")
        check_eq(int(status_fields(host, keys=("NSpid",))["NSpid"].split()[-1]), root, "the restored root's pid inside")
        inside = sorted(int(status_fields(int(t), keys=("NSpid",))["NSpid"].split()[-1])
                        for t in os.listdir(f"/proc/{host}/task"))
        check_eq(inside, threads, "the restored threads' ids inside")
        kids = [int(x) for x in read_text(f"/proc/{host}/task/{host}/children").split()]
        check_eq([int(status_fields(k, keys=("NSpid",))["NSpid"].split()[-1]) for k in kids], [info["child"]],
                 "the restored child's pid inside")
        init = int(status_fields(host, keys=("PPid",))["PPid"])
        check_eq(user_ns(init), user_ns(host), "cryo's init's user namespace (the one owning the pid namespace)")
        copies.append((host, init))
        count = progress(prog)[0]
        wait_progress(prog, count + 3)
    check(user_ns(copies[0][0]) != user_ns(copies[1][0]), "two restores share one user namespace")
    for host, init in copies:
        finish(env, host, shared)
        reap([init], what="cryo's init once the root has ended")


def case_root_map(env):
    round_trip(env, ["unshare", "--user", "--map-root-user", "--pid", "--fork", "setsid"], "mapped", ["0", "0", "1"], 0)


def case_shifted_map(env):
    round_trip(env, [], "wait-map", ["0", "100000", "65536"], 100000)


if __name__ == "__main__":
    run({"nested": case_nested, "foreign_owner": case_foreign_owner, "host_pidns": case_host_pidns,
         "root_map": case_root_map,
         "shifted_map": case_shifted_map})
