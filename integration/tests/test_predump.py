#!/usr/bin/env python3
"""Incremental dumps: cryo pre-dump copies memory and leaves the tree running with
its writes tracked (userfaultfd write-protection, read back with PAGEMAP_SCAN); a dump
with --prev-images-dir stores only what was written since and the restore reads the
rest through the chain of parents. The workload changes its memory between the two
(rewrites, MADV_DONTNEED, a zeroed page, munmap, a new mapping, mremap, fork) and
checks every page after the restore."""
import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, descendants, exists, log, page_files_size, read_text, run,  # noqa: E402
                     snapshot, state, wait_until)


def start(env, *extra):
    ready, report, stepped = env.path("ready"), env.path("report"), env.path("stepped")
    pid = env.spawn([env.workload("incremental"), ready, report, stepped, *extra])
    info = env.wait_ready(ready, pid)
    return pid, info, report, stepped


def step(env, pid, stepped):
    os.kill(pid, signal.SIGUSR2)
    env.wait_file(stepped, pid=pid, what="the workload's step")


def keepers():
    out = []
    for p in descendants(os.getpid()):
        comm = (read_text(f"/proc/{p}/comm") or "").strip()
        if comm == "cryo-keeper" and state(p) not in ("Z", None):
            out.append(p)
    return out


def tracked_flags(pid):
    """VmFlags of pid's mappings registered with a userfaultfd (uw: write-protect)."""
    text = read_text(f"/proc/{pid}/smaps") or ""
    return [line for line in text.splitlines() if line.startswith("VmFlags:") and " uw" in line]


def pages_size(images):
    return page_files_size(images)


def pre_dump(env, pid, images, *extra, expect=0):
    os.makedirs(images, exist_ok=True)
    return env.cryo("pre-dump", "-t", pid, "-D", images, *extra, expect=expect, log_name="pre-dump")


def case_incremental(env):
    pid, _, report, stepped = start(env)
    pre, final = env.path("pre"), env.path("final")
    pre_dump(env, pid, pre, "--track-mem")
    check(len(keepers()) == 1, f"one keeper of the write tracking runs after pre-dump, found {keepers()}")
    check(tracked_flags(pid), "the pre-dumped process's memory is registered for write tracking")
    step(env, pid, stepped)
    tree = snapshot(pid)
    env.dump(pid, final, "--track-mem", "--prev-images-dir", "../pre")
    env.wait_dumped(tree)
    wait_until(lambda: not keepers(), 5, what="the keeper to end once the dump took the tracking")
    check_eq(os.readlink(os.path.join(final, "parent")), "../pre", "the image's parent link")
    full, incremental = pages_size(pre), pages_size(final)
    log(f"pre-dump page files {full} bytes, dump page files {incremental} bytes")
    check(full > 36 << 20, f"the pre-dump holds the whole memory ({full} bytes)")
    # Written since: 128 pages of A, a page in the child, 2 MiB mapped, 1 MiB moved
    # by mremap (untracked there: copied whole), stacks: well under 8 MiB.
    check(incremental < 8 << 20, f"the dump stores only what was written since the pre-dump ({incremental} bytes)")
    inspected = json.loads(env.cryo("inspect", final).stdout)
    check_eq(inspected["inventory"].get("parentImage") or inspected["inventory"].get("parent_image"), "../pre",
             "the parent image cryo inspect names")
    check_eq(len(inspected["chain"]), 1, "the chain of parents cryo inspect shows")
    root = [p for p in inspected["processes"] if p["pid"] == pid][0]
    check(root["pages_in_parents"] > 8000, f"cryo inspect counts the pages kept in the pre-dump: {root['pages_in_parents']}")
    pre_info = json.loads(env.cryo("inspect", pre).stdout)
    check_eq([p["pid"] for p in pre_info["processes"]], [pid], "the processes of the pre-dump cryo inspect shows")
    _, rpid = env.restore(final)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_chain(env):
    """pre-dump, pre-dump on top of it, dump on top of that: pages come from three levels."""
    pid, _, report, stepped = start(env)
    pre1, pre2, final = env.path("pre1"), env.path("pre2"), env.path("final")
    pre_dump(env, pid, pre1)
    step(env, pid, stepped)
    second = pre_dump(env, pid, pre2, "--prev-images-dir", "../pre1")
    # The parent's 32 MiB but what it rewrote stay in pre1 (the child forked since is
    # saved whole: pre-dumps store every process's pages of its own).
    kept = re.search(r"\((\d+) kept in the parent image\)", read_text(second.log_path) or "")
    check(kept and int(kept.group(1)) >= 8000, f"the second pre-dump keeps the unchanged pages in pre1 ({kept and kept.group(0)})")
    check(len(keepers()) == 1, f"one keeper after the second pre-dump, found {keepers()}")
    tree = snapshot(pid)
    env.dump(pid, final, "--prev-images-dir", "../pre2")
    env.wait_dumped(tree)
    check(pages_size(final) < 2 << 20, f"nothing written since the second pre-dump ({pages_size(final)} bytes)")
    _, rpid = env.restore(final)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_refused_parent(env):
    """A corrupt or missing parent is refused before any process is made."""
    pid, _, report, stepped = start(env)
    pre, final = env.path("pre"), env.path("final")
    pre_dump(env, pid, pre)
    step(env, pid, stepped)
    tree = snapshot(pid)
    env.dump(pid, final, "--prev-images-dir", "../pre")
    env.wait_dumped(tree)
    # A byte of every page of the parent: which of them the dump left there depends on
    # how its runs fall (a run is kept whole or not at all, its checksum covers it whole).
    with open(os.path.join(pre, "pages.img"), "r+b") as f:
        original = f.read()
        corrupt = bytearray(original)
        for at in range(4096 + 17, len(corrupt), 4096):
            corrupt[at] ^= 0xff
        f.seek(0)
        f.write(corrupt)
    result, _ = env.restore(final, expect=1)
    check("checksum" in result.stderr and "pre" in result.stderr,
          f"a corrupt parent is named: {result.stderr.strip()}")
    check(not exists(pid), "no process was made from an image whose parent is corrupt")
    with open(os.path.join(pre, "pages.img"), "r+b") as f:
        f.write(original)
    os.rename(pre, pre + ".away")
    result, _ = env.restore(final, expect=1)
    check("parent image" in result.stderr and "missing" in result.stderr,
          f"a missing parent is named: {result.stderr.strip()}")
    check(not exists(pid), "no process was made from an image whose parent is missing")
    # A pre-dump alone is not an image to restore.
    os.rename(pre + ".away", pre)
    result, _ = env.restore(pre, expect=1)
    check("pre-dump" in result.stderr, f"a pre-dump is refused as such: {result.stderr.strip()}")
    _, rpid = env.restore(final)
    check_eq(rpid, pid, "restored pid once the parent is back")
    env.trigger_and_report(pid, report)


