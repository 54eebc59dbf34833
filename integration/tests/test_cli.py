#!/usr/bin/env python3
"""Command-line edge cases: what cryo must refuse cleanly (exit 1, a message, no harm
done) and a few odd but valid targets."""
import ctypes
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, exists, log, progress, read_text, reap, run,  # noqa: E402
                     snapshot, state, wait_progress, wait_until)

PTRACE_TRACEME, PTRACE_CONT, PTRACE_DETACH = 0, 7, 17
libc = ctypes.CDLL(None, use_errno=True)


def start_counter(env, **kw):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "1"], **kw)
    return pid, ready, report, prog


def refused(env, *args, mention=None):
    result = env.cryo(*args, expect=1)
    check(result.stderr.strip(), f"`cryo {' '.join(map(str, args))}` failed without a message")
    if mention is not None:
        check(str(mention) in result.stderr, f"the message does not name {mention}: {result.stderr.strip()!r}")
    return result


def case_bad_arguments(env):
    refused(env, "dump", "-D", env.path("images"))  # no -t
    refused(env, "dump", "-t", "not-a-pid", "-D", env.path("images"), mention="not-a-pid")
    refused(env, "dump", "-t", "1", "-D", env.path("images"), "--no-such-option", mention="--no-such-option")
    refused(env, "restore", "-D", env.path("no-such-dir"), mention=env.path("no-such-dir"))
    empty = env.path("empty")
    os.mkdir(empty)
    refused(env, "restore", "-D", empty, mention="inventory")
    refused(env, "no-such-command", mention="no-such-command")


def case_missing_pid(env):
    pid = int(read_text("/proc/sys/kernel/pid_max")) - 1
    while exists(pid):
        pid -= 1
    refused(env, "dump", "-t", pid, "-D", env.path("images"), mention=pid)
    refused(env, "dump", "-t", 2, "-D", env.path("images2"), mention=2)  # kthreadd: a kernel thread


def case_zombie_root(env):
    pid = env.spawn(["true"])
    wait_until(lambda: state(pid) == "Z", 5, what="a zombie")
    refused(env, "dump", "-t", pid, "-D", env.path("images"), mention=pid)
    reap([pid])


def case_unwritable_images_dir(env):
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    blocker = env.path("a-file")
    open(blocker, "w").close()
    refused(env, "dump", "-t", pid, "-D", os.path.join(blocker, "images"))
    check(state(pid) not in (None, "T", "t", "Z"), f"pid {pid} is in state {state(pid)}")
    compare_snapshots(tree, snapshot(pid), pid)
    wait_progress(prog, progress(prog)[0] + 3)
    env.trigger_and_report(pid, report)


def case_own_ancestor(env):
    """cryo asked to dump a tree that contains cryo itself (its parent shell)."""
    script = env.path("self.sh")
    rc_file = env.path("rc")
    with open(script, "w") as f:
        f.write(f'"{env.cryo_path}" dump -t $$ -D "{env.path("images")}" 2>"{env.path("err")}"\n'
                f'echo $? > "{rc_file}"\nsleep 0.2\n')
    pid = env.spawn(["bash", script])
    env.wait_file(rc_file, timeout=30, what="the shell to get cryo's exit code (did cryo freeze itself?)")
    rc = int(read_text(rc_file).strip())
    log(f"cryo dump -t <its own parent> -> {rc}: {read_text(env.path('err'), '').strip()}")
    check_eq(rc, 1, "exit code of cryo dump of its own parent")
    reap([pid], timeout=10)


