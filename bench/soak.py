#!/usr/bin/env python3
"""Soak: SOAK_CYCLES (1000) dump/restore cycles of a server with a live client.

  python3 bench/soak.py path/to/cryo        (`make soak`; `make bench` runs it last; root)

A small server (soak_server.py) answers a client (soak_client.py) that sends numbered
requests, without stopping, over one TCP connection on 127.0.0.1. Each cycle `cryo dump
--tcp-established` kills the server, `cryo restore --tcp-established -d` brings it back with
the same pid, and the next cycle starts once the client has had SOAK_SETTLE answers from the
restored server. At the end: requests lost, repeated, out of order or answered wrongly and
connection resets; the server's fd count and RSS cycle by cycle; cryo's own peak RSS per
dump and per restore; what cryo left on the machine (soak_leftovers.py); dump, restore and
cycle times and the client's longest pause. Exits 1 if a must-be-zero figure is not zero or
a cycle failed.

Environment: SOAK_CYCLES (1000), SOAK_JSON (bench/results/soak-TIMESTAMP.json), SOAK_RATE
(requests a second, 500), SOAK_WINDOW (requests in flight at most, 8), SOAK_LOG (1: cryo
runs with -o LOG -v 4; the logs of a cycle that went wrong are kept beside the JSON), SOAK_SETTLE
(answers the client gets between a restore and the next dump, 50). Needs cc (for soak_spawn.c).
"""
import datetime
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "integration", "lib"))
import harness  # noqa: E402
from soak_client import Client  # noqa: E402
from soak_leftovers import LOCK_TAG, cryo_processes, lock_rules, lock_tables, machine_state, ours, remove_locks  # noqa: E402,E501

CYCLES = int(os.environ.get("SOAK_CYCLES", "1000"))
RATE = float(os.environ.get("SOAK_RATE", "500"))
WINDOW = int(os.environ.get("SOAK_WINDOW", "8"))
VERBOSE_LOGS = os.environ.get("SOAK_LOG", "1") != "0"
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
CRYO_TIMEOUT = 120  # seconds for one dump or restore
STALL_TIMEOUT = 20  # seconds the restored server has to answer the client
SETTLE_ANSWERS = int(os.environ.get("SOAK_SETTLE", "50"))  # answers between a restore and the next dump
DRAIN_TIMEOUT = 10  # seconds the client waits for its last answers
KEPT_INCIDENTS = 5  # cycles whose logs are kept at most


class CycleFailure(Exception):
    pass


def build_spawner(work):
    """Compiles soak_spawn.c (it measures cryo's peak RSS, which a process forked from Python
    cannot: see the file)."""
    path = os.path.join(work, "soak_spawn")
    result = subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", path, os.path.join(HERE, "soak_spawn.c")],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"cc soak_spawn.c: {result.stderr.strip()}")
    return path


def run_cryo(spawner, cryo, args, out_path):
    """Runs cryo with stdin /dev/null and its output in out_path; returns (pid, wall seconds,
    wait status, peak RSS in KiB of cryo and of the helpers it waited for)."""
    report = out_path + ".rusage"
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    pid = os.posix_spawn(spawner, [spawner, report, cryo, *map(str, args)], os.environ, file_actions=actions)
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], CRYO_TIMEOUT)[0]:
            os.kill(pid, signal.SIGKILL)  # and cryo with it (its parent-death signal)
            os.waitpid(pid, 0)
            raise CycleFailure(f"cryo {' '.join(map(str, args))} did not finish in {CRYO_TIMEOUT} s (killed it)")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    fields = (harness.read_text(report) or "").split()
    if status != 0 or len(fields) != 4:
        raise CycleFailure(f"soak_spawn {harness.exit_status_text(status)}: "
                           f"{(harness.read_text(out_path) or '').strip()[-500:]}")
    cryo_pid, cryo_status, maxrss, wall_ns = map(int, fields)
    return cryo_pid, wall_ns / 1e9, cryo_status, maxrss


# ---- figures ---------------------------------------------------------------------------------

def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)] if ordered else None


def growth(series):
    if not series:
        return {}
    return {"first": series[0], "last": series[-1], "max": max(series), "growth": series[-1] - series[0],
            "max_growth": max(series) - series[0]}


