#!/usr/bin/env python3
"""A shell pipeline streaming through a pipe at full speed (`seq | awk`, awk checking
that every line is the next number): after restore no line is lost or repeated, the
pipeline goes on, and the shell gets awk's exit status when it ends."""
import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, exit_status_text, log, read_text, reap, run,  # noqa: E402
                     snapshot, wait_until)

SCRIPT = r'''seq 1 1000000000 | awk -v progress="$1" '
  NR > 1 && prev != NR - 1 { print "BAD line " NR - 1 ": " prev > "/dev/stderr"; exit 3 }
  { prev = $0 }
  NR % 20000 == 0 { print NR > progress; close(progress) }
  END {
    # seq is stopped by SIGTERM in the middle of a write: its last line may be cut short.
    if (index(NR "", prev) != 1) { print "BAD last line " NR ": " prev > "/dev/stderr"; exit 3 }
    print "END " NR > progress; close(progress)
  }'
'''


def lines_checked(path):
    text = read_text(path, "")
    m = re.search(r"(\d+)", text)
    return int(m.group(1)) if m else 0


def pipeline(env, leave_running):
    script = env.path("pipeline.sh")
    with open(script, "w") as f:
        f.write(SCRIPT)
    prog = env.path("progress")
    pid = env.spawn(["bash", script, prog], name="pipeline")
    wait_until(lambda: lines_checked(prog) >= 200000, 30, what="the pipeline to get going")
    before = snapshot(pid)
    check_eq(sorted(t["comm"] for t in before.values()), ["awk", "bash", "seq"], "the pipeline's processes")
    images = env.path("images")
    env.dump(pid, images, *(["-R"] if leave_running else []))
    if leave_running:
        now = lines_checked(prog)
        wait_until(lambda: lines_checked(prog) > now + 100000, 15, what="the original pipeline to go on")
        for p in before:
            os.kill(p, signal.SIGKILL)
        reap(list(before), what="the original pipeline")
    else:
        env.wait_dumped(before)
    at_dump = lines_checked(prog)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(before, snapshot(pid), pid)
    wait_until(lambda: lines_checked(prog) > at_dump + 200000, 30, what="the restored pipeline to go on")
    seq = [p for p, t in before.items() if t["comm"] == "seq"][0]
    os.kill(seq, signal.SIGTERM)  # awk sees EOF, prints END and exits 0
    statuses = reap(list(before), timeout=30, what="the pipeline after seq was stopped")
    text = read_text(prog, "")
    log(f"lines checked: {at_dump} at the dump, {text.strip()} at the end")
    check("END" in text, f"awk did not finish: {text!r}")
    status = statuses.get(pid)
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          f"the shell ended with {exit_status_text(status) if status is not None else '?'} "
          f"(awk exits 3 on a lost or repeated line)")


def case_pipeline(env):
    pipeline(env, False)


def case_pipeline_leave_running(env):
    pipeline(env, True)


if __name__ == "__main__":
    run({"pipeline": case_pipeline, "pipeline_leave_running": case_pipeline_leave_running})
