#!/usr/bin/env python3
"""Kernel objects beyond the basics (sockets, eventfd, epoll, signalfd, timerfd, an event loop of them all,
inotify, memfd, deleted files, System V shm, POSIX timers, seccomp, userfaultfd,
pidfd, an executable deleted while it runs). For each, cryo must either checkpoint it fully (after restore the object
still works) or refuse the dump cleanly: exit 1, the pid (and fd) named, and the
tree running on exactly as it was."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, fd_table, log, maps, progress, run,  # noqa
                     snapshot, state, status_fields, wait_progress)

# kind -> whether an fd holds it (then a refusal must name the fd)
KINDS = {
    "unix_socketpair": True, "tcp_listen": True, "udp": True, "netlink": True, "netlink_unread": True, "pty_master": True, "fuse_device": True, "eventfd": True, "epoll": True, "event_loop": True, "epoll_stale": True, "signalfd": True,
    "timerfd": True, "inotify": True, "inotify_wds": True, "inotify_queued": True, "memfd": True, "memfd_map": False, "memfd_sealed": True, "deleted_file": True, "deleted_sparse": True, "sysv_shm": False, "sysv_shm_keyed": False,
    "posix_timer": False, "posix_timers": False, "seccomp": False, "seccomp_stack": False, "userfaultfd": True, "pidfd": True, "pidfd_child": True, "deleted_exe": False,
}
# kinds that must be refused: restoring them would change what the process sees
MUST_REFUSE = {"epoll_stale", "inotify_queued", "netlink_unread", "fuse_device"}
# kinds whose threads and stacks come and go by themselves (glibc runs each
# SIGEV_THREAD notification in a new thread): their shape is not compared
RESHAPING = {"posix_timers"}
# kinds cryo checkpoints: a refusal is a regression
MUST_DUMP = {"pty_master", "unix_socketpair", "tcp_listen", "udp", "netlink", "eventfd", "epoll", "event_loop", "signalfd", "timerfd", "inotify_wds", "memfd",
             "memfd_map", "memfd_sealed", "deleted_file", "deleted_sparse", "deleted_exe", "posix_timer", "posix_timers", "sysv_shm", "sysv_shm_keyed",
             "seccomp", "seccomp_stack", "pidfd", "pidfd_child"}


def supported_or_refused(env, kind):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    binary = env.workload("counter")
    if kind == "deleted_exe":
        # Runs from a copy that is deleted once it runs (a binary upgraded under a daemon).
        binary = env.path("counter-copy")
        shutil.copy2(env.workload("counter"), binary)
        pid = env.spawn([binary, ready, report, prog, "--threads", "1"])
    else:
        pid = env.spawn([binary, ready, report, prog, "--threads", "1", "--object", kind])
    info = env.wait_ready(ready, pid)
    if kind == "deleted_exe":
        os.remove(binary)
    wait_progress(prog, 2)
    before = snapshot(pid)
    layout, fds = maps(pid), fd_table(pid)
    images = env.path("images")
    result = env.dump(pid, images, expect=None)
    check(result.returncode != 0 or kind not in MUST_REFUSE, f"{kind} was dumped, but cannot be restored as it is")
    check(result.returncode == 0 or kind not in MUST_DUMP, f"{kind} was refused: {result.stderr.strip()!r}")
    if result.returncode == 0:
        log(f"{kind}: dumped; checking the round trip")
        env.wait_dumped(before)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        if kind not in RESHAPING:
            env.soft(compare_snapshots, before, snapshot(pid), pid)
            env.soft(compare_maps, layout, maps(pid), "layout")
        env.soft(check_eq, fd_table(pid), fds, "fd table")
        env.trigger_and_report(pid, report)
        return
    log(f"{kind}: refused")
    check_eq(result.returncode, 1, "exit code of the refused dump")
    message = result.stderr.strip()
    check(f"pid {pid}" in message, f"the refusal does not name pid {pid}: {message!r}")
    if KINDS[kind]:
        check(f"fd {info['object_fd']}" in message, f"the refusal does not name fd {info['object_fd']}: {message!r}")
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory.img")
    check(state(pid) not in (None, "T", "t", "Z"), f"after the refusal pid {pid} is in state {state(pid)}")
    check_eq(status_fields(pid, keys=("TracerPid",)).get("TracerPid"), "0", "TracerPid after the refusal")
    compare_snapshots(before, snapshot(pid), pid)
    compare_maps(layout, maps(pid), "layout after the refusal")
    check_eq(fd_table(pid), fds, "fd table after the refusal")
    now = progress(prog)
    wait_progress(prog, now[0] + 3)
    wait_progress(prog, now[1] + 3, index=1)
    env.trigger_and_report(pid, report)


def case_ghost_limit(env):
    """A deleted file holding more data than --ghost-limit is refused, naming the pid, the
    fd and the option; its size does not count, only its data (64 MiB, mostly a hole,
    passes a limit of 1 MiB)."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "1", "--object", "deleted_sparse"])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    result = env.dump(pid, env.path("images"), "--ghost-limit", "16", expect=1)
    for want in (f"pid {pid}", f"fd {info['object_fd']}", "--ghost-limit"):
        check(want in result.stderr, f"the refusal does not say {want!r}: {result.stderr.strip()!r}")
    compare_snapshots(before, snapshot(pid), pid)
    env.dump(pid, env.path("images"), "--ghost-limit", "1M", "-R")
    env.trigger_and_report(pid, report)


def case_sysv_shm_remade(env):
    """A keyed System V segment removed between dump and restore is made again with
    its id, key, mode and data (kernel.shm_next_id)."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "1", "--object", "sysv_shm_keyed"])
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    shmids = {line.split()[4] for line in open(f"/proc/{pid}/maps") if "/SYSV" in line}
    check_eq(len(shmids), 1, "System V segments attached")
    shmid = shmids.pop()
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    subprocess.run(["ipcrm", "-m", shmid], check=True)
    check(f" {shmid} " not in open("/proc/sysvipc/shm").read(), f"segment {shmid} is still there")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    cases = {kind: (lambda env, k=kind: supported_or_refused(env, k)) for kind in KINDS}
    cases["ghost_limit"] = case_ghost_limit
    cases["sysv_shm_remade"] = case_sysv_shm_remade
    run(cases)