def case_killed_predump(env):
    """cryo killed in the middle of a pre-dump: the tree runs on unaffected, with no
    write tracking left and no keeper."""
    for point in ("predump.tracked", "predump.keeper"):
        pid, _, report, stepped = start(env)
        images = env.path("pre-" + point)
        os.makedirs(images)
        result = env.cryo("pre-dump", "-t", pid, "-D", images, expect=None, env_extra={"CRYO_FAILPOINT": point})
        check_eq(result.returncode, -signal.SIGKILL, f"cryo's end at failpoint {point}")
        wait_until(lambda: not keepers(), 5, what=f"the keeper to end after cryo died at {point}")
        check(not tracked_flags(pid), f"no write tracking left after cryo died at {point}")
        check(state(pid) not in ("T", "t", "Z", None), f"the tree runs on after cryo died at {point}")
        check(not os.path.exists(os.path.join(images, "inventory.img")), "no image was committed")
        step(env, pid, stepped)
        env.trigger_and_report(pid, report)
        for name in ("ready", "report", "stepped"):
            if os.path.exists(env.path(name)):
                os.remove(env.path(name))


def userfaultfds(pid):
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[userfaultfd]":
                fds.append(int(fd))
        except OSError:
            pass
    return fds


def case_killed_making_tracker(env):
    """cryo pre-dump killed between making the userfaultfd inside a process and closing
    it there (at its first remote syscall): the process keeps no such fd (its leader was
    parked, and the guard, told the fd first, closed it through it) and runs on; the next
    pre-dump tracks as usual, and so does a dump, and the process comes back without a
    userfaultfd. (A leader with no rescue frame runs those syscalls unguarded; what such
    a kill leaves, the next pre-dump or dump closes: /run/cryo-trackers.)"""
    for then in ("pre-dump", "dump"):
        pid, _, report, stepped = start(env)
        images = env.path("killed-" + then)
        os.makedirs(images)
        result = env.cryo("pre-dump", "-t", pid, "-D", images, expect=None,
                          env_extra={"CRYO_FAILPOINT": "remote.syscall"})
        check_eq(result.returncode, -signal.SIGKILL, "cryo's end at its first remote syscall")
        wait_until(lambda: state(pid) not in ("T", "t", "Z", None) and not userfaultfds(pid), 5,
                   what="the process to run on without the userfaultfd cryo made there")
        if then == "pre-dump":
            pre, final = env.path("pre"), env.path("final")
            pre_dump(env, pid, pre)
            check_eq(userfaultfds(pid), [], "the pre-dump keeps no userfaultfd in the process")
            check(tracked_flags(pid), "and tracks the process's writes")
            step(env, pid, stepped)
            tree = snapshot(pid)
            env.dump(pid, final, "--prev-images-dir", "../pre")
        else:
            final = env.path("full")
            step(env, pid, stepped)
            tree = snapshot(pid)
            env.dump(pid, final)
        env.wait_dumped(tree)
        _, rpid = env.restore(final)
        check_eq(rpid, pid, "restored pid")
        check_eq(userfaultfds(pid), [], "the restored process holds no userfaultfd (%s)" % then)
        env.trigger_and_report(pid, report)
        for name in ("ready", "report", "stepped"):
            if os.path.exists(env.path(name)):
                os.remove(env.path(name))