def case_stopped_root(env):
    """A root stopped by SIGSTOP comes back stopped, and SIGCONT resumes it."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: state(pid) == "T", 5, what="the root to stop")
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(tree)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(tree, snapshot(pid), pid)
    seen = progress(prog)
    time.sleep(0.3)
    check_eq(progress(prog), seen, "counter of the restored, stopped root")
    os.kill(pid, signal.SIGCONT)
    wait_progress(prog, seen[0] + 3)
    env.trigger_and_report(pid, report)


def case_traced_by_other(env):
    """A tree already traced by another debugger (this test) is refused, untouched."""
    def traceme():
        libc.ptrace(PTRACE_TRACEME, 0, None, None)
    pid, ready, report, prog = start_counter(env, preexec_fn=traceme)
    _, status = os.waitpid(pid, 0)  # the SIGTRAP stop after exec
    check(os.WIFSTOPPED(status), f"no exec stop ({status:#x})")
    check_eq(libc.ptrace(PTRACE_CONT, pid, None, None), 0, "PTRACE_CONT")
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    refused(env, "dump", "-t", pid, "-D", env.path("images"), mention=pid)
    compare_snapshots(tree, snapshot(pid), pid)
    check_eq(read_text(f"/proc/{pid}/status").split("TracerPid:")[1].split()[0], str(os.getpid()), "TracerPid")
    wait_progress(prog, progress(prog)[0] + 3)
    # Let it go: a signal stop has to be passed on while we trace it.
    os.kill(pid, signal.SIGUSR1)
    _, status = os.waitpid(pid, 0)
    if os.WIFSTOPPED(status):
        libc.ptrace(PTRACE_DETACH, pid, None, ctypes.c_void_p(os.WSTOPSIG(status)))
    env.wait_file(report, what="report")
    reap([pid])
    check(open(report).read().startswith("OK"), f"report: {open(report).read().strip()}")


def case_shell_job_image_needs_flag(env):
    """An image dumped with --shell-job is refused by a restore without it."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--shell-job")
    env.wait_dumped(tree)
    refused(env, "restore", "-D", images, "-d", mention="shell-job")
    for p in tree:
        check(not exists(p), f"the refused restore left pid {p} behind")
    _, rpid = env.restore(images, "--shell-job")
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_redump_same_dir(env):
    """Periodic checkpoints into one directory: the second dump -R replaces the first,
    and the restore continues from the second."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "-R")
    first = progress(prog)[0]
    wait_progress(prog, first + 30)
    second = progress(prog)[0]
    env.dump(pid, images, "-R")
    os.kill(pid, signal.SIGKILL)
    reap(list(tree), what="the original")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    at_kill = progress(prog)[0]

    def moved_on():
        values = progress(prog)
        return values[0] if values and values[0] != at_kill else None
    restored = wait_until(moved_on, 10, what="the restored counter to publish")
    log(f"first dump at {first}, second at >= {second}, restored counter {restored}")
    check(restored >= second, f"the restore went on from {restored}, before the second dump ({second})")
    env.trigger_and_report(pid, report)


def case_image_moved(env):
    """An image directory can be moved (or copied) elsewhere before the restore."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(tree)
    moved = env.path("elsewhere", "images")
    os.mkdir(env.path("elsewhere"))
    shutil.copytree(images, moved)
    shutil.rmtree(images)
    _, rpid = env.restore(moved)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(tree, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


def case_vfork_parent(env):
    """A parent blocked in vfork() (its child sleeps before exec) cannot be stopped by
    ptrace: the dump must not hang. Either it works, or it is refused naming the pid,
    and the tree is left as it was."""
    ready = env.path("ready")
    pid = env.spawn([env.workload("vforker"), ready])
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    check_eq(sorted(t["state"] for t in tree.values()), ["D", "S"], "states of the vfork parent and child")
    result = env.dump(pid, env.path("images"), expect=None, timeout=30)
    log(f"dump of a vfork parent: exit {result.returncode}")
    if result.returncode != 0:
        check_eq(result.returncode, 1, "exit code of the refused dump")
        check(str(pid) in result.stderr, f"the refusal does not name pid {pid}: {result.stderr.strip()!r}")
        compare_snapshots(tree, snapshot(pid), pid)


if __name__ == "__main__":
    run({"shell_job_image_needs_flag": case_shell_job_image_needs_flag, "redump_same_dir": case_redump_same_dir,
         "image_moved": case_image_moved, "vfork_parent": case_vfork_parent, "bad_arguments": case_bad_arguments, "missing_pid": case_missing_pid, "zombie_root": case_zombie_root,
         "unwritable_images_dir": case_unwritable_images_dir, "own_ancestor": case_own_ancestor,
         "stopped_root": case_stopped_root, "traced_by_other": case_traced_by_other})
