#!/usr/bin/env python3
"""cryo's benchmarks (see run.sh). Standard library only; shares the integration
harness for process handling (subreaper, reaping)."""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "integration", "lib"))
import harness  # noqa: E402

SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "64,512,2048").split(",") if s]
TINY_RUNS = int(os.environ.get("BENCH_TINY_RUNS", "10"))
BASELINE_RUNS = int(os.environ.get("BENCH_BASELINE_RUNS", "3"))


def run_json(argv):
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


class Bench:
    def __init__(self, cryo, memload):
        self.cryo, self.memload = cryo, memload
        self.work = tempfile.mkdtemp(prefix="cryo-bench-")

    def start(self, mib):
        ready = os.path.join(self.work, "ready")
        if os.path.exists(ready):
            os.remove(ready)
        proc = subprocess.Popen([self.memload, "hold", str(mib), ready], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        harness._POPENS.append(proc)
        harness.wait_until(lambda: os.path.exists(ready) and os.path.getsize(ready) > 0, 120, what="memload ready")
        return proc.pid

    def cryo_run(self, *args):
        t0 = time.monotonic()
        result = subprocess.run([self.cryo, *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        took = time.monotonic() - t0
        if result.returncode != 0:
            raise RuntimeError(f"cryo {' '.join(map(str, args))}: exit {result.returncode}: {result.stderr.strip()}")
        return took

    def dump_restore(self, mib, storage):
        """Returns (dump seconds, restore seconds, stats-dump.json)."""
        images = tempfile.mkdtemp(prefix="img-", dir=storage)
        try:
            pid = self.start(mib)
            dump_s = self.cryo_run("dump", "-t", pid, "-D", images)
            with open(os.path.join(images, "stats-dump.json")) as f:
                stats = json.load(f)
            harness.reap([pid], timeout=30)
            pidfile = os.path.join(self.work, "pid")
            restore_s = self.cryo_run("restore", "-D", images, "-d", "--pidfile", pidfile)
            os.kill(pid, signal.SIGKILL)
            harness.reap([pid], timeout=30)
            return dump_s, restore_s, stats
        finally:
            harness.kill_descendants()
            shutil.rmtree(images, ignore_errors=True)

    def cleanup(self):
        harness.kill_descendants()
        shutil.rmtree(self.work, ignore_errors=True)


def mount_tmpfs(size_mib):
    """A private tmpfs (falls back to /dev/shm). Returns (path, unmount function)."""
    path = tempfile.mkdtemp(prefix="cryo-bench-tmpfs-")
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "cryo-bench", path],
                        stderr=subprocess.DEVNULL).returncode
    if rc == 0:
        def unmount():
            subprocess.run(["umount", path])
            os.rmdir(path)
        return path, unmount
    os.rmdir(path)
    path = tempfile.mkdtemp(prefix="cryo-bench-", dir="/dev/shm")
    return path, lambda: shutil.rmtree(path, ignore_errors=True)


def mibs(mib, seconds):
    return mib / seconds if seconds > 0 else float("inf")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench.py path/to/cryo")
    cryo = os.path.abspath(sys.argv[1])
    build = os.path.dirname(os.path.dirname(cryo))
    memload = os.environ.get("CRYO_BENCH_MEMLOAD") or os.path.join(build, "bench", "memload")
    for path in (cryo, memload):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} is not built (make build)")
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    if not SIZES:
        sys.exit("bench: BENCH_SIZES names no size (MiB, comma separated)")
    harness.become_subreaper()
    bench = Bench(cryo, memload)
    tmpfs, unmount = mount_tmpfs(max(SIZES) * 2 + 512)
    disk = tempfile.mkdtemp(prefix="cryo-bench-", dir="/var/tmp")
    storages = [("tmpfs", tmpfs), ("disk", disk)]
    rows, failures = [], []
    try:
        print(f"cryo bench: {os.uname().release}, {os.cpu_count()} CPUs; images on tmpfs ({tmpfs}) and disk ({disk})",
              flush=True)
        for mib in SIZES:
            # Baselines: the median of BASELINE_RUNS runs each (single runs are noisy here).
            copies = [run_json([memload, "memcpy", str(mib)]) for _ in range(BASELINE_RUNS)]
            copy = {k: statistics.median(c[k] for c in copies) for k in ("hot_s", "cold_s")}
            for name, where in storages:
                target = os.path.join(where, "write-baseline")
                writes = []
                for _ in range(BASELINE_RUNS):
                    writes.append(run_json([memload, "write", target, str(mib)])["write_s"])
                    os.remove(target)
                write_s = statistics.median(writes)
                try:
                    dump_s, restore_s, stats = bench.dump_restore(mib, where)
                except Exception as e:  # noqa: BLE001 - reported in the table
                    failures.append(f"{mib} MiB on {name}: {e}")
                    print(f"  {mib} MiB on {name}: FAILED: {e}", flush=True)
                    continue
                row = dict(mib=mib, storage=name, dump_s=dump_s, restore_s=restore_s, freeze_ms=stats["freeze_us"] / 1e3,
                           image_mib=stats["pages_bytes"] / 2**20, write_s=write_s, hot_s=copy["hot_s"],
                           cold_s=copy["cold_s"])
                rows.append(row)
                print(f"  {mib} MiB on {name}: dump {dump_s:.3f} s, restore {restore_s:.3f} s", flush=True)

        tiny_dump, tiny_restore, tiny_freeze = [], [], []
        for _ in range(TINY_RUNS):
            try:
                d, r, stats = bench.dump_restore(0, tmpfs)
            except Exception as e:  # noqa: BLE001
                failures.append(f"tiny process: {e}")
                break
            tiny_dump.append(d)
            tiny_restore.append(r)
            tiny_freeze.append(stats["freeze_us"] / 1e3)
    finally:
        bench.cleanup()
        unmount()
        shutil.rmtree(disk, ignore_errors=True)

    print()
    print("Dump and restore throughput (MiB/s = process size / wall time of the cryo command)")
    header = (f"{'size':>7} {'images':>6} | {'dump s':>7} {'MiB/s':>7} {'freeze ms':>9} | {'write MiB/s':>11} "
              f"{'dump/write':>10} | {'restore s':>9} {'MiB/s':>7} | {'memcpy hot':>10} {'cold':>7} "
              f"{'restore/cold':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        dump_rate, restore_rate = mibs(r["mib"], r["dump_s"]), mibs(r["mib"], r["restore_s"])
        write_rate, hot, cold = mibs(r["mib"], r["write_s"]), mibs(r["mib"], r["hot_s"]), mibs(r["mib"], r["cold_s"])
        print(f"{r['mib']:>4} MiB {r['storage']:>6} | {r['dump_s']:>7.3f} {dump_rate:>7.0f} {r['freeze_ms']:>9.1f} | "
              f"{write_rate:>11.0f} {dump_rate / write_rate:>10.2f} | {r['restore_s']:>9.3f} {restore_rate:>7.0f} | "
              f"{hot:>10.0f} {cold:>7.0f} {restore_rate / cold:>12.2f}")
    print()
    print("freeze ms: freeze_us of stats-dump.json (how long the tree stood still). write: write() of the same")
    print("size to a new file on the same storage, no fsync; memcpy hot: into memory already faulted in; cold:")
    print(f"into fresh memory (what a restore must populate). Baselines: median of {BASELINE_RUNS} runs.")
    if tiny_dump:
        print()
        print(f"Tiny process (memload with no extra memory), {len(tiny_dump)} runs, images on tmpfs:")
        print(f"  dump    median {statistics.median(tiny_dump) * 1e3:7.1f} ms  (min {min(tiny_dump) * 1e3:.1f}, "
              f"max {max(tiny_dump) * 1e3:.1f})")
        print(f"  restore median {statistics.median(tiny_restore) * 1e3:7.1f} ms  (min {min(tiny_restore) * 1e3:.1f}, "
              f"max {max(tiny_restore) * 1e3:.1f})")
        print(f"  freeze  median {statistics.median(tiny_freeze):7.2f} ms  (from stats-dump.json)")
    if failures:
        print()
        print("FAILURES:")
        for f in failures:
            print(f"  {f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
