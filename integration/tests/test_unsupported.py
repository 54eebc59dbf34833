#!/usr/bin/env python3
"""A dump that meets an object cryo cannot checkpoint (an io_uring fd, a perf_event
fd) fails with exit 1 and a message naming the pid, the fd and the kind, and leaves
the tree running exactly as it was: same tasks, states, memory layout, fds. So does a
32-bit program, refused as it is frozen."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, hash_dir, log, maps, progress,  # noqa
                     read_text, run, snapshot, state, status_fields, wait_progress, wait_until)


def check_untouched(before, maps_before, fds_before, what):
    for pid, task in before.items():
        st = state(pid)
        check(st is not None and st not in ("T", "t", "Z", "X"), f"{what}: pid {pid} is in state {st}")
        tracer = status_fields(pid, keys=("TracerPid",)).get("TracerPid")
        check_eq(tracer, "0", f"{what}: TracerPid of {pid}")
    compare_snapshots(before, snapshot(min(before)), min(before))
    for pid in before:
        compare_maps(maps_before[pid], maps(pid), f"{what}: pid {pid}")
        check_eq(fd_table(pid), fds_before[pid], f"{what}: fd table of pid {pid}")


def refused(env, flag, kind_words, holder_key, fd_key):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "2", flag])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    maps_before = {p: maps(p) for p in before}
    fds_before = {p: fd_table(p) for p in before}
    holder = info[holder_key] if holder_key != "pid" else pid
    fd = info[fd_key]

    images = env.path("images")
    result = env.dump(pid, images, expect=1)
    message = result.stderr
    lower = message.lower()
    check(f"pid {holder}" in message, f"the error does not name pid {holder}: {message.strip()!r}")
    check(f"fd {fd}" in message, f"the error does not name fd {fd}: {message.strip()!r}")
    check(any(w in lower for w in kind_words), f"the error does not name the kind {kind_words}: {message.strip()!r}")
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a failed dump left an inventory.img")

    check_untouched(before, maps_before, fds_before, "right after the failed dump")
    now = progress(prog)
    for i in range(3):
        wait_progress(prog, now[i] + 3, index=i)
    time.sleep(0.2)
    check_untouched(before, maps_before, fds_before, "200 ms after the failed dump")
    log(f"counters {now} -> {progress(prog)}")
    env.trigger_and_report(pid, report)


def case_io_uring(env):
    refused(env, "--io-uring", ("io_uring", "io-uring"), "pid", "uring_fd")


def case_perf_event(env):
    refused(env, "--perf-child", ("perf_event", "perf event", "perf-event"), "child", "perf_fd")


def case_keeps_previous_image(env):
    """Periodic checkpoints into one directory: a refused dump must leave the previous,
    complete image there as it was (and restorable)."""
    images = env.path("images")
    a_ready, a_report, a_prog = env.path("a-ready"), env.path("a-report"), env.path("a-progress")
    a = env.spawn([env.workload("counter"), a_ready, a_report, a_prog, "--threads", "1", "--child"])
    env.wait_ready(a_ready, a)
    a_tree = snapshot(a)
    env.dump(a, images)
    env.wait_dumped(a_tree)
    good = hash_dir(images)

    b_ready, b_report, b_prog = env.path("b-ready"), env.path("b-report"), env.path("b-progress")
    b = env.spawn([env.workload("counter"), b_ready, b_report, b_prog, "--io-uring"])
    env.wait_ready(b_ready, b)
    env.dump(b, images, expect=1)
    after = hash_dir(images)
    changed = sorted(k for k in set(good) | set(after) if good.get(k) != after.get(k))
    env.soft(check, not changed, f"the refused dump changed the previous image: {changed}")
    env.trigger_and_report(b, b_report)
    _, rpid = env.restore(images)
    check_eq(rpid, a, "pid restored from the previous image")
    env.trigger_and_report(a, a_report)


MPTCP = r'''
import os, signal, socket, sys, time
ready, report, progress = sys.argv[1:4]
IPPROTO_MPTCP = 262
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
srv.bind(("127.0.0.1", 0))
srv.listen()
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
client.connect(srv.getsockname())
server, _ = srv.accept()
done = []
signal.signal(signal.SIGUSR1, lambda *_: done.append(1))
with open(ready, "w") as f:
    f.write(f"READY listener_fd={srv.fileno()}\n")
count = 0
while not done:
    count += 1
    client.sendall(count.to_bytes(4, "little"))
    got = int.from_bytes(server.recv(4, socket.MSG_WAITALL), "little")
    if got != count:
        break
    with open(progress + ".tmp", "w") as f:
        f.write(f"{count}\n")
    os.replace(progress + ".tmp", progress)
    time.sleep(0.01)
open(report, "w").write("OK\n" if done else f"FAIL: got {got} for {count}\n")
'''


def case_mptcp(env):
    """MPTCP sockets (multipath TCP) are refused by name, with or without
    --tcp-established; the connection goes on untouched."""
    pid, info, report, prog = env.start_python(MPTCP, "mptcp")
    wait_progress(prog, 5)
    before, maps_before, fds_before = snapshot(pid), {pid: maps(pid)}, {pid: fd_table(pid)}
    for extra in ([], ["--tcp-established"]):
        images = env.path("images")
        result = env.dump(pid, images, *extra, expect=1)
        message = result.stderr.strip()
        check(f"pid {pid} fd " in message and "MPTCP (multipath TCP) sockets are not supported" in message,
              f"the refusal does not name the MPTCP socket: {message!r}")
        check_untouched(before, maps_before, fds_before, f"after the refused dump {' '.join(extra)}")
        wait_progress(prog, progress(prog)[0] + 5)
    env.trigger_and_report(pid, report)


def case_ia32(env):
    """A 32-bit program (integration/workloads/ia32.c), dumped, pre-dumped and dumped
    with -R: each refused before anything is done in it, which counts on untouched."""
    clang = shutil.which("clang-14")
    check(clang is not None, "clang-14 is not installed (make test-deps installs it): it builds the 32-bit program")
    program = env.path("ia32")
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "workloads", "ia32.c")
    subprocess.run([clang, "-m32", "-nostdlib", "-static", "-O1", "-fno-stack-protector", "-o", program, source],
                   check=True)
    out = env.path("counts")
    with open(out, "wb") as f:
        pid = env.spawn([program], stdout=f)

    def count():
        lines = (read_text(out, "") or "").split()
        return int(lines[-1]) if lines else 0
    wait_until(lambda: count() >= 5, 10, what="the 32-bit program to count")
    before, maps_before = snapshot(pid), maps(pid)

    def fds():  # (its stdout's position moves on)
        return {fd: (target, flags) for fd, (target, _, flags) in fd_table(pid).items()}
    fds_before = fds()
    images = env.path("images")
    for verb, extra in (("dump", []), ("pre-dump", []), ("dump", ["-R"])):
        os.makedirs(images, exist_ok=True)
        result = env.cryo(verb, "-t", pid, "-D", images, *extra, expect=1)
        message = result.stderr.strip()
        check(f"pid {pid}: runs 32-bit (ia32) code, which is not supported" in message,
              f"cryo {verb} {' '.join(extra)}: the refusal does not say pid {pid} is 32-bit: {message!r}")
        check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory.img")
        what = f"after the refused {verb} {' '.join(extra)}"
        check(state(pid) in ("S", "R"), f"{what}: pid {pid} is in state {state(pid)}")
        check_eq(status_fields(pid, keys=("TracerPid",)).get("TracerPid"), "0", f"{what}: TracerPid")
        compare_snapshots(before, snapshot(pid), pid)
        compare_maps(maps_before, maps(pid), what)
        check_eq(fds(), fds_before, f"{what}: fd table")
        now = count()
        wait_until(lambda: count() >= now + 5, 10, what=f"five counts after the refused {verb}")


if __name__ == "__main__":
    run({"io_uring": case_io_uring, "perf_event": case_perf_event, "keeps_previous_image": case_keeps_previous_image,
         "ia32": case_ia32, "mptcp": case_mptcp})
