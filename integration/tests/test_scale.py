#!/usr/bin/env python3
"""Bigger shapes: many threads, many small mappings, and threads and children that
come and go during the dump (with and without posix_spawn's vfork children)."""
import hashlib
import json
import shutil
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_maps, compare_snapshots, compare_vma_flags, log, maps, progress,  # noqa
                     read_text, reap, run, snapshot, vma_flags, wait_progress, wait_until)


def counter_round_trip(env, *extra, min_threads=0, ready_timeout=60, before_dump=None):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, *extra])
    env.wait_ready(ready, pid, timeout=ready_timeout)
    wait_progress(prog, 2)
    before = snapshot(pid)
    check(len(before[pid]["tids"]) >= min_threads, f"only {len(before[pid]['tids'])} threads")
    layout, flags = maps(pid), vma_flags(pid)
    if before_dump:
        before_dump(pid)
    images = env.path("images")
    result = env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    log(f"dump {result.seconds:.3f} s")
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    env.soft(compare_maps, layout, maps(pid), "layout")
    env.soft(compare_vma_flags, flags, vma_flags(pid), "madvise state")
    env.trigger_and_report(pid, report, timeout=60)


def case_many_threads(env):
    counter_round_trip(env, "--threads", "200", min_threads=201)


def case_many_vmas(env):
    counter_round_trip(env, "--vmas", "6000", "--threads", "2")


