#!/usr/bin/env python3
"""A dump or restore that runs long on a terminal shows a progress line (phase, bytes
of memory, rate) on its stderr and erases it at the end; without a terminal it prints
none. stats-dump.json records how long each phase took. (CRYO_PROGRESS_AFTER_MS=0
shows the line at once instead of after a second, so that the test needs no slow
dump.) The restored counter verifies its memory."""
import json
import os
import pty
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import _POPENS, check, check_eq, log, run, snapshot, wait_progress  # noqa: E402


def cryo_on_pty(env, *args):
    """Runs cryo with its stderr on a pseudo-terminal; returns (exit code, what it wrote there)."""
    master, slave = pty.openpty()
    out = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the last holder of the slave is gone
                return
            if not data:
                return
            out.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with open(env.path("pty-cryo.out"), "wb") as stdout:
        proc = subprocess.Popen([env.cryo_path, *map(str, args)], stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=slave, env={**os.environ, "CRYO_PROGRESS_AFTER_MS": "0"})
    _POPENS.append(proc)
    os.close(slave)
    rc = proc.wait(timeout=180)
    reader.join(timeout=10)
    os.close(master)
    text = b"".join(out).decode(errors="replace")
    log(f"cryo {' '.join(map(str, args))} on a pty -> {rc}; wrote {text[-300:]!r}")
    return rc, text


def check_progress(text, verb):
    check(f"cryo {verb}: " in text, f"no progress line of cryo {verb} on the terminal: {text[-400:]!r}")
    check("MiB of memory" in text or "GiB of memory" in text, f"the progress line shows no bytes: {text[-400:]!r}")
    check("/s, " in text, f"the progress line shows no rate: {text[-400:]!r}")
    check(text.endswith("\r\x1b[K"), f"the progress line is not erased at the end: {text[-80:]!r}")


def case_terminal(env):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--mib", "64", "--child"])
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    rc, text = cryo_on_pty(env, "dump", "-t", pid, "-D", images)
    check_eq(rc, 0, "exit code of the dump on a pty")
    check_progress(text, "dump")
    with open(os.path.join(images, "stats-dump.json")) as f:
        stats = json.load(f)
    log(f"stats-dump.json: {stats}")
    phases = stats.get("phases", {})
    # (Killing the tree is a phase of its own: a dying process frees its memory first.)
    for phase in ("freezing_us", "writing_memory_us", "killing_the_tree_us"):
        check(phase in phases, f"stats-dump.json has no phase {phase} (has {sorted(phases)})")
    check(phases.get("writing_memory_us", 0) > 0, "stats-dump.json: writing memory took no time")
    check(sum(phases.values()) <= stats["total_us"] + 1000, f"the phases last longer than the dump: {stats}")
    env.wait_dumped(before)
    pidfile = env.path("restore.pid")
    rc, text = cryo_on_pty(env, "restore", "-D", images, "-d", "--pidfile", pidfile)
    check_eq(rc, 0, "exit code of the restore on a pty")
    check_progress(text, "restore")
    env.trigger_and_report(pid, report)


def case_no_terminal(env):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--mib", "16"])
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    result = env.cryo("dump", "-t", pid, "-D", images, env_extra={"CRYO_PROGRESS_AFTER_MS": "0"})
    check("cryo dump: " not in result.stderr and "\x1b[K" not in result.stderr,
          f"a progress line went to a stderr that is no terminal: {result.stderr[-300:]!r}")
    env.wait_dumped(before)
    result, rpid = env.restore(images, env_extra={"CRYO_PROGRESS_AFTER_MS": "0"})
    check_eq(rpid, pid, "restored pid")
    check("\x1b[K" not in result.stderr, f"a progress line went to a file: {result.stderr[-300:]!r}")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"terminal": case_terminal, "no_terminal": case_no_terminal})
