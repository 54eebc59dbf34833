#!/usr/bin/env python3
"""cryo's benchmarks (see run.sh). Standard library only; shares the integration
harness for process handling (subreaper, reaping).

usage: bench.py path/to/cryo [--compare OLD.json] [--json OUT.json]
Prints a table (size, dump, restore, freeze: each as time, GB/s and its ratio to
the machine's own limit measured in the same run) and writes it as JSON
(bench/results/bench-TIMESTAMP.json unless --json or BENCH_JSON) so that a later
run can be compared with --compare."""
import argparse
import json
import os
import resource
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

# BENCH_SIZES= (empty) runs the tiny process only.
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "64,512,2048").split(",") if s]
TINY_RUNS = int(os.environ.get("BENCH_TINY_RUNS", "30"))
BASELINE_RUNS = int(os.environ.get("BENCH_BASELINE_RUNS", "3"))
# Dump/restore runs per size and storage, their medians reported: single runs of the same
# binary here differed by up to a fifth (64 MiB restores: 43 and 53 ms in two runs).
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
# A tree of processes ("N x MIB": a shell with N children of MIB MiB each), dumped and
# restored on one CPU and on all of them (BENCH_TREE= skips it).
TREE = os.environ.get("BENCH_TREE", "4x256")
TREE_RUNS = int(os.environ.get("BENCH_TREE_RUNS", "3"))


