#!/usr/bin/env python3
"""What the processes of a tree share with each other comes back shared.

cow: memory a parent and its children share copy-on-write since their fork
stays shared after a restore (a 64 MiB mapping shared by five processes
costs one copy, in memory and in the image), and each process still sees its
own writes only, before and after the restore.
cow_outside: dumping one of those children alone while the tree runs on (dump -R, then
pre-dump) leaves its 64 MiB shared with the processes outside what was dumped: reading a
page through a pin (process_vm_readv) would have the kernel copy it for that child first.
zombie_pgid: zombies come back in their own process groups (one of their own,
one of a sibling's, one whose leader is gone), not their parent's.
thread_creds: a thread with uids and gids of its own, one with fewer
capabilities (both by raw syscalls), one in seccomp strict mode, and a child
process in strict mode: each comes back so (strict mode still kills).
clone_files, clone_fs: a child made with clone(CLONE_FILES) or clone(CLONE_FS)
shares its parent's fd table or cwd, and still does after the restore (it
sees a file its parent opens, or the directory it changes to, afterwards).
clone_siblings: two children share an fd table their parent left (unshare):
the dump is refused naming both, and the tree runs on."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, log, page_files_size, read_text, run, snapshot  # noqa: E402

MIB = 1 << 20


def pss_in(pid, start, end):
    """Pss (bytes) of the mappings of pid inside [start, end)."""
    total, inside = 0, False
    for line in (read_text(f"/proc/{pid}/smaps") or "").splitlines():
        head = line.split()[0] if line.split() else ""
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo >= start and hi <= end
        elif inside and line.startswith("Pss:"):
            total += int(line.split()[1]) * 1024
    return total


def start_cow(env):
    """The cow workload: its root, its report file, its ready info, and the Pss (bytes) of
    its 64 MiB mapping in all five processes as a function."""
    ready, report = env.path("ready"), env.path("report")
    root = env.spawn([env.workload("sharing"), "cow", ready, report], name="sharing")
    info = env.wait_ready(ready, root)
    pids = [info[n] for n in ("R", "C0", "C1", "C2", "G")]
    start, end = info["addr"], info["addr"] + 64 * MIB
    return root, report, info, lambda: sum(pss_in(p, start, end) for p in pids)


def case_cow(env):
    root, report, _, pss = start_cow(env)
    before_pss = pss()
    log(f"Pss of the 64 MiB mapping in the 5 processes before the dump: {before_pss / MIB:.1f} MiB")
    check(before_pss < 70 * MIB, f"the workload does not share its memory ({before_pss / MIB:.1f} MiB)")
    before = snapshot(root)
    images = env.round_trip(root, before)
    stored = page_files_size(images)
    after_pss = pss()
    log(f"page files: {stored / MIB:.1f} MiB; Pss after the restore: {after_pss / MIB:.1f} MiB")
    env.soft(check, stored < 80 * MIB, f"the image stores {stored / MIB:.1f} MiB: the shared pages more than once")
    env.soft(check, after_pss < 80 * MIB,
             f"the restored tree holds {after_pss / MIB:.1f} MiB of the mapping: not shared as it was")
    env.trigger_and_report(root, report)


def case_cow_outside(env):
    root, report, info, pss = start_cow(env)
    before = pss()
    check(before < 70 * MIB, f"the workload does not share its memory ({before / MIB:.1f} MiB)")
    child = info["C1"]
    env.dump(child, env.path("images"), "-R", "--shell-job")
    after_dump = pss()
    env.cryo("pre-dump", "-t", child, "-D", env.path("pre"), "--shell-job", log_name="pre-dump")
    after_pre = pss()
    log(f"Pss of the mapping in the 5 processes: {before / MIB:.1f} MiB before, {after_dump / MIB:.1f} after "
        f"dump -R of C1, {after_pre / MIB:.1f} after its pre-dump")
    env.soft(check, after_dump < 70 * MIB, f"dump -R of C1 unshared its memory ({after_dump / MIB:.1f} MiB)")
    env.soft(check, after_pre < 70 * MIB, f"the pre-dump of C1 unshared its memory ({after_pre / MIB:.1f} MiB)")
    env.trigger_and_report(root, report)


def case_zombie_pgid(env):
    ready, report = env.path("ready"), env.path("report")
    root = env.spawn([env.workload("sharing"), "zombie_pgid", ready, report], name="sharing")
    env.wait_ready(ready, root)
    before = snapshot(root)
    env.round_trip(root, before)
    env.trigger_and_report(root, report)


def case_thread_creds(env):
    ready, report = env.path("ready"), env.path("report")
    root = env.spawn([env.workload("sharing"), "thread_creds", ready, report], name="sharing")
    env.wait_ready(ready, root)
    before = snapshot(root)
    env.round_trip(root, before)
    env.trigger_and_report(root, report)


def shared_clone(env, mode):
    ready, report = env.path("ready"), env.path("report")
    # Not in /: the child of clone_fs checks that its parent's chdir("/") reaches it.
    root = env.spawn([env.workload("sharing"), mode, ready, report], name="sharing", cwd=env.dir)
    env.wait_ready(ready, root)
    before = snapshot(root)
    env.round_trip(root, before)
    env.trigger_and_report(root, report)


def case_clone_files(env):
    shared_clone(env, "clone_files")


def case_clone_fs(env):
    shared_clone(env, "clone_fs")


def case_clone_siblings(env):
    ready, report = env.path("ready"), env.path("report")
    root = env.spawn([env.workload("sharing"), "clone_siblings", ready, report], name="sharing")
    info = env.wait_ready(ready, root)
    result = env.dump(root, env.path("images"), expect=1)
    c1, c2 = info["C1"], info["C2"]
    check(f"pid {c1} and pid {c2} share their fd table" in result.stderr
          or f"pid {c2} and pid {c1} share their fd table" in result.stderr,
          f"the refusal does not name both siblings and the fd table: {result.stderr.strip()}")
    env.trigger_and_report(root, report)


if __name__ == "__main__":
    run({"cow": case_cow, "cow_outside": case_cow_outside, "zombie_pgid": case_zombie_pgid, "thread_creds": case_thread_creds,
         "clone_files": case_clone_files, "clone_fs": case_clone_fs, "clone_siblings": case_clone_siblings})
