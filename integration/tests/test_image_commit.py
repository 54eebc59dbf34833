#!/usr/bin/env python3
"""How a dump writes its image. durable: every file of the image is on its storage
(fdatasync) before inventory.img, which makes the image whole, takes its name; a
dump kills the tree once the image commits, so a crash of the machine just after
must not find an inventory naming pages that never reached the disk. passes: each
byte of the pages is copied out of the tree once and checksummed once, as
stats-dump.json counts them (the bench reports the same counts). Both restore the
tree afterwards and let it verify itself."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import _POPENS, check, check_eq, log, read_text, run, snapshot  # noqa: E402


def start_mega(env):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("mega"), ready, report, "--mib", "32"])
    env.wait_ready(ready, pid)
    return pid, report


def restore_and_verify(env, pid, before, images, report):
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored root pid")
    env.trigger_and_report(pid, report)


def case_durable(env):
    pid, report = start_mega(env)
    before = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    trace = env.path("dump.strace")
    # -f: the page writer is a thread of its own; -y: the path of each fd.
    proc = subprocess.Popen(["strace", "-qq", "-f", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
                             "-o", trace, env.cryo_path, "dump", "-t", str(pid), "-D", images],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _POPENS.append(proc)
    _, err = proc.communicate(timeout=120)
    check_eq(proc.returncode, 0, f"exit code of the dump under strace (stderr {err.decode(errors='replace')[-300:]!r})")
    lines = [line for line in (read_text(trace) or "").splitlines() if "sync(" in line or "rename" in line]
    log("trace:\n  " + "\n  ".join(lines))
    commit = [i for i, line in enumerate(lines) if re.search(r'rename\w*\(.*"[^"]*/inventory\.img"', line)]
    check_eq(len(commit), 1, "renames of inventory.img")
    synced = set()
    for line in lines[:commit[0]]:
        m = re.search(r"f(?:data)?sync\(\d+<([^>]*)>\) = 0", line)
        if m:
            synced.add(os.path.basename(m.group(1)))
    files = [f for f in os.listdir(images) if f.endswith(".img") and f != "inventory.img"]
    check("pages.img" in files and any(f.startswith("mm-") for f in files), f"files of the image: {files}")
    for name in files:
        check(f".{name}.tmp" in synced, f"{name} was not made durable before the inventory committed "
                                        f"(synced: {sorted(synced)})")
    restore_and_verify(env, pid, before, images, report)


def case_passes(env):
    pid, report = start_mega(env)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    with open(os.path.join(images, "stats-dump.json")) as f:
        stats = json.load(f)
    log(f"stats-dump.json: {stats}")
    for key in ("pages_copied_in", "pages_zero_tested", "pages_checksummed"):
        check(isinstance(stats.get(key), int), f"stats-dump.json has no count {key}")
    written = stats["pages_bytes"]
    check(written >= 32 << 20, f"pages_bytes {written}")
    check_eq(stats["pages_checksummed"], written, "bytes checksummed (once each byte written)")
    # Read once; zero pages are read and not written, the shared memory's last page is padded.
    check(written - (1 << 20) <= stats["pages_copied_in"] <= written * 1.05,
          f"bytes copied out of the tree {stats['pages_copied_in']} against {written} written")
    check(stats["pages_zero_tested"] < written / 50,
          f"the zero-page test read {stats['pages_zero_tested']} bytes of {written}: pages with data show it at once")
    restore_and_verify(env, pid, before, images, report)


if __name__ == "__main__":
    run({"durable": case_durable, "passes": case_passes})
