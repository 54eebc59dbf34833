#!/usr/bin/env python3
"""Incremental dumps: how long a process that keeps writing is frozen by the dump
after a pre-dump, next to a full dump of the same process.

For each size: a dirtier process (bench/dirtier.c) writes PERMILLE thousandths of its
pages per second; cryo dump -R (full) is measured, then cryo pre-dump, a second of
writes, and cryo dump -R --prev-images-dir (incremental). Prints freeze_us (from
stats-dump.json) of both, the full dump's whole time (total_us: since dump -R copies
while the tree runs, its own freeze is short too), the ratio of the incremental freeze
to that time (the issue's target: under 0.10 at 2 GiB writing 1%/s), the bytes each
stored, and the longest gap the process saw between its 1 ms ticks.
Images on tmpfs (/dev/shm). Usage: incremental.py CRYO [MIB...]"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "integration", "lib"))
import harness  # noqa: E402

PERMILLE = 10  # 1% of the pages per second


def cryo(binary, *args):
    result = subprocess.run([binary, *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"cryo {' '.join(map(str, args))}: exit {result.returncode}: {result.stderr.strip()}")


def stats(images):
    with open(os.path.join(images, "stats-dump.json")) as f:
        return json.load(f)


def max_gap(pid, path):
    if os.path.exists(path):
        os.remove(path)
    os.kill(pid, signal.SIGUSR1)
    harness.wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10, what="the tick gap report")
    with open(path) as f:
        return int(f.read().split()[1])


def measure(binary, dirtier, mib, work):
    ready, gaps = os.path.join(work, "ready"), os.path.join(work, "gaps")
    # The previous size's ready would let the signal below reach a dirtier still
    # filling its memory, before its handler is set: SIGUSR1 would kill it.
    for stale in (ready, gaps):
        if os.path.exists(stale):
            os.remove(stale)
    proc = subprocess.Popen([dirtier, str(mib), str(PERMILLE), ready, gaps], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    harness._POPENS.append(proc)
    try:
        harness.wait_until(lambda: os.path.exists(ready) and os.path.getsize(ready) > 0, 120, what="dirtier ready")
        time.sleep(1)
        max_gap(proc.pid, gaps)  # from here on
        full = os.path.join(work, f"full-{mib}")
        os.makedirs(full)
        cryo(binary, "dump", "-R", "-t", proc.pid, "-D", full)
        full_gap = max_gap(proc.pid, gaps)
        full_stats = stats(full)
        shutil.rmtree(full)
        pre, final = os.path.join(work, f"pre-{mib}"), os.path.join(work, f"final-{mib}")
        os.makedirs(pre)
        os.makedirs(final)
        cryo(binary, "pre-dump", "-t", proc.pid, "-D", pre)
        pre_gap = max_gap(proc.pid, gaps)
        time.sleep(1)
        max_gap(proc.pid, gaps)
        cryo(binary, "dump", "-R", "-t", proc.pid, "-D", final, "--prev-images-dir", f"../pre-{mib}")
        inc_gap = max_gap(proc.pid, gaps)
        inc_stats = stats(final)
        return dict(mib=mib, full_freeze_us=full_stats["freeze_us"], full_total_us=full_stats["total_us"],
                    full_bytes=full_stats["pages_bytes"],
                    full_gap_us=full_gap, pre_dump_gap_us=pre_gap, incremental_freeze_us=inc_stats["freeze_us"],
                    incremental_bytes=inc_stats["pages_bytes"], incremental_gap_us=inc_gap,
                    ratio=inc_stats["freeze_us"] / full_stats["total_us"])
    finally:
        proc.kill()
        harness.reap([proc.pid], timeout=30)
        for name in os.listdir(work):
            if name.startswith(("pre-", "final-", "full-")):
                shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def main():
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/runtime/cryo"
    sizes = [int(a) for a in sys.argv[2:]] or [512, 2048]
    dirtier = os.environ.get("CRYO_BENCH_DIRTIER") or os.path.join(os.path.dirname(os.path.dirname(binary)),
                                                                    "bench", "dirtier")
    harness.become_subreaper()
    work = tempfile.mkdtemp(prefix="cryo-bench-incr-", dir="/dev/shm")
    rows = []
    try:
        for mib in sizes:
            rows.append(measure(binary, dirtier, mib, work))
    finally:
        harness.kill_descendants()
        shutil.rmtree(work, ignore_errors=True)
    print(f"Incremental dumps: a process writing {PERMILLE / 10:g}% of its pages per second, dump -R, images on tmpfs")
    print(f"{'MiB':>5} | {'full ms':>8} {'freeze ms':>9} {'MB':>6} {'gap ms':>7} | {'pre-dump gap ms':>15} | "
          f"{'incr freeze ms':>14} {'MB':>6} {'gap ms':>7} | {'incr/full':>9}")
    for r in rows:
        print(f"{r['mib']:>5} | {r['full_total_us'] / 1e3:>8.1f} {r['full_freeze_us'] / 1e3:>9.1f} "
              f"{r['full_bytes'] / 1e6:>6.1f} "
              f"{r['full_gap_us'] / 1e3:>7.1f} | {r['pre_dump_gap_us'] / 1e3:>15.1f} | "
              f"{r['incremental_freeze_us'] / 1e3:>14.1f} {r['incremental_bytes'] / 1e6:>6.1f} "
              f"{r['incremental_gap_us'] / 1e3:>7.1f} | {r['ratio']:>9.3f}")
    print("freeze: freeze_us of stats-dump.json; gap: the longest the process saw between its 1 ms ticks "
          "; incr/full: the incremental freeze over the full dump's whole time (target at 2 GiB: under 0.10)")
    out = os.environ.get("CRYO_BENCH_INCREMENTAL_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