def timing(series):
    if not series:
        return {}
    return {"median": percentile(series, 50), "p99": percentile(series, 99), "max": max(series)}


# ---- the run ---------------------------------------------------------------------------------

class Soak:
    def __init__(self, cryo, results):
        self.results = results
        self.work = tempfile.mkdtemp(prefix="cryo-soak-")
        self.images = tempfile.mkdtemp(prefix="cryo-soak-", dir="/dev/shm")
        self.source, self.cryo, self.spawner = cryo, os.path.join(self.work, "cryo"), None
        self.cryo_pids = set()
        self.server = self.client = None
        self.cycles = []  # one dict per finished cycle
        self.failures = []
        self.incidents = []
        self.stray_seen = []  # per-cycle: children of ours but the server, and lock tables left
        self.wall = 0.0  # seconds of the cycles so far

    def start(self):
        # A copy: a rebuild while the soak runs must not swap the binary under it.
        shutil.copy2(self.source, self.cryo)
        self.spawner = build_spawner(self.work)
        port_file = os.path.join(self.work, "port")
        with open(os.path.join(self.work, "server.log"), "wb") as log:
            proc = subprocess.Popen([PYTHON, "-I", "-S", os.path.join(HERE, "soak_server.py"), port_file],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.work,
                                    start_new_session=True, close_fds=True)
        harness._POPENS.append(proc)
        self.server = proc.pid
        port = int(harness.wait_until(lambda: harness.read_text(port_file), 30, what="the server's port"))
        self.client = Client(port, RATE, WINDOW, DRAIN_TIMEOUT)
        self.client.start()
        harness.wait_until(lambda: self.client.answered >= 10, 10, what="the client's first answers")
        self.start_sample = self.sample()

    def sample(self):
        fds = len(os.listdir(f"/proc/{self.server}/fd"))
        rss = int(harness.status_fields(self.server, keys=("VmRSS",))["VmRSS"].split()[0])
        return fds, rss

    def cryo_step(self, verb, args, cycle_dir):
        args = list(args)
        if VERBOSE_LOGS:
            args += ["-o", os.path.join(cycle_dir, f"{verb}.log"), "-v", "4"]
        pid, seconds, status, maxrss = run_cryo(self.spawner, self.cryo, [verb, *args],
                                                os.path.join(cycle_dir, f"{verb}.out"))
        self.cryo_pids.add(pid)
        if status != 0:
            out = (harness.read_text(os.path.join(cycle_dir, f"{verb}.out")) or "").strip()
            raise CycleFailure(f"cryo {verb} ({harness.exit_status_text(status)}): {out[-1500:]}")
        return pid, seconds, maxrss

    def cycle(self, n):
        cycle_dir = os.path.join(self.images, f"cycle-{n}")
        images = os.path.join(cycle_dir, "images")
        os.mkdir(cycle_dir)
        # The previous cycle's images go; its logs stay one more cycle in case this one goes wrong.
        shutil.rmtree(os.path.join(self.images, f"cycle-{n - 1}", "images"), ignore_errors=True)
        shutil.rmtree(os.path.join(self.images, f"cycle-{n - 2}"), ignore_errors=True)
        client, problems_before = self.client, self.problem_count()
        client.cycle = n
        start = time.monotonic()
        dump_pid, dump_s, dump_rss = self.cryo_step("dump", ["-t", self.server, "-D", images, "--tcp-established"],
                                                    cycle_dir)
        statuses = harness.reap([self.server], timeout=15, what="the dumped server")
        status = statuses.get(self.server)
        if status is None or not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            raise CycleFailure(f"the dumped server ended with "
                               f"{harness.exit_status_text(status) if status is not None else 'no status'}")
        pidfile = os.path.join(cycle_dir, "pid")
        _, restore_s, restore_rss = self.cryo_step(
            "restore", ["-D", images, "--tcp-established", "-d", "--pidfile", pidfile], cycle_dir)
        restored = (harness.read_text(pidfile) or "").strip()
        if restored != str(self.server):
            raise CycleFailure(f"restored pid {restored!r}, want {self.server}")
        restored_at, answered = time.monotonic(), client.answered
        self.wait_client(lambda: client.last_answer > restored_at, "no answer")
        cycle_s = time.monotonic() - start
        # Some traffic before the next dump, so that it catches the connection busy.
        self.wait_client(lambda: client.answered >= answered + SETTLE_ANSWERS, f"not {SETTLE_ANSWERS} answers")
        fds, rss = self.sample()
        left_tables = [t for t in lock_tables() if (m := LOCK_TAG.search(t)) and int(m.group(1)) == dump_pid]
        strays = [p for p in harness.descendants(os.getpid()) if p != self.server]
        if left_tables or strays:
            self.stray_seen.append({"cycle": n, "lock_tables": left_tables, "processes": strays})
        self.cycles.append(dict(cycle=n, dump_s=dump_s, restore_s=restore_s, cycle_s=cycle_s,
                                pause_s=client.take_pause(), dump_maxrss_kib=dump_rss,
                                restore_maxrss_kib=restore_rss, server_fds=fds, server_rss_kib=rss))
        if self.problem_count() != problems_before or left_tables or strays:
            self.keep_logs(n)

    def wait_client(self, predicate, what):
        deadline = time.monotonic() + STALL_TIMEOUT
        while not predicate():
            if time.monotonic() > deadline:
                raise CycleFailure(f"the client had {what} {STALL_TIMEOUT} s after the restore "
                                   f"({self.client.unanswered()} requests unanswered)")
            time.sleep(0.002)

    def problem_count(self):
        c = self.client
        return c.duplicated + c.out_of_order + c.errored + len(c.resets)

    def keep_logs(self, n):
        """Copies the logs of cycles n-1 and n beside the results."""
        if len(self.incidents) >= KEPT_INCIDENTS:
            return
        target = f"{os.path.splitext(self.results)[0]}-cycle{n}"
        for c in (n - 1, n):
            source = os.path.join(self.images, f"cycle-{c}")
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(target, f"cycle-{c}"),
                                ignore=shutil.ignore_patterns("images"), dirs_exist_ok=True)
        self.incidents.append(target)

    def run(self, cycles):
        began = time.monotonic()
        for n in range(1, cycles + 1):
            try:
                self.cycle(n)
            except (CycleFailure, harness.TestFailure, OSError) as e:
                self.failures.append({"cycle": n, "failure": str(e)})
                print(f"  cycle {n}: FAILED: {e}", flush=True)
                self.keep_logs(n)
                break
            finally:
                self.wall = time.monotonic() - began
            if n % 50 == 0 or n == cycles:
                c = self.cycles[-1]
                print(f"  cycle {n}/{cycles}: {self.wall:6.1f} s, {self.client.answered} answers, "
                      f"server {c['server_fds']} fds {c['server_rss_kib']} KiB", flush=True)

    def finish(self):
        """Stops cryo if it still runs (an interrupted soak), the client and the server;
        returns the processes left behind."""
        running = cryo_processes(self.cryo)
        left = {"processes": [f"{pid} {cmdline}" for pid, cmdline in running.items()]}
        if running:
            self.stop_cryo(running)
        if self.client:
            self.client.stopping.set()
            self.client.join(DRAIN_TIMEOUT + 5)
            if self.client.sock:
                self.client.sock.close()
        if self.server and harness.exists(self.server):
            try:
                os.kill(self.server, signal.SIGKILL)
            except ProcessLookupError:
                pass
            harness.reap([self.server], timeout=15, what="the server")
        left["processes"] += [f"{p} (a child of the soak)" for p in harness.descendants(os.getpid())]
        harness.kill_descendants()
        return left

    def stop_cryo(self, running):
        """SIGTERM stops a dump or a restore at its next step, undoing what it did (SIGKILL would
        leave its network lock to its guard, which kill_descendants kills too). Guards ignore it."""
        self.cryo_pids.update(running)  # their lock tables are ours
        for pid in running:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            harness.wait_until(lambda: not cryo_processes(self.cryo), CRYO_TIMEOUT, what="cryo to stop")
        except harness.TestFailure as e:
            print(f"soak: {e}", file=sys.stderr)

    def remove_dirs(self):
        for path in (self.work, self.images):
            shutil.rmtree(path, ignore_errors=True)
        return [p for p in (self.work, self.images) if os.path.exists(p)]


