#!/usr/bin/env python3
"""SIGKILL of `cryo restore` in the middle (1 GiB image, killed after 50, 200 and
500 ms) must not leave half-restored tasks behind: afterwards either nothing of the
tree exists, or all of it runs correctly. The image is not modified, and a normal
restore afterwards works. SIGTERM and SIGINT stop the restore at its next step: cryo
says so, exits 1 and kills what it made."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, descendants, exists, hash_dir, log, progress, reap,  # noqa
                     run, snapshot, state, wait_progress)


def case_sigkill_mid_restore(env):
    interrupt_restores(env, signal.SIGKILL, (0.05, 0.2, 0.5))


def case_sigterm_mid_restore(env):
    interrupt_restores(env, signal.SIGTERM, (0.1, 0.3))


def case_sigint_mid_restore(env):
    interrupt_restores(env, signal.SIGINT, (0.2,))


def interrupt_restores(env, signo, delays):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--mib", "1024", "--threads", "2", "--child"])
    env.wait_ready(ready, pid, timeout=90)
    wait_progress(prog, 2)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    hashes = hash_dir(images)

    killed_in_flight = 0
    for delay in delays:
        mine = set(descendants(os.getpid()))
        proc, _, err = env.cryo_background("restore", "-D", images, "-d", "-o", env.path(f"restore-{delay}.log"),
                                           "-v", "4")
        time.sleep(delay)
        in_flight = proc.poll() is None
        if in_flight:
            proc.send_signal(signo)
            killed_in_flight += 1
        proc.wait()
        if in_flight and signo != signal.SIGKILL and proc.returncode != 0:
            message = open(err).read()
            check_eq(proc.returncode, 1, "exit code of the interrupted restore")
            check("interrupted by" in message, f"cryo does not say it was interrupted: {message.strip()!r}")
        time.sleep(0.5)
        alive = [p for p in before if exists(p) and state(p) not in ("Z", "X")]
        new = sorted(set(descendants(os.getpid())) - mine - set(before))
        if alive and len(alive) == len([p for p in before if before[p]["state"] != "Z"]) and proc.returncode == 0:
            log(f"restore finished before the kill at {delay * 1000:.0f} ms; the tree must run correctly")
            compare_snapshots(before, snapshot(pid), pid)
            seen = progress(prog)
            wait_progress(prog, seen[0] + 3)
            for p in before:
                os.kill(p, signal.SIGKILL)
            reap(list(before), what="restored tree")
        else:
            desc = ", ".join(f"{p} ({state(p)}, {read_comm(p)})" for p in alive + new)
            check(not alive and not new,
                  f"killing cryo restore after {delay * 1000:.0f} ms left tasks behind: {desc}")
            log(f"killed cryo restore after {delay * 1000:.0f} ms: nothing left behind")
        reap([p for p in before if exists(p)] + [p for p in new if exists(p)], timeout=5)
        after = hash_dir(images)
        changed = sorted(k for k in set(hashes) | set(after) if hashes.get(k) != after.get(k))
        check(not changed, f"the killed restore changed the image: {changed}")
    check(killed_in_flight > 0, "cryo restore was never still running when killed")

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid after the interrupted restores")
    compare_snapshots(before, snapshot(pid), pid)
    env.trigger_and_report(pid, report, timeout=60)


def read_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    run({"sigkill_mid_restore": case_sigkill_mid_restore, "sigterm_mid_restore": case_sigterm_mid_restore,
         "sigint_mid_restore": case_sigint_mid_restore})