def case_lazy(env):
    """A lazy restore of an incremental image serves the pages kept in its parent too
    (no step: no child shares the memory, which then is all lazy)."""
    pid, _, report, _ = start(env)
    pre, final = env.path("pre"), env.path("final")
    pre_dump(env, pid, pre)
    tree = snapshot(pid)
    env.dump(pid, final, "--prev-images-dir", "../pre")
    env.wait_dumped(tree)
    daemon, out, err = env.cryo_background_env({}, "lazy-pages", "-D", final, "-v4", "-o", env.path("lazy-pages.log"))
    env.logs.append(env.path("lazy-pages.log"))

    def listening():
        check(daemon.poll() is None, "lazy-pages exited: " + (read_text(err, "") or "").strip())
        return os.path.exists(os.path.join(final, "lazy-pages.socket"))
    wait_until(listening, 30, what="lazy-pages to listen")
    _, rpid = env.restore(final, "--lazy-pages")
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)
    check_eq(daemon.wait(timeout=60), 0, "lazy-pages exit code")


def case_keeper_exits(env):
    """A pre-dump whose dump never comes: the keeper ends with the tree."""
    pid, _, report, stepped = start(env)
    pre_dump(env, pid, env.path("pre"))
    check(len(keepers()) == 1, "a keeper runs after pre-dump")
    step(env, pid, stepped)  # writes after the protection: no fault stops the tree
    env.trigger_and_report(pid, report)
    wait_until(lambda: not keepers(), 5, what="the keeper to end with the tree")
    # And a dump against a pre-dump whose tracking is gone saves memory whole.


def case_starts_over(env):
    """After a pre-dump, a pre-dump and a dump -R that name no parent (as `podman
    container checkpoint` without --with-previous after a pre-checkpoint) each start
    over: they end the write tracking before them, where they refused the memory as
    userfaultfd-registered. A dump naming the second pre-dump as parent then finds
    its tracking gone and saves the memory whole; every page checks after the restore."""
    pid, _, report, stepped = start(env)
    pre1, pre2, running, final = env.path("pre1"), env.path("pre2"), env.path("running"), env.path("final")
    entry = f"/run/cryo-keepers/{pid}"
    pre_dump(env, pid, pre1)
    first = keepers()
    check_eq(len(first), 1, "keepers after the first pre-dump")
    check(os.path.exists(entry), f"no {entry} names the keeper of pid {pid}")
    step(env, pid, stepped)
    pre_dump(env, pid, pre2)
    wait_until(lambda: first[0] not in keepers(), 5, what="the first pre-dump's keeper to end")
    check_eq(len(keepers()), 1, "keepers after the second pre-dump")
    os.makedirs(running, exist_ok=True)
    env.cryo("dump", "-R", "-t", pid, "-D", running, log_name="dump")
    wait_until(lambda: not keepers(), 5, what="the second pre-dump's keeper to end")
    check(not tracked_flags(pid), f"memory of pid {pid} is still registered for write tracking")
    check(not os.path.exists(entry), f"{entry} is left after its keeper ended")
    tree = snapshot(pid)
    result = env.dump(pid, final, "--prev-images-dir", "../pre2")
    check("is gone: memory is saved whole" in (read_text(result.log_path) or ""),
          "the dump against the second pre-dump does not say its tracking is gone")
    env.wait_dumped(tree)
    _, rpid = env.restore(final)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_own_userfaultfd(env):
    pid, info, report, stepped = start(env, "uffd")
    result = pre_dump(env, pid, env.path("pre"), expect=1)
    check(f"pid {pid} fd {info['uffd']}" in result.stderr, f"the refusal names the pid and fd: {result.stderr.strip()}")
    check(not keepers(), "no keeper after a refused pre-dump")
    check(not tracked_flags(pid), "no write tracking after a refused pre-dump")
    step(env, pid, stepped)
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({
        "incremental": case_incremental,
        "chain": case_chain,
        "refused_parent": case_refused_parent,
        "killed_predump": case_killed_predump,
        "killed_making_tracker": case_killed_making_tracker,
        "lazy": case_lazy,
        "keeper_exits": case_keeper_exits,
        "starts_over": case_starts_over,
        "own_userfaultfd": case_own_userfaultfd,
    })