def report(soak, before, left):
    c, rows = soak.client, soak.cycles
    series = lambda key: [r[key] for r in rows]  # noqa: E731
    requests = {"sent": c.sent, "answered": c.answered, "lost": c.sent - c.answered, "duplicated": c.duplicated,
                "out_of_order": c.out_of_order, "errored": c.errored, "resets": len(c.resets)}
    after = machine_state()
    leftovers = {
        "lock_tables": left["lock_tables"], "lock_rules": left["lock_rules"],
        "mounts": sorted(set(after["mounts"]) - set(before["mounts"])),
        "cgroups": sorted(set(after["cgroups"]) - set(before["cgroups"])),
        "run_cryo": sorted(set(after["run_cryo"]) - set(before["run_cryo"])),
        "processes": left["processes"],
        "temp_dirs": left["own_dirs"],
    }
    # cryo makes no named temp files (O_TMPFILE at most): a new cryo-named entry in a temp
    # dir is another run's (the test suite's, a build's), shown but not counted.
    others = sorted(set(after["temp"]) - set(before["temp"]))
    figures = {
        "cycles_requested": CYCLES, "cycles_done": len(rows), "wall_s": soak.wall,
        "per_cycle_s": soak.wall / len(rows) if rows else None,
        "requests": requests,
        "server": {"start": {"fds": soak.start_sample[0], "rss_kib": soak.start_sample[1]},
                   "fds": growth(series("server_fds")), "rss_kib": growth(series("server_rss_kib"))},
        "cryo_peak_rss_kib": {"dump": growth(series("dump_maxrss_kib")),
                              "restore": growth(series("restore_maxrss_kib"))},
        "leftovers": {k: len(v) for k, v in leftovers.items()}, "leftover_details": leftovers,
        "seen_during_cycles": soak.stray_seen, "new_temp_entries_not_counted": others,
        "timing_s": {"dump": timing(series("dump_s")), "restore": timing(series("restore_s")),
                     "cycle": timing(series("cycle_s")), "client_pause": timing(series("pause_s"))},
        "failures": soak.failures, "client_problems": c.problems, "resets": c.resets, "kept_logs": soak.incidents,
        "config": {"rate": RATE, "window": WINDOW, "verbose_logs": VERBOSE_LOGS, "python": PYTHON,
                   "kernel": os.uname().release, "cpus": os.cpu_count()},
        "cycles": rows,
    }
    must_be_zero = [("lost requests", requests["lost"]), ("duplicated answers", c.duplicated),
                    ("answers out of order", c.out_of_order), ("errored answers", c.errored),
                    ("connection resets", len(c.resets))]
    must_be_zero += [(f"left: {k.replace('_', ' ')}", len(v)) for k, v in leftovers.items()]
    must_be_zero += [("cycles with a stray process or lock", len(soak.stray_seen)),
                     ("failed cycles", len(soak.failures))]
    figures["ok"] = all(v == 0 for _, v in must_be_zero) and len(rows) == CYCLES
    return figures, must_be_zero