def run_json(argv):
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_json_cpu(argv):
    """run_json, and the user+system time the command took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run_json(argv)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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

    def cryo_run(self, *args, cpus=None):
        """Returns (wall seconds, CPU seconds of cryo and its threads and children); with
        cpus, cryo runs on those only (taskset -c)."""
        pinned = ["taskset", "-c", cpus] if cpus else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        result = subprocess.run([*pinned, self.cryo, *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        took = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise RuntimeError(f"cryo {' '.join(map(str, args))}: exit {result.returncode}: {result.stderr.strip()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return took, cpu

    def dump_restore(self, mib, storage, before_dump=None):
        """Returns {dump_s, dump_cpu_s, restore_s, restore_cpu_s, stats (stats-dump.json)}.
        before_dump(pid) runs once the process holds its memory, right before the dump."""
        images = tempfile.mkdtemp(prefix="img-", dir=storage)
        try:
            pid = self.start(mib)
            if before_dump:
                before_dump(pid)
            dump_s, dump_cpu = self.cryo_run("dump", "-t", pid, "-D", images)
            with open(os.path.join(images, "stats-dump.json")) as f:
                stats = json.load(f)
            harness.reap([pid], timeout=30)
            pidfile = os.path.join(self.work, "pid")
            restore_s, restore_cpu = self.cryo_run("restore", "-D", images, "-d", "--pidfile", pidfile)
            os.kill(pid, signal.SIGKILL)
            harness.reap([pid], timeout=30)
            return dict(dump_s=dump_s, dump_cpu_s=dump_cpu, restore_s=restore_s, restore_cpu_s=restore_cpu, stats=stats)
        finally:
            harness.kill_descendants()
            shutil.rmtree(images, ignore_errors=True)

    def start_tree(self, children, mib):
        """A shell with `children` memload children of mib MiB each; returns the shell's pid."""
        readies = [os.path.join(self.work, f"tree-ready-{i}") for i in range(children)]
        for r in readies:
            if os.path.exists(r):
                os.remove(r)
        script = os.path.join(self.work, "tree.sh")
        with open(script, "w") as f:
            for r in readies:
                f.write(f"{self.memload} hold {mib} {r} &\n")
            f.write("wait\n")
        proc = subprocess.Popen(["bash", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        harness._POPENS.append(proc)
        harness.wait_until(lambda: all(os.path.exists(r) and os.path.getsize(r) > 0 for r in readies), 120,
                           what="the tree's memload children ready")
        return proc.pid

    def tree_dump_restore(self, children, mib, storage, cpus):
        """Dumps and restores the tree with cryo pinned to `cpus` (taskset -c)."""
        images = tempfile.mkdtemp(prefix="img-", dir=storage)
        try:
            pid = self.start_tree(children, mib)
            tree = harness.snapshot(pid)
            warm_up(self.memload, storage, children * mib)
            dump_s, dump_cpu = self.cryo_run("dump", "-t", pid, "-D", images, cpus=cpus)
            with open(os.path.join(images, "stats-dump.json")) as f:
                dump_stats = json.load(f)
            harness.reap(list(tree), timeout=30)
            restore_s, restore_cpu = self.cryo_run("restore", "-D", images, "-d", cpus=cpus)
            with open(os.path.join(images, "stats-restore.json")) as f:
                restore_stats = json.load(f)
            for p in tree:
                os.kill(p, signal.SIGKILL)
            harness.reap(list(tree), timeout=30)
            return dict(dump_s=dump_s, dump_cpu_s=dump_cpu, restore_s=restore_s, restore_cpu_s=restore_cpu,
                        dump_writers=dump_stats.get("page_writers"), restore_writers=restore_stats.get("page_writers"))
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


def gbs(mib, seconds):
    return mib / 1024 / seconds if seconds > 0 else float("inf")


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def warm_up(memload, where, mib):
    """Writes and removes a file of mib MiB: the next mib MiB the kernel hands out are pages
    it has just freed. Memory freed long ago may have gone back to the hypervisor (free page
    reporting, virtio-balloon): touching such a page again costs a fault in the host, about
    10 us a page here, which made the same write 3-10 times slower depending on what ran
    before (1.1-1.5 s of system time for 512 MiB against 0.11-0.14 s). Both the baselines and
    the dumps run right after this, so that they meet memory in the same state."""
    target = os.path.join(where, "warm-up")
    run_json([memload, "write", target, str(mib)])
    os.remove(target)


def measure_size(bench, memload, mib, storages, failures):
    """The rows of one size: on each storage, the write baselines and the dumps, each in the
    same state (the process holding its memory, the memory warmed up just before)."""
    rows = []
    # The memcpy baseline: the median of BASELINE_RUNS runs (single runs are noisy here).
    copies = [run_json([memload, "memcpy", str(mib)]) for _ in range(BASELINE_RUNS)]
    copy = {k: statistics.median(c[k] for c in copies) for k in ("hot_s", "cold_s")}
    for name, where in storages:
        target = os.path.join(where, "write-baseline")
        # The dump makes pages.img durable before it commits (fdatasync; tmpfs has nothing to
        # do): so does the baseline.
        sync = ["fsync"] if name == "disk" else []
        writes, write_cpus = [], []

        def baselines(pid, count):
            for _ in range(count):
                warm_up(memload, where, mib)
                out, cpu = run_json_cpu([memload, "write", target, str(mib), *sync])
                writes.append(out["write_s"])
                write_cpus.append(cpu)
                os.remove(target)
            warm_up(memload, where, mib)

        runs = []
        for i in range(RUNS):
            try:
                count = BASELINE_RUNS if i == 0 else 1
                runs.append(bench.dump_restore(mib, where, lambda pid, count=count: baselines(pid, count)))
            except Exception as e:  # noqa: BLE001 - reported in the table
                failures.append(f"{mib} MiB on {name}: {e}")
                print(f"  {mib} MiB on {name}: FAILED: {e}", flush=True)
                break
        if len(runs) < RUNS:
            continue
        write_s, write_cpu_s = statistics.median(writes), statistics.median(write_cpus)
        freeze_s = statistics.median(r["stats"]["freeze_us"] / 1e6 for r in runs)
        row = dict(mib=mib, storage=name, runs=RUNS, dump_s=median_of(runs, "dump_s"),
                   dump_cpu_s=median_of(runs, "dump_cpu_s"), restore_s=median_of(runs, "restore_s"),
                   restore_cpu_s=median_of(runs, "restore_cpu_s"), freeze_s=freeze_s,
                   image_mib=runs[0]["stats"]["pages_bytes"] / 2**20, write_s=write_s, write_cpu_s=write_cpu_s,
                   hot_s=copy["hot_s"],
                   cold_s=copy["cold_s"])
        # Ratios to the limits: dump against writing the bytes (>= 0.9 is the target), restore
        # against a memcpy into fresh memory (time ratio, <= 1.2), freeze against writing the bytes.
        row["dump_vs_write"] = write_s / row["dump_s"]
        row["dump_cpu_vs_write"] = write_cpu_s / row["dump_cpu_s"]  # the same in CPU time: steadier under load
        row["restore_vs_memcpy"] = row["restore_s"] / copy["cold_s"]
        row["freeze_vs_write"] = freeze_s / write_s
        # Passes over the bytes of the pages: each copy, test and checksum as a multiple of the
        # bytes written (writing pages.img is one more).
        st, written = runs[0]["stats"], max(runs[0]["stats"]["pages_bytes"], 1)
        row["passes"] = {k: st.get(f"pages_{k}", 0) / written for k in ("copied_in", "zero_tested", "checksummed")}
        row["passes"]["written"] = 1.0
        rows.append(row)
        print(f"  {mib} MiB on {name}: dump {row['dump_s']:.3f} s, restore {row['restore_s']:.3f} s", flush=True)
    return rows


def print_table(rows):
    print()
    print("Throughput (GB/s = process size / wall time of the cryo command; limits measured in this run)")
    header = (f"{'size':>8} {'images':>6} | {'dump s':>7} {'GB/s':>5} {'cpu s':>6} {'write GB/s':>10} {'x write':>7} "
              f"{'cpu':>5} | "
              f"{'restore s':>9} {'GB/s':>5} {'cpu s':>6} {'memcpy s':>8} {'/memcpy':>7} | {'freeze s':>8} "
              f"{'GB/s':>5} {'/write':>6} | {'passes':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['mib']:>4} MiB {r['storage']:>6} | {r['dump_s']:>7.3f} {gbs(r['mib'], r['dump_s']):>5.2f} "
              f"{r['dump_cpu_s']:>6.3f} {gbs(r['mib'], r['write_s']):>10.2f} {r['dump_vs_write']:>7.2f} "
              f"{r.get('dump_cpu_vs_write', float('nan')):>5.2f} | "
              f"{r['restore_s']:>9.3f} {gbs(r['mib'], r['restore_s']):>5.2f} {r['restore_cpu_s']:>6.3f} "
              f"{r['cold_s']:>8.3f} {r['restore_vs_memcpy']:>7.2f} | {r['freeze_s']:>8.3f} "
              f"{gbs(r['mib'], r['freeze_s']):>5.2f} {r['freeze_vs_write']:>6.2f} | "
              f"{sum(r.get('passes', {}).values()):>6.2f}")
    print()
    print("x write: dump throughput / throughput of write() of the same size from a buffer in the cache to a")
    print("new file on the same storage, with fdatasync on disk as the dump does (it makes pages.img durable")
    print("before the image commits: the tree is killed then); target >= 0.9. cpu: the same ratio in CPU time")
    print("(the baseline's user+system time / cryo's), which a loaded machine disturbs less; a dump that uses a")
    print("second core can reach 0.9 in wall time with less than that. On tmpfs the limit is the copy into the")
    print("page cache, on disk the disk. Each baseline and each dump runs with the process holding its")
    print("memory, right after a file of the same size was written and removed: this VM gives freed memory back")
    print("to the host, and touching it again costs ~10 us a page, so the state of memory, not the program,")
    print("decided earlier comparisons. /memcpy: restore time / time of a memcpy of the same bytes into fresh")
    print("memory (page faults included; target <= 1.2). freeze: freeze_us of stats-dump.json (how long the tree")
    print("stood still); /write: freeze / the write time of the same bytes. cpu s: user+system time of cryo")
    print("(steadier than wall time on a loaded machine). passes: how often the dump touches each byte of the")
    print("pages: the copy out of the task into cryo's buffer, the zero-page test (a page that is not zero")
    print("shows it in its first word), the checksum (of the copy, while it is in the cache) and the write;")
    print(f"each is in the JSON. Baselines: median of {BASELINE_RUNS} runs; cryo: median of {RUNS}.")


def print_tiny(tiny):
    print()
    print(f"Tiny process (memload with no extra memory), {tiny['runs']} runs, images on tmpfs (target: median under")
    print("10 ms, no run above 20 ms, as whole commands):")
    for what in ("dump", "restore"):
        t = tiny[what]
        print(f"  {what:<8} median {t['median_ms']:7.1f} ms  (min {t['min_ms']:.1f}, p95 {t.get('p95_ms', float('nan')):.1f}, "
              f"max {t['max_ms']:.1f}; cpu median {t['cpu_median_ms']:.1f} ms, p95 {t.get('cpu_p95_ms', float('nan')):.1f})")
    print(f"  freeze   median {tiny['freeze_median_ms']:7.2f} ms  (from stats-dump.json)")
    print(f"  baseline: /bin/true median {tiny['true_median_ms']:.1f} ms (what starting any process costs here now)")


def tree_shape():
    """BENCH_TREE "N x MIB" as (N, MIB)."""
    children, _, mib = TREE.partition("x")
    return int(children), int(mib)


def measure_tree(bench, tmpfs, failures):
    """The tree of TREE on one CPU and on every CPU, alternating (medians of TREE_RUNS)."""
    children, mib = tree_shape()
    every = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    one = every.split(",")[0]
    runs = {one: [], every: []}
    for _ in range(TREE_RUNS):
        for cpus in runs:
            try:
                runs[cpus].append(bench.tree_dump_restore(children, mib, tmpfs, cpus))
            except Exception as e:  # noqa: BLE001
                failures.append(f"tree {TREE} on CPUs {cpus}: {e}")
                return None
    out = dict(children=children, mib=mib, runs=TREE_RUNS, cpus=len(every.split(",")))
    for cpus, name in ((one, "one_cpu"), (every, "all_cpus")):
        out[name] = {key: median_of(runs[cpus], key) for key in ("dump_s", "dump_cpu_s", "restore_s", "restore_cpu_s")}
        out[name]["dump_writers"] = max(r["dump_writers"] or 0 for r in runs[cpus])
        out[name]["restore_writers"] = max(r["restore_writers"] or 0 for r in runs[cpus])
    return out


def print_tree(tree):
    print()
    print(f"Tree: a shell with {tree['children']} children of {tree['mib']} MiB, images on tmpfs, cryo pinned to one "
          f"CPU and to all {tree['cpus']} (medians of {tree['runs']} runs; target: the pages of all processes written "
          "on all cores):")
    one, every = tree["one_cpu"], tree["all_cpus"]
    for what in ("dump", "restore"):
        print(f"  {what:<8} 1 CPU {one[what + '_s']:6.3f} s (cpu {one[what + '_cpu_s']:.3f} s)   all "
              f"{every[what + '_s']:6.3f} s (cpu {every[what + '_cpu_s']:.3f} s, {every[what + '_writers']} threads)   "
              f"speedup {one[what + '_s'] / every[what + '_s']:.2f}x")


def p95(values):
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


def summarize(values):
    return dict(median_ms=statistics.median(values) * 1e3, min_ms=min(values) * 1e3, p95_ms=p95(values) * 1e3,
                max_ms=max(values) * 1e3)


def measure_tiny(bench, tmpfs, failures):
    runs = []
    for _ in range(TINY_RUNS):
        try:
            runs.append(bench.dump_restore(0, tmpfs))
        except Exception as e:  # noqa: BLE001
            failures.append(f"tiny process: {e}")
            break
    if not runs:
        return None
    trues = []
    for _ in range(TINY_RUNS):
        t0 = time.monotonic()
        subprocess.run(["true"], check=True)
        trues.append(time.monotonic() - t0)
    tiny = dict(runs=len(runs), true_median_ms=statistics.median(trues) * 1e3,
                freeze_median_ms=statistics.median(r["stats"]["freeze_us"] / 1e3 for r in runs))
    for what in ("dump", "restore"):
        tiny[what] = summarize([r[f"{what}_s"] for r in runs])
        tiny[what]["cpu_median_ms"] = statistics.median(r[f"{what}_cpu_s"] for r in runs) * 1e3
        tiny[what]["cpu_p95_ms"] = p95([r[f"{what}_cpu_s"] for r in runs]) * 1e3
    return tiny


def compare(old_path, rows, tiny):
    with open(old_path) as f:
        old = json.load(f)
    print()
    print(f"Compared with {old_path} ({old.get('meta', {}).get('date', '?')}); ratios are new/old time "
          "(below 1: faster now)")
    header = (f"{'size':>8} {'images':>6} | {'dump old':>8} {'new':>7} {'ratio':>5} {'x write':>11} | "
              f"{'restore old':>11} {'new':>7} {'ratio':>5} {'/memcpy':>11}")
    print(header)
    print("-" * len(header))
    olds = {(r["mib"], r["storage"]): r for r in old.get("rows", [])}
    for r in rows:
        o = olds.get((r["mib"], r["storage"]))
        if not o:
            continue
        print(f"{r['mib']:>4} MiB {r['storage']:>6} | {o['dump_s']:>8.3f} {r['dump_s']:>7.3f} "
              f"{r['dump_s'] / o['dump_s']:>5.2f} {o['dump_vs_write']:>5.2f}>{r['dump_vs_write']:<5.2f} | "
              f"{o['restore_s']:>11.3f} {r['restore_s']:>7.3f} {r['restore_s'] / o['restore_s']:>5.2f} "
              f"{o['restore_vs_memcpy']:>5.2f}>{r['restore_vs_memcpy']:<5.2f}")
    if tiny and old.get("tiny"):
        for what in ("dump", "restore"):
            o, n = old["tiny"][what], tiny[what]
            print(f"  tiny {what:<8} median {o['median_ms']:.1f} -> {n['median_ms']:.1f} ms, max {o['max_ms']:.1f} -> "
                  f"{n['max_ms']:.1f} ms, cpu {o.get('cpu_median_ms', float('nan')):.1f} -> {n['cpu_median_ms']:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description="cryo's benchmarks")
    parser.add_argument("cryo")
    parser.add_argument("--compare", metavar="OLD.json", help="a JSON file of an earlier run to compare with")
    parser.add_argument("--json", metavar="OUT.json", help="where to write this run's JSON (default bench/results/)")
    args = parser.parse_args()
    cryo = os.path.abspath(args.cryo)
    build = os.path.dirname(os.path.dirname(cryo))
    memload = os.environ.get("CRYO_BENCH_MEMLOAD") or os.path.join(build, "bench", "memload")
    for path in (cryo, memload):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} is not built (make build)")
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    if args.compare and not os.path.exists(args.compare):
        sys.exit(f"bench: {args.compare} does not exist")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = os.path.abspath(args.json or os.environ.get("BENCH_JSON") or os.path.join(HERE, "results", f"bench-{stamp}.json"))
    harness.become_subreaper()
    bench = Bench(cryo, memload)
    tree_mib = tree_shape()[0] * tree_shape()[1] if TREE else 0
    tmpfs, unmount = mount_tmpfs(max(max(SIZES, default=0), tree_mib) * 2 + 512)
    disk = tempfile.mkdtemp(prefix="cryo-bench-", dir="/var/tmp")
    storages = [("tmpfs", tmpfs), ("disk", disk)]
    rows, failures, tiny, tree = [], [], None, None
    meta = dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), kernel=os.uname().release,
                cpus=os.cpu_count(), loadavg_start=os.getloadavg()[0], cryo=cryo, sizes_mib=SIZES, runs=RUNS)
    try:
        print(f"cryo bench: {os.uname().release}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; images on "
              f"tmpfs ({tmpfs}) and disk ({disk})", flush=True)
        for mib in SIZES:
            rows += measure_size(bench, memload, mib, storages, failures)
        tiny = measure_tiny(bench, tmpfs, failures)
        if TREE:
            tree = measure_tree(bench, tmpfs, failures)
    finally:
        bench.cleanup()
        unmount()
        shutil.rmtree(disk, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()[0]

    if rows:
        print_table(rows)
    if tiny:
        print_tiny(tiny)
    if tree:
        print_tree(tree)
    if args.compare:
        compare(args.compare, rows, tiny)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(dict(meta=meta, rows=rows, tiny=tiny, tree=tree, failures=failures), f, indent=1)
    print()
    print(f"JSON: {out}")
    if failures:
        print()
        print("FAILURES:")
        for f in failures:
            print(f"  {f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
