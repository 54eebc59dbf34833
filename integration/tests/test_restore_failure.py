#!/usr/bin/env python3
"""A restore that cannot complete fails with exit 1 and a message naming what is in the
way, kills every task it created, and leaves the image directory byte-identical; once
the obstacle is gone the same image restores. Obstacles: the root's PID taken (the
original still runs after dump -R), the child's PID taken, a thread's TID taken, the
child's open file or cwd gone, the executable replaced."""
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (TestFailure, check, check_eq, compare_snapshots, descendants, exists, hash_dir, log,  # noqa
                     reap, run, snapshot, state, wait_progress)


def start(env, *extra, binary=None):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([binary or env.workload("counter"), ready, report, prog, "--threads", "2", "--child", "--mib", "32",
                     *extra])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    return pid, info, report, prog


def failed_restore(env, images, mention, survivors):
    """Restores while something is in the way; checks the failure and what it leaves.
    The error must mention `mention` (a pid or a path)."""
    hashes = hash_dir(images)
    mine_before = set(descendants(os.getpid()))
    result, _ = env.restore(images, expect=1)
    check(f"{mention}" in result.stderr, f"the error does not name {mention}: {result.stderr.strip()!r}")
    # Whatever cryo created is gone (killed tasks are reparented to us: reap them).
    new = set(descendants(os.getpid())) - mine_before
    reap(new, timeout=5, what="tasks left behind by the failed restore")
    check_eq(set(descendants(os.getpid())) - mine_before, set(), "new tasks after the failed restore")
    for pid in survivors:
        check(exists(pid) and state(pid) not in ("Z", "X", "T", "t"), f"task {pid} did not survive ({state(pid)})")
    after = hash_dir(images)
    changed = sorted(k for k in set(hashes) | set(after) if hashes.get(k) != after.get(k))
    check(not changed, f"the failed restore changed the image: {changed}")


def restore_ok(env, images, before, pid, report):
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(before, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


def case_root_pid_taken(env):
    """The original still runs after dump -R: the root's PID is taken."""
    pid, info, report, prog = start(env)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "-R")
    failed_restore(env, images, pid, list(before))
    compare_snapshots(before, snapshot(pid), pid)
    env.trigger_and_report(pid, report)  # the original is fine, and now gone
    reap(list(before), what="the original tree")
    os.remove(report)
    restore_ok(env, images, before, pid, report)


def case_child_pid_taken(env):
    """Only the child's PID is taken (its parent was killed): the restore gets as far
    as creating the root, then must kill it."""
    pid, info, report, prog = start(env)
    child = info["child"]
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "-R")
    os.kill(pid, signal.SIGKILL)
    reap([pid], what="the original root")
    check(exists(child), "the original child died with its parent")
    log(f"child {child} still runs, now under {state(child)} / ppid {snapshot(child)[child]['ppid']}")
    failed_restore(env, images, child, [child])
    check(not exists(pid), f"the failed restore left the root {pid} behind")
    os.kill(child, signal.SIGKILL)
    reap([child], what="the original child")
    restore_ok(env, images, before, pid, report)


def occupy_pid(env, want):
    """Starts a `sleep` with exactly this PID (through ns_last_pid)."""
    for _ in range(20):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(want - 1))
        pid = env.spawn(["sleep", "1000"], name="occupier")
        if pid == want:
            return pid
        os.kill(pid, signal.SIGKILL)
        reap([pid])
    raise TestFailure(f"could not start a process with pid {want}")


def case_thread_tid_taken(env):
    """A thread's TID is taken: the processes can be created, the thread cannot."""
    pid, info, report, prog = start(env)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    tid = max(before[pid]["tids"])
    occupier = occupy_pid(env, tid)
    failed_restore(env, images, tid, [occupier])
    for p in before:
        check(not exists(p), f"the failed restore left pid {p} behind ({state(p)})")
    os.kill(occupier, signal.SIGKILL)
    reap([occupier])
    restore_ok(env, images, before, pid, report)


def late_failure(env, extra, breaks, mention, repair, binary=None):
    pid, info, report, prog = start(env, *extra, binary=binary)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    breaks()
    failed_restore(env, images, mention, [])
    for p in before:
        check(not exists(p), f"the failed restore left pid {p} behind ({state(p)})")
    repair()
    restore_ok(env, images, before, pid, report)


def case_child_file_gone(env):
    path = env.path("held by the child")
    open(path, "w").write("data\n")
    late_failure(env, ["--child-file", path], lambda: os.remove(path), path,
                 lambda: open(path, "w").write("data\n"))


def case_child_cwd_gone(env):
    path = env.path("the child's cwd")
    os.mkdir(path)
    late_failure(env, ["--child-cwd", path], lambda: os.rmdir(path), path, lambda: os.mkdir(path))


def case_exe_replaced(env):
    binary = env.path("bin", "counter")
    os.mkdir(os.path.dirname(binary))
    shutil.copy2(env.workload("counter"), binary)
    saved = env.path("counter.saved")
    shutil.copy2(binary, saved)
    late_failure(env, [], lambda: shutil.copy2("/bin/true", binary), binary, lambda: shutil.copy2(saved, binary),
                 binary=binary)


def case_exe_modified_same_size(env):
    """The executable keeps its size but not its contents (rebuilt, patched): restoring
    would map code the process never ran."""
    binary = env.path("bin", "counter")
    os.mkdir(os.path.dirname(binary))
    shutil.copy2(env.workload("counter"), binary)
    saved = env.path("counter.saved")
    shutil.copy2(binary, saved)

    def patch():
        data = bytearray(open(binary, "rb").read())
        at = data.find(b"usage: %s %s")
        data[at:at + 5] = b"USAGE"
        with open(binary, "wb") as f:
            f.write(data)

    late_failure(env, [], patch, binary, lambda: shutil.copy2(saved, binary), binary=binary)


if __name__ == "__main__":
    run({"root_pid_taken": case_root_pid_taken, "child_pid_taken": case_child_pid_taken,
         "thread_tid_taken": case_thread_tid_taken, "child_file_gone": case_child_file_gone,
         "child_cwd_gone": case_child_cwd_gone, "exe_replaced": case_exe_replaced,
         "exe_modified_same_size": case_exe_modified_same_size})
