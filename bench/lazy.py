#!/usr/bin/env python3
"""How soon a lazily restored process answers (make bench runs bench.py; this one is
separate): a process holding MiB of touched memory (integration's lazymem workload) is
dumped to tmpfs, then restored twice: whole (`cryo restore -d`) and lazily (`cryo
lazy-pages` started first, `cryo restore -d --lazy-pages`). Each time the process is asked
(SIGUSR2) to touch a page in the middle of its memory and answer with one byte; the time
from the start of the restore to the answer is what a client of it would wait.

usage: lazy.py path/to/cryo path/to/lazymem [MIB...]   (2048 by default)"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "integration", "lib"))
import harness  # noqa: E402


def wait_answer(path, size_before, timeout=60):
    deadline = time.monotonic() + timeout
    while os.path.getsize(path) <= size_before:
        if time.monotonic() > deadline:
            raise RuntimeError("no answer")
        time.sleep(0.0002)
    return time.monotonic()


def one(cryo, lazymem, mib, lazy, work):
    run = tempfile.mkdtemp(dir=work)
    out = os.path.join(run, "answers")
    ready = os.path.join(run, "ready")
    with open(out, "wb") as f:
        proc = subprocess.Popen([lazymem, ready, os.path.join(run, "report"), "--mib", str(mib)],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL, start_new_session=True)
    harness._POPENS.append(proc)
    harness.wait_until(lambda: os.path.exists(ready) and os.path.getsize(ready) > 0, 300, what="lazymem ready")
    pid = proc.pid
    images = os.path.join(run, "images")
    os.mkdir(images)
    subprocess.run([cryo, "dump", "-t", str(pid), "-D", images], check=True)
    proc.wait()
    daemon = None
    if lazy:
        daemon = subprocess.Popen([cryo, "lazy-pages", "-D", images], stdin=subprocess.DEVNULL)
        harness.wait_until(lambda: os.path.exists(os.path.join(images, "lazy-pages.socket")), 120, what="lazy-pages")
    size = os.path.getsize(out)
    start = time.monotonic()
    subprocess.run([cryo, "restore", "-D", images, "-d"] + (["--lazy-pages"] if lazy else []), check=True)
    restored = time.monotonic()
    os.kill(pid, signal.SIGUSR2)
    answered = wait_answer(out, size)
    done = None
    if daemon:
        daemon.wait(timeout=300)
        done = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    harness.reap([pid], timeout=30)
    shutil.rmtree(run, ignore_errors=True)
    return restored - start, answered - start, (done - start) if done else None


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cryo, lazymem = sys.argv[1], sys.argv[2]
    sizes = [int(s) for s in sys.argv[3:]] or [2048]
    harness.become_subreaper()
    work = tempfile.mkdtemp(prefix="cryo-bench-lazy-", dir="/dev/shm")
    try:
        print(f"{'MiB':>6} {'mode':>6} {'restore ms':>11} {'answer ms':>10} {'all in ms':>10}")
        for mib in sizes:
            for lazy in (False, True):
                r, a, d = one(cryo, lazymem, mib, lazy, work)
                print(f"{mib:>6} {'lazy' if lazy else 'whole':>6} {r * 1000:>11.1f} {a * 1000:>10.1f} "
                      f"{(d * 1000 if d else r * 1000):>10.1f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        harness.kill_descendants()


if __name__ == "__main__":
    main()