def print_table(f, must_be_zero):
    ms = lambda s: f"{s * 1e3:8.1f}" if s is not None else "       -"  # noqa: E731
    r = f["requests"]
    print()
    per_cycle = f"{f['per_cycle_s']:.3f}" if f["per_cycle_s"] else "-"
    print(f"Soak: {f['cycles_done']} of {f['cycles_requested']} cycles in {f['wall_s']:.1f} s "
          f"({per_cycle} s a cycle); {r['sent']} requests, {r['answered']} answered")
    print()
    print(f"{'must be zero':<40} {'count':>8}")
    print("-" * 49)
    for name, value in must_be_zero:
        print(f"{name:<40} {value:>8}{'' if value == 0 else '   <-- NOT ZERO'}")
    print()
    print(f"{'growth across cycles':<28} {'start':>9} {'first':>9} {'last':>9} {'max':>9} {'growth':>9} {'max gr.':>9}")
    print("-" * 89)
    start = f["server"]["start"]
    for name, g, s in (("server fds", f["server"]["fds"], start["fds"]),
                       ("server VmRSS KiB", f["server"]["rss_kib"], start["rss_kib"]),
                       ("cryo dump peak RSS KiB", f["cryo_peak_rss_kib"]["dump"], None),
                       ("cryo restore peak RSS KiB", f["cryo_peak_rss_kib"]["restore"], None)):
        if g:
            print(f"{name:<28} {s if s is not None else '-':>9} {g['first']:>9} {g['last']:>9} {g['max']:>9} "
                  f"{g['growth']:>9} {g['max_growth']:>9}")
    print()
    print(f"{'time (ms)':<28} {'median':>8} {'p99':>8} {'max':>8}")
    print("-" * 55)
    for name, key in (("dump", "dump"), ("restore", "restore"), ("whole cycle", "cycle"),
                      ("client's longest pause", "client_pause")):
        t = f["timing_s"][key]
        if t:
            print(f"{name:<28} {ms(t['median'])} {ms(t['p99'])} {ms(t['max'])}")
    print()
    print("whole cycle: dump, reap, restore, until the client's first answer from the restored server (then")
    print(f"{SETTLE_ANSWERS} more answers before the next dump). client's pause: the longest gap between two answers")
    print("in a cycle. Peak RSS: ru_maxrss of each cryo run, seen by its parent (soak_spawn). Left: lock tables,")
    print("rules and processes of the soak's own cryo runs; mounts, cgroups and /run/cryo entries new since the")
    print("start, whoever made them (run no other cryo meanwhile).")
    for failure in f["failures"]:
        print(f"FAILED at cycle {failure['cycle']}: {failure['failure']}")
    for p in f["client_problems"]:
        print(f"client, cycle {p['cycle']}: {p['problem']}")
    for name, items in f["leftover_details"].items():
        for item in items:
            print(f"left ({name}): {item}")
    for entry in f["new_temp_entries_not_counted"]:
        print(f"note: {entry} appeared meanwhile (not counted: cryo makes no named temp files)")
    for seen in f["seen_during_cycles"][:10]:
        print(f"after cycle {seen['cycle']}: lock tables {seen['lock_tables']}, processes {seen['processes']}")
    for path in f["kept_logs"]:
        print(f"logs kept in {path}")


