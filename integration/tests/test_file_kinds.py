#!/usr/bin/env python3
"""Open files with no plain name to reopen them by (integration/workloads/filekinds.c):
a removed cwd and directory, a deleted FIFO with buffered bytes, deleted device nodes,
O_PATH fds of a symlink, a file and a directory, files of /proc of the tree's own
processes and namespace files, a deleted file opened twice through /proc/self/fd, leases
and OFD locks, a memfd executed after restore, devices reopened by their path. Each one
either works after restore as it did (the program checks from inside, and its fd table
reads the same from outside) or is refused: exit 1, the pid and fd named, the tree
running on as it was."""
import fcntl
import os
import signal
import sys
import termios

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, fd_table, log, read_text, run, snapshot,  # noqa
                     state, status_fields, wait_until)


def start(env, kind, **spawn_args):
    work = env.path("work")
    os.mkdir(work)
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("filekinds"), ready, report, work, kind], **spawn_args)
    return pid, env.wait_ready(ready, pid), report


def locks_of(pid):
    """The lines of /proc/locks of pid's files (kind, mode, range), by inode."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            inodes.add(os.stat(f"/proc/{pid}/fd/{fd}").st_ino)
        except OSError:
            pass
    out = []
    for line in read_text("/proc/locks", "").splitlines():
        words = line.split()
        if len(words) >= 8 and words[1] != "->" and int(words[5].split(":")[2]) in inodes:
            out.append(" ".join(words[1:4] + words[6:8]))
    return sorted(out)


def round_trip(env, kind, extra_check=None):
    pid, info, report = start(env, kind)
    before = snapshot(pid)
    fds, locks = fd_table(pid), locks_of(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    env.soft(check_eq, fd_table(pid), fds, "fd table")
    env.soft(check_eq, locks_of(pid), locks, "locks in /proc/locks")
    if extra_check:
        env.soft(extra_check, pid, info)
    env.trigger_and_report(pid, report)


def refused(env, kind, mention, **spawn_args):
    pid, info, report = start(env, kind, **spawn_args)
    before, fds = snapshot(pid), fd_table(pid)
    images = env.path("images")
    result = env.dump(pid, images, expect=1)
    message = result.stderr.strip()
    check(f"pid {pid} fd {info['object_fd']}" in message,
          f"the refusal does not name pid {pid} fd {info['object_fd']}: {message!r}")
    check(mention in message, f"the refusal does not say {mention!r}: {message!r}")
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory.img")
    check(state(pid) not in (None, "T", "t", "Z"), f"after the refusal pid {pid} is in state {state(pid)}")
    check_eq(status_fields(pid, keys=("TracerPid",)).get("TracerPid"), "0", "TracerPid after the refusal")
    compare_snapshots(before, snapshot(pid), pid)
    check_eq(fd_table(pid), fds, "fd table after the refusal")
    env.trigger_and_report(pid, report)


def case_deleted_dirs(env):
    """cwd and an open directory removed while in use: /proc shows the same
    'PATH (deleted)', nothing can be made in them, the paths stay free."""
    def cwd_link(pid, _):
        check(os.readlink(f"/proc/{pid}/cwd").endswith("/cwd.d (deleted)"), "cwd link")
        check(not os.path.exists(env.path("work", "cwd.d")), "cwd.d is back on disk")
    round_trip(env, "deleted_dirs", cwd_link)


def case_deleted_fifo(env):
    round_trip(env, "deleted_fifo")


def case_deleted_devices(env):
    round_trip(env, "deleted_devices")


def case_opath(env):
    round_trip(env, "opath")


def case_proc_files(env):
    round_trip(env, "proc_files")


def case_proc_outside(env):
    refused(env, "proc_outside", "/proc/1/status")


def case_reopened_ghost(env):
    round_trip(env, "reopened_ghost")


def case_leases(env):
    round_trip(env, "leases")


def case_ofd_locks(env):
    round_trip(env, "ofd_locks")


def case_memfd_exec(env):
    """Memfds run with fexecve and through /proc/self/fd after restore, also one whose
    writer the program closes only after the restore; under a restore in the foreground
    (cryo waits for the root), cryo must not hold a copy of any file of the tree (which
    would give ETXTBSY, or keep a pipe from reaching EOF)."""
    pid, info, report = start(env, "memfd_exec")
    before, fds = snapshot(pid), fd_table(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    pidfile = env.path("restored.pid")
    proc, out, err = env.cryo_background("restore", "-D", images, "--pidfile", pidfile, "-o", env.path("restore.log"))
    rc = None
    try:
        wait_until(lambda: read_text(pidfile), 30, what="the restore's pidfile")
        check_eq(int(read_text(pidfile)), pid, "restored pid")
        env.soft(check_eq, fd_table(pid), fds, "fd table")
        os.kill(pid, signal.SIGUSR1)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = read_text(report, "")
    check(text.startswith("OK"), f"workload {pid} reports: {text.strip()} (cryo restore exited {rc})")
    check_eq(rc, 0, "exit code of cryo restore (the root's)")


def case_devices(env):
    round_trip(env, "devices")


def case_stateful_device(env):
    refused(env, "stateful_device", "cpu_dma_latency")


def case_tty_device(env):
    """/dev/tty of a controlling terminal outside the tree (a pty the test holds):
    refused without --shell-job, naming the terminal."""
    master, slave = os.openpty()

    def take_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        refused(env, "tty_device", "terminal", setsid=False, preexec_fn=take_terminal)
    finally:
        os.close(master)
        os.close(slave)


if __name__ == "__main__":
    run({name[5:]: fn for name, fn in globals().items() if name.startswith("case_")})
