#!/usr/bin/env python3
"""Lazy restore (post-copy): `cryo restore --lazy-pages` leaves private anonymous memory to
`cryo lazy-pages`, which copies each page in through userfaultfd on first touch and the rest
in the background. The restored process checks all of its memory against the pattern it
wrote, having first given up a range (madvise MADV_DONTNEED: it must read zeros), moved
another (mremap) and forked a child that checks its own copy, all while the pages were
still coming. A daemon killed midway takes the restored tree with it (it never runs with
memory missing); a restore without a daemon is refused.
cow: memory a parent and its children share copy-on-write since their fork (the sharing
workload's 64 MiB shared by five processes) stays one copy after a lazy restore, as after a
whole one, and each process still sees its own writes only."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from test_sharing import MIB, pss_in  # noqa: E402
from harness import check, check_eq, exists, exit_status_text, log, read_text, reap, run, snapshot, state, wait_until  # noqa: E402


def dumped_lazymem(env, mib=256):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("lazymem"), ready, report, "--mib", str(mib), "--after-restore"])
    env.wait_ready(ready, pid)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    return pid, report, images


def start_daemon(env, images, env_extra=None):
    """cryo lazy-pages, its background copy slowed to 64 MiB/s, so that what the process
    does after its restore meets pages still missing."""
    env_extra = {"CRYO_LAZY_RATE": "64", **(env_extra or {})}
    socket_path = os.path.join(images, "lazy-pages.socket")
    proc, out, err = env.cryo_background_env(env_extra, "lazy-pages", "-D", images, "-v4", "-o",
                                             env.path("lazy-pages.log"))
    env.logs.append(env.path("lazy-pages.log"))

    def listening():
        check(proc.poll() is None, "lazy-pages exited: " + (read_text(err, "") or "").strip())
        return os.path.exists(socket_path)
    wait_until(listening, 30, what="lazy-pages to listen")
    return proc, err


def case_local(env):
    pid, report, images = dumped_lazymem(env)
    daemon, err = start_daemon(env, images)
    _, rpid = env.restore(images, "--lazy-pages")
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report, timeout=60)
    rc = daemon.wait(timeout=60)
    daemon_log = read_text(env.path("lazy-pages.log"), "")
    check_eq(rc, 0, "lazy-pages exit code (stderr: " + (read_text(err, "") or "").strip() + ")")
    check("forked" in daemon_log, "lazy-pages did not follow the fork")
    check("lazy pages done" in daemon_log, "lazy-pages did not say it was done")


def case_daemon_killed(env):
    pid, report, images = dumped_lazymem(env)
    # The daemon dies (SIGKILL) at its 2nd background MiB, memory still missing: the stream
    # starts 30 ms after the restore, too soon for the process to have pulled in its 256 MiB
    # through faults (later, under load, it could have: the daemon then ended with 0).
    daemon, err = start_daemon(env, images, {"CRYO_FAILPOINT": "lazy.background:2"})
    result, rpid = env.restore(images, "--lazy-pages", expect=None)
    log(f"restore exit {result.returncode}")
    if exists(pid) and state(pid) != "Z":
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    daemon.wait(timeout=30)
    check(daemon.returncode == -signal.SIGKILL, f"lazy-pages ended with {daemon.returncode}, not by its failpoint")
    statuses = reap([pid], timeout=30, what="the restored process (the keeper should kill it)")
    if pid in statuses:
        status = statuses[pid]
        check(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
              f"the restored process ended with {exit_status_text(status)}, not killed")
    check(not read_text(report), "the restored process ran with memory missing and reported: " + (read_text(report) or ""))


def case_no_daemon(env):
    pid, report, images = dumped_lazymem(env, mib=8)
    result, _ = env.restore(images, "--lazy-pages", expect=1)
    check("no lazy-pages daemon" in result.stderr, f"the refusal does not say the daemon is missing: {result.stderr.strip()}")
    check(not exists(pid) or state(pid) == "Z", "a process of the failed restore is left")


def case_corrupt_page(env):
    """A page of the image changed after the dump: the daemon checks every run before it
    serves one and refuses the image, naming it; the restore then has no daemon."""
    pid, report, images = dumped_lazymem(env, mib=32)
    # The largest page file (pages.img, or pages-N.img: the process wrote its own pages)
    pages = max((os.path.join(images, n) for n in os.listdir(images) if n.startswith("pages")), key=os.path.getsize)
    with open(pages, "r+b") as f:
        f.seek(os.path.getsize(pages) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xff]))
    result = env.cryo("lazy-pages", "-D", images, expect=1)
    check("checksum mismatch" in result.stderr, f"lazy-pages does not name the corrupt page: {result.stderr.strip()}")
    check(not os.path.exists(os.path.join(images, "lazy-pages.socket")), "lazy-pages left its socket")


def case_cow(env):
    ready, report = env.path("ready"), env.path("report")
    root = env.spawn([env.workload("sharing"), "cow", ready, report], name="sharing")
    info = env.wait_ready(ready, root)
    pids = [info[n] for n in ("R", "C0", "C1", "C2", "G")]
    start, end = info["addr"], info["addr"] + 64 * MIB
    before = snapshot(root)
    images = env.path("images")
    env.dump(root, images)
    env.wait_dumped(before)
    daemon, err = start_daemon(env, images)
    _, rpid = env.restore(images, "--lazy-pages")
    check_eq(rpid, root, "restored pid")
    check_eq(daemon.wait(timeout=60), 0, "lazy-pages exit code (stderr: " + (read_text(err, "") or "").strip() + ")")
    pss = sum(pss_in(p, start, end) for p in pids)
    log(f"Pss of the 64 MiB mapping in the 5 processes once every page is in: {pss / MIB:.1f} MiB")
    check(pss < 80 * MIB, f"the lazily restored tree holds {pss / MIB:.1f} MiB of the mapping: not shared as it was")
    env.trigger_and_report(root, report)


if __name__ == "__main__":
    run({"local": case_local, "daemon_killed": case_daemon_killed, "no_daemon": case_no_daemon,
         "corrupt_page": case_corrupt_page, "cow": case_cow})