def anon_huge_kib(pid):
    for line in (read_text(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def case_transparent_huge_pages(env):
    def uses_thp(pid):
        kib = anon_huge_kib(pid)
        log(f"AnonHugePages before the dump: {kib} kB")
        check(kib > 0, "the workload got no transparent huge pages (cannot test them)")
    counter_round_trip(env, "--mib", "256", "--thp", before_dump=uses_thp)


def case_huge_reservations(env):
    """A 64 GiB MAP_NORESERVE mapping with three pages written (more than this machine could
    commit) and a 1 TiB PROT_NONE reservation."""
    counter_round_trip(env, "--reserve", "64", "--threads", "1")


def case_two_gib(env):
    """2 GiB of address-derived pattern, restored (in parallel, in chunks) and checked word
    by word."""
    counter_round_trip(env, "--mib", "2048", "--threads", "2", "--child", ready_timeout=120)


def case_madvise(env):
    counter_round_trip(env, "--madvise", "--threads", "1")


def case_many_processes(env):
    """A shell waiting for 100 children blocked in nanosleep: all 101 come back, and the
    shell's wait goes on (it exits once the children are killed)."""
    script = env.path("fan.sh")
    with open(script, "w") as f:
        f.write("for i in $(seq 100); do sleep 1000 & done\necho ready > \"$1\"\nwait\n")
    ready = env.path("ready")
    pid = env.spawn(["bash", script, ready])
    env.wait_file(ready, pid=pid)
    wait_until(lambda: sorted(t["comm"] for t in snapshot(pid).values()) == ["bash"] + ["sleep"] * 100, 10,
               what="bash and 100 sleeps (each child exec'd)")
    before = snapshot(pid)
    images = env.path("images")
    result = env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    log(f"dump {result.seconds:.3f} s")
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(before, snapshot(pid), pid)
    for child in before:
        if child != pid:
            os.kill(child, signal.SIGTERM)
    statuses = reap(list(before), timeout=15, what="the shell and its children after SIGTERM to the children")
    check(pid in statuses and os.WIFEXITED(statuses[pid]), f"the shell did not exit by itself ({statuses.get(pid)})")


def case_many_memories(env):
    """A shell with four children of 32 MiB each: every process's pages are written in
    together, by as many threads as cryo has CPUs (stats-restore.json says how many), and
    each child finds its memory whole."""
    n = 4
    files = [(env.path(f"ready-{i}"), env.path(f"report-{i}"), env.path(f"progress-{i}")) for i in range(n)]
    script = env.path("fan.sh")
    with open(script, "w") as f:
        for ready, report, prog in files:
            f.write(f"{env.workload('counter')} {ready} {report} {prog} --mib 32 &\n")
        f.write("wait\n")
    pid = env.spawn(["bash", script])
    children = []
    for ready, _, prog in files:
        children.append(int(env.wait_ready(ready, pid)["pid"]))
        wait_progress(prog, 2)
    before = snapshot(pid)
    images = env.round_trip(pid, before)
    with open(os.path.join(images, "stats-restore.json")) as f:
        stats = json.load(f)
    log(f"stats-restore.json: {stats}")
    check(stats["pages_bytes"] >= n * 32 << 20, f"restore wrote {stats['pages_bytes']} bytes of memory")
    check("writing_memory_us" in stats["phases"], f"stats-restore.json has no writing phase: {stats['phases']}")
    cpus = len(os.sched_getaffinity(0))
    check_eq(stats["page_writers"], cpus, "threads writing the pages in (one per CPU)")
    for child, (_, report, _) in zip(children, files):
        env.trigger_and_report(child, report)
    reap([pid], timeout=15, what="the shell once its children are done")


def memory_hash(pid, addr, mib):
    """SHA-256 of mib MiB of pid's memory at addr, read through /proc/PID/mem."""
    h = hashlib.sha256()
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        f.seek(addr)
        left = mib << 20
        while left:
            chunk = f.read(min(left, 8 << 20))
            check(chunk, f"pid {pid}: memory at {addr:#x} ends {left} bytes short")
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


PARALLEL_CHILDREN, PARALLEL_MIB = 4, 48


def parallel_tree(env):
    """A shell with four children of 48 MiB each, every one with a pattern of its own
    (so that pages of one cannot pass for another's); returns the shell's pid and,
    per child, (pid, address of its block, report path, hash of its block)."""
    script = env.path("fan.sh")
    files = [(env.path(f"ready-{i}"), env.path(f"report-{i}"), env.path(f"progress-{i}"))
             for i in range(PARALLEL_CHILDREN)]
    with open(script, "w") as f:
        for i, (ready, report, prog) in enumerate(files):
            f.write(f"{env.workload('counter')} {ready} {report} {prog} --mib {PARALLEL_MIB} --seed {i + 1} &\n")
        f.write("wait\n")
    pid = env.spawn(["bash", script])
    children = []
    for ready, report, prog in files:
        info = env.wait_ready(ready, pid)
        child, addr = int(info["pid"]), int(info["mem"])
        wait_progress(prog, 2)
        children.append((child, addr, report, memory_hash(child, addr, PARALLEL_MIB)))
    check_eq(len({h for _, _, _, h in children}), PARALLEL_CHILDREN, "children with memory of their own")
    return pid, children


def check_page_writers(stats_path, what):
    with open(stats_path) as f:
        stats = json.load(f)
    log(f"{stats_path}: {stats}")
    cpus = len(os.sched_getaffinity(0))
    check_eq(stats.get("page_writers"), cpus, f"threads copying the pages of the {what} (one per CPU)")


def check_restored_memory(env, pid, children):
    """Each restored child holds the very bytes it held, then checks its pattern itself."""
    for child, addr, _, digest in children:
        check_eq(memory_hash(child, addr, PARALLEL_MIB), digest, f"memory of child {child} after the restore")
    for child, _, report, _ in children:
        env.trigger_and_report(child, report)
    reap([pid], timeout=15, what="the shell once its children are done")


def case_parallel_dump(env):
    """The dump copies the pages of all four children together, on one thread per CPU
    (stats-dump.json says how many), and each restored child finds its own memory."""
    pid, children = parallel_tree(env)
    images = env.round_trip(pid, snapshot(pid))
    check_page_writers(os.path.join(images, "stats-dump.json"), "dump")
    check_restored_memory(env, pid, children)


def case_parallel_chain(env):
    """A pre-dump of the tree copies its pages on every CPU while the tree runs; the dump
    against it (with --leave-running: copied while running too, the frozen pass reads
    what changed since) and the restore read them back through the chain."""
    pid, children = parallel_tree(env)
    pre, final = env.path("pre"), env.path("final")
    os.makedirs(pre)
    env.cryo("pre-dump", "-t", pid, "-D", pre, log_name="pre-dump")
    check_page_writers(os.path.join(pre, "stats-dump.json"), "pre-dump")
    tree = snapshot(pid)
    env.dump(pid, final, "--prev-images-dir", "../pre", "-R")
    check_page_writers(os.path.join(final, "stats-dump.json"), "dump copying while the tree runs")
    for p in tree:
        os.kill(p, signal.SIGKILL)
    env.wait_dumped(tree)
    _, rpid = env.restore(final)
    check_eq(rpid, pid, "restored pid")
    check_restored_memory(env, pid, children)


def case_parallel_page_server(env):
    """Through a page server: the threads' pages arrive in the order of their offsets,
    as the server requires, and the joined image restores every child's memory."""
    from test_page_server import start_server, wait_server
    pid, children = parallel_tree(env)
    tree = snapshot(pid)
    server_dir, local = env.path("server"), env.path("local")
    server, port, server_err = start_server(env, server_dir)
    env.dump(pid, local, "--page-server", "--address", "127.0.0.1", "--port", port)
    env.wait_dumped(tree)
    check_eq(wait_server(server), 0, "page server's exit code (stderr: " + (read_text(server_err, "") or "") + ")")
    check_page_writers(os.path.join(local, "stats-dump.json"), "dump to a page server")
    shutil.copy(os.path.join(server_dir, "pages.img"), local)
    _, rpid = env.restore(local)
    check_eq(rpid, pid, "restored pid")
    check_restored_memory(env, pid, children)


def churn(env, *extra):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("churn"), ready, report, prog, *extra])
    env.wait_ready(ready, pid)
    wait_progress(prog, 20)
    for i in range(3):
        # The tree changes all the time: compare only the process itself.
        images = env.path(f"images-{i}")
        env.dump(pid, images)
        env.reap_tree_of(pid)
        seen = progress(prog)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, f"round {i}: restored pid")
        for index in range(3):
            wait_progress(prog, seen[index] + 20, index=index)
        log(f"round {i}: loops {seen} -> {progress(prog)}")
    env.trigger_and_report(pid, report)


def case_churn(env):
    churn(env)


def case_churn_spawn(env):
    churn(env, "--spawn")


if __name__ == "__main__":
    run({"many_threads": case_many_threads, "many_vmas": case_many_vmas, "churn": case_churn,
         "churn_spawn": case_churn_spawn, "transparent_huge_pages": case_transparent_huge_pages,
         "madvise": case_madvise, "many_processes": case_many_processes, "many_memories": case_many_memories,
         "parallel_dump": case_parallel_dump, "parallel_chain": case_parallel_chain,
         "parallel_page_server": case_parallel_page_server,
         "huge_reservations": case_huge_reservations, "two_gib": case_two_gib})
