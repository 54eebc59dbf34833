#!/usr/bin/env python3
"""--shell-job. Without it, a tree whose session leader is outside it, or that holds a
terminal, is refused (exit 1, the pid named, the flag suggested) and runs on untouched
(a pipe to a process outside it is dumped as an external pipe: test_external.py). With
it, the dump works and cryo restore re-attaches the tree's terminal and stdio pipes to
its own stdin/stdout/stderr."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, log, progress, run, snapshot, state, wait_progress)  # noqa: E402


def start_counter(env, setsid=True, **stdio):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "1"], setsid=setsid, **stdio)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    return pid, report, prog


def refused_then_shell_job(env, pid, report, prog, restore_stdio, want_links, refused=True):
    """Dump without -j: refused (unless not `refused`), the tree runs on. Then -j dump
    and -j restore with the given stdio files; the restored fds must point to want_links."""
    tree = snapshot(pid)
    images = env.path("images")
    if refused:
        result = env.dump(pid, images, expect=1)
        check(f"pid {pid}" in result.stderr or str(pid) in result.stderr,
              f"the refusal does not name pid {pid}: {result.stderr.strip()!r}")
        check("shell-job" in result.stderr, f"the refusal does not suggest --shell-job: {result.stderr.strip()!r}")
        check(state(pid) not in (None, "T", "t", "Z"), f"after the refusal pid {pid} is in state {state(pid)}")
        wait_progress(prog, progress(prog)[0] + 3)

    env.dump(pid, images, "--shell-job")
    env.wait_dumped(tree)
    stdin, stdout, stderr = restore_stdio
    args = ["restore", "-D", images, "-d", "--shell-job", "--pidfile", env.path("pidfile")]
    proc = subprocess.Popen([env.cryo_path] + args, stdin=stdin, stdout=stdout, stderr=stderr)
    rc = proc.wait(timeout=120)
    log(f"cryo {' '.join(args)} -> {rc}")
    check_eq(rc, 0, "exit code of cryo restore --shell-job")
    check_eq(int(open(env.path("pidfile")).read()), pid, "restored pid")
    for fd, want in want_links.items():
        got = os.readlink(f"/proc/{pid}/fd/{fd}")
        env.soft(check_eq, got, want, f"fd {fd} of the restored shell job")
    env.trigger_and_report(pid, report)


def case_foreign_session(env):
    """Started in our session and process group: the session leader is outside."""
    pid, report, prog = start_counter(env, setsid=False)
    tree = snapshot(pid)
    check(tree[pid]["sid"] != pid, "the workload leads its own session")
    out = env.path("restore-stdout")
    with open(out, "wb") as o, open(os.devnull, "rb") as i:
        refused_then_shell_job(env, pid, report, prog, (i, o, o), {})


def case_session_outside_namespace(env):
    """The same, one pid namespace down (as in a CI container): the session leader
    is invisible, so the tree reads session 0, and that is not a daemon."""
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, os.path.abspath(__file__),
           "--case", "foreign_session"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=80)
    log(result.stdout[-2000:] + result.stderr[-2000:])
    check_eq(result.returncode, 0, "exit code of foreign_session in a new pid namespace")


def case_pipe_to_outside(env):
    """Its stdout is a pipe whose reader is this test: without -j it would be an external
    pipe (test_external.py); with -j it becomes cryo restore's stdout."""
    pid, report, prog = start_counter(env, stdout=subprocess.PIPE)
    reader = env.last_popen.stdout
    out = env.path("restore-stdout")
    with open(out, "wb") as o, open(os.devnull, "rb") as i:
        refused_then_shell_job(env, pid, report, prog, (i, o, o), {1: out}, refused=False)
    reader.close()


def case_terminal(env):
    """Its stdio is a terminal; restored onto another terminal."""
    master, slave = os.openpty()
    pid, report, prog = start_counter(env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    master2, slave2 = os.openpty()
    tty2 = os.ttyname(slave2)
    refused_then_shell_job(env, pid, report, prog, (slave2, slave2, slave2), {0: tty2, 1: tty2, 2: tty2})
    time.sleep(0.1)
    for fd in (master, master2, slave2):
        os.close(fd)


if __name__ == "__main__":
    run({"foreign_session": case_foreign_session, "session_outside_namespace": case_session_outside_namespace,
         "pipe_to_outside": case_pipe_to_outside, "terminal": case_terminal})
