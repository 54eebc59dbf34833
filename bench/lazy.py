#!/usr/bin/env python3
"""How soon a lazily restored process answers (make bench runs it after bench.py): a process holding MiB of touched memory (integration's lazymem workload) is
dumped to tmpfs, then restored three ways: whole (`cryo restore -d`), lazily (`cryo
lazy-pages` started first, `cryo restore -d --lazy-pages`), and as a lazy migration over
loopback TCP ("remote": `cryo dump --lazy-pages --port 0` serves the frozen tree's memory,
the image is copied to another directory, `cryo lazy-pages --page-server` fetches from it,
the restore runs under --new-pidns since the source still holds the pids). Each time the
process is asked (SIGUSR2) to touch a page in the middle of its memory and answer with one
byte; the time from the start of the restore to the answer is what a client of it would
wait; "all in" is when the daemon has every page (and, remote, the source has exited).
Each is run REPEAT times (CRYO_BENCH_REPEAT, 3 by default) and the medians are printed;
CRYO_BENCH_MODES="lazy remote" picks modes.

usage: lazy.py path/to/cryo path/to/lazymem [MIB...]   (2048 by default)"""
import os
import shutil
import statistics
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


def start_lazymem(lazymem, mib, work):
    """A lazymem of mib MiB in a run directory of its own, ready: (run, its answers file, its Popen)."""
    run = tempfile.mkdtemp(dir=work)
    out = os.path.join(run, "answers")
    ready = os.path.join(run, "ready")
    with open(out, "wb") as f:
        proc = subprocess.Popen([lazymem, ready, os.path.join(run, "report"), "--mib", str(mib)],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL, start_new_session=True)
    harness._POPENS.append(proc)
    harness.wait_until(lambda: os.path.exists(ready) and os.path.getsize(ready) > 0, 300, what="lazymem ready")
    return run, out, proc


def remote(cryo, lazymem, mib, work):
    """A lazy migration on one host; returns (restore, answer, all in, freeze to serving) seconds."""
    run, out, proc = start_lazymem(lazymem, mib, work)
    images = os.path.join(run, "images")
    os.mkdir(images)
    status_read, status_write = os.pipe()
    dumped = time.monotonic()
    source = subprocess.Popen([cryo, "dump", "-t", str(proc.pid), "-D", images, "--lazy-pages", "--address",
                               "127.0.0.1", "--port", "0", "--status-fd", str(status_write)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=(status_write,))
    harness._POPENS.append(source)
    os.close(status_write)
    if os.read(status_read, 1) != b"\0":
        raise RuntimeError("the source did not serve")
    serving = time.monotonic()
    os.close(status_read)
    port = source.stdout.readline().decode().strip()
    dest = os.path.join(run, "dest")
    shutil.copytree(images, dest)
    daemon = subprocess.Popen([cryo, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", port,
                               "-D", dest], stdin=subprocess.DEVNULL)
    harness.wait_until(lambda: os.path.exists(os.path.join(dest, "lazy-pages.socket")), 120, what="lazy-pages")
    pidfile = os.path.join(run, "pid")
    size = os.path.getsize(out)
    start = time.monotonic()
    subprocess.run([cryo, "restore", "-D", dest, "-d", "--lazy-pages", "--new-pidns", "--pidfile", pidfile], check=True)
    restored = time.monotonic()
    host = int(open(pidfile).read())
    os.kill(host, signal.SIGUSR2)
    answered = wait_answer(out, size)
    daemon.wait(timeout=300)
    source.wait(timeout=300)
    done = time.monotonic()
    os.kill(host, signal.SIGKILL)
    harness.kill_descendants()
    shutil.rmtree(run, ignore_errors=True)
    return restored - start, answered - start, done - start, serving - dumped


def one(cryo, lazymem, mib, lazy, work):
    run, out, proc = start_lazymem(lazymem, mib, work)
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
        repeat = int(os.environ.get("CRYO_BENCH_REPEAT", "3"))
        print(f"medians of {repeat}; remote: the source's dump (frozen until it serves) in the last column")
        print(f"{'MiB':>6} {'mode':>6} {'restore ms':>11} {'answer ms':>10} {'all in ms':>10} {'dump ms':>8}")
        for mib in sizes:
            for mode in os.environ.get("CRYO_BENCH_MODES", "whole lazy remote").split():
                runs = []
                for _ in range(repeat):
                    if mode == "remote":
                        runs.append(remote(cryo, lazymem, mib, work))
                    else:
                        r, a, d = one(cryo, lazymem, mib, mode == "lazy", work)
                        runs.append((r, a, d if d else r, 0.0))
                med = [statistics.median(column) * 1000 for column in zip(*runs)]
                print(f"{mib:>6} {mode:>6} {med[0]:>11.1f} {med[1]:>10.1f} {med[2]:>10.1f} "
                      f"{(f'{med[3]:.1f}' if mode == 'remote' else '-'):>8}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        harness.kill_descendants()


if __name__ == "__main__":
    main()