def interrupted(signo, frame):
    raise KeyboardInterrupt()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: soak.py path/to/cryo")
    cryo = os.path.abspath(sys.argv[1])
    if not os.access(cryo, os.X_OK):
        sys.exit(f"soak: {cryo} is not built (make build)")
    if os.geteuid() != 0:
        sys.exit("soak: run as root")
    if CYCLES < 1:
        sys.exit("soak: SOAK_CYCLES must be at least 1")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = os.path.abspath(os.environ.get("SOAK_JSON") or os.path.join(HERE, "results", f"soak-{stamp}.json"))
    os.makedirs(os.path.dirname(results), exist_ok=True)
    harness.become_subreaper()
    signal.signal(signal.SIGTERM, interrupted)
    before = machine_state()
    tables_before, rules_before = set(lock_tables()), set(lock_rules())
    soak = Soak(cryo, results)
    try:
        print(f"cryo soak: {CYCLES} cycles, {os.uname().release}, {os.cpu_count()} CPUs, images in {soak.images}; "
              f"client {RATE:g} requests/s, {WINDOW} in flight", flush=True)
        soak.start()
        soak.run(CYCLES)
    except KeyboardInterrupt:
        soak.failures.append({"cycle": len(soak.cycles) + 1, "failure": "interrupted"})
    except (harness.TestFailure, OSError) as e:
        soak.failures.append({"cycle": len(soak.cycles) + 1, "failure": f"{type(e).__name__}: {e}"})
    finally:
        left = soak.finish()
        left["lock_tables"] = ours(set(lock_tables()) - tables_before, soak.cryo_pids)
        left["lock_rules"] = ours(set(lock_rules()) - rules_before, soak.cryo_pids)
        remove_locks(left["lock_tables"], left["lock_rules"])
        left["own_dirs"] = soak.remove_dirs()
    if soak.client is None:
        sys.exit(f"soak: could not start: {soak.failures}")
    figures, must_be_zero = report(soak, before, left)
    with open(results, "w") as f:
        json.dump(figures, f, indent=1)
    print_table(figures, must_be_zero)
    print(f"\nfigures: {results}")
    sys.exit(0 if figures["ok"] else 1)


if __name__ == "__main__":
    main()
