#!/usr/bin/env python3
"""`cryo inspect DIR` prints the image as JSON that shows the tree, the threads, the
mappings and the fds as they were; `cryo check` reports the kernel's features; the
dump writes stats-dump.json and puts a relative -o log into the image dir."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (TestFailure, check, check_eq, fd_table, log, maps, run, snapshot, wait_progress)  # noqa: E402


def as_int(value, default=0):
    """proto3 JSON writes 64-bit numbers as strings and leaves out zeros."""
    return default if value is None else int(value)


def case_inspect(env):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    binary = env.workload("counter")
    pid = env.spawn([binary, ready, report, prog, "--threads", "2", "--child", "--mib", "8"])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    fds = {p: fd_table(p) for p in before}
    layout = {p: maps(p) for p in before}
    images = env.path("images")
    os.mkdir(images)
    env.cryo("dump", "-t", pid, "-D", images, "-o", "dump.log", "-v", "4")
    log_path = os.path.join(images, "dump.log")
    check(os.path.exists(log_path) and os.path.getsize(log_path) > 0, "the relative -o log is not in the image dir")
    with open(os.path.join(images, "stats-dump.json")) as f:
        stats = json.load(f)
    check_eq(stats.get("tasks"), 2, "stats-dump.json tasks")
    env.wait_dumped(before)

    out = env.cryo("inspect", images).stdout
    try:
        image = json.loads(out)
    except ValueError as e:
        raise TestFailure(f"cryo inspect printed no JSON ({e}): {out[:500]!r}")
    for key in ("inventory", "tree", "files", "processes", "pages_bytes"):
        check(key in image, f"inspect output lacks '{key}' (has {sorted(image)})")
    check_eq(as_int(image["inventory"].get("root_pid")), pid, "inventory.root_pid")
    check(as_int(image["pages_bytes"]) >= 9 << 20, f"pages_bytes {image['pages_bytes']} < 9 MiB")

    # The tree.
    tasks = {t["pid"]: t for t in image["tree"].get("tasks", [])}
    check_eq(sorted(tasks), sorted(before), "pids in tree.tasks")
    for p, task in tasks.items():
        want = before[p]
        check_eq(as_int(task.get("ppid")), 0 if p == pid else want["ppid"], f"tree: ppid of {p}")
        check_eq((as_int(task.get("pgid")), as_int(task.get("sid"))), (want["pgid"], want["sid"]),
                 f"tree: pgid/sid of {p}")
        check_eq(sorted(task.get("tids", [])), want["tids"], f"tree: tids of {p}")
        check_eq(task.get("comm"), want["comm"], f"tree: comm of {p}")

    # Processes: threads, mappings, fds.
    files = {as_int(f.get("id")): f for f in image["files"].get("files", [])}
    procs = {as_int(p["pid"]): p for p in image["processes"]}
    check_eq(sorted(procs), sorted(before), "pids in processes")
    for p, proc in procs.items():
        threads = proc["core"].get("threads", [])
        check_eq(sorted(as_int(t.get("tid")) for t in threads), before[p]["tids"], f"threads of {p}")
        check_eq(as_int(threads[0].get("tid")), p, f"the first thread of {p} is the leader")
        vmas = [(as_int(v.get("start")), as_int(v.get("end"))) for v in proc["mm"].get("vmas", [])]
        check(vmas, f"no vmas for {p}")
        # Every mapping of the process is covered by the recorded vmas ([vsyscall] aside).
        for start, end, perms, path in layout[p]:
            if path == "[vsyscall]":
                continue
            covered = sum(min(end, e) - max(start, s) for s, e in vmas if s < end and e > start)
            check_eq(covered, end - start, f"coverage of {start:x}-{end:x} {path} in the vmas of {p}")
        check(as_int(proc.get("dumped_pages")) > 0, f"no dumped pages for {p}")
        # fds: every fd is recorded, pointing at a file of the right kind.
        recorded = {as_int(fd.get("fd")): files.get(as_int(fd.get("file_id"))) for fd in proc["core"].get("fds", [])}
        check_eq(sorted(recorded), sorted(fds[p]), f"fd numbers of {p}")
        for fd, (target, _, _) in fds[p].items():
            desc = recorded[fd]
            check(desc is not None, f"fd {fd} of {p} names no file")
            kind = desc.get("kind", "REGULAR")
            if target == "pipe":
                check_eq(kind, "PIPE", f"kind of fd {fd} of {p}")
            elif target.startswith("/dev/"):
                check(kind in ("CHAR_DEVICE", "INHERITED"), f"kind of fd {fd} ({target}) of {p}: {kind}")
            elif target.startswith("/"):
                check_eq((kind, desc.get("path")), ("REGULAR", target), f"fd {fd} of {p}")
    mem = info["mem"] if isinstance(info["mem"], int) else int(info["mem"], 16)
    root_vmas = [(as_int(v.get("start")), as_int(v.get("end"))) for v in procs[pid]["mm"]["vmas"]]
    check(any(s <= mem and mem + (8 << 20) <= e for s, e in root_vmas), f"no vma holds the 8 MiB block at {mem:#x}")
    names = [v.get("name", "") for v in procs[pid]["mm"]["vmas"]]
    check(any(binary in n for n in names) or any(f.get("path") == binary for f in files.values()),
          f"the image does not name the executable {binary}")
    exe_id = as_int(procs[pid]["core"].get("mm", {}).get("exe_file_id"), None)
    if exe_id is not None:
        check_eq(files.get(exe_id, {}).get("path"), binary, "exe_file_id names the executable")
    check(image["files"].get("pipes"), "files.pipes is empty (the child's pipe holds 1000 bytes)")

    result = env.cryo("inspect", env.path("no-such-dir"), expect=1)
    check(result.stderr.strip(), "inspect of a missing dir printed no error")


def case_check(env):
    result = env.cryo("check")
    check(result.stdout.strip() or result.stderr.strip(), "cryo check printed nothing")
    log("cryo check:\n" + result.stdout)


if __name__ == "__main__":
    run({"inspect": case_inspect, "check": case_check})
