#!/usr/bin/env python3
"""The counter demo as a test: a bash loop appends "Count: N" to a log; it is dumped as
a shell job (it disappears), restored twice from the same image, and each time the
log goes on with N+1 under the same PID. Also runs integration/demo/counter_demo.sh."""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (CRYO, REPO, check, check_eq, descendants, exists, log, read_text, reap, run,  # noqa: E402
                     snapshot, state, wait_until)

PERIOD = "0.5"
SCRIPT = """n=0
while :; do
  n=$((n+1))
  echo "Count: $n" >> "$1"
  sleep "$2"
done
"""


def counts(path):
    return [int(m) for m in re.findall(r"^Count: (\d+)$", read_text(path, ""), re.M)]


def kill_tree(root):
    pids = [root] + descendants(root)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap(pids, timeout=10, what="killed counter")


def restore_and_follow(env, images, pid, last_before, log_path):
    """Restores; the same PID must come back and the log go on with last_before+1."""
    seen = len(counts(log_path))
    _, rpid = env.restore(images, "--shell-job")
    check_eq(rpid, pid, "pid of the restored counter (from --pidfile)")
    check(exists(pid) and state(pid) not in ("Z", "X"), f"restored counter {pid} is not running ({state(pid)})")
    check_eq(snapshot(pid)[pid]["comm"], "bash", "comm of the restored counter")
    wait_until(lambda: len(counts(log_path)) >= seen + 3, 15, what="three new counts after restore")
    new = counts(log_path)[seen:]
    log(f"after restore: {new}")
    check_eq(new[:3], [last_before + 1, last_before + 2, last_before + 3], "counts after restore")


def case_counter(env):
    script = env.path("counter.sh")
    with open(script, "w") as f:
        f.write(SCRIPT)
    log_path = env.path("count.log")
    # A shell job: in our session and process group, so --shell-job is needed.
    pid = env.spawn(["bash", script, log_path, PERIOD], setsid=False)
    wait_until(lambda: len(counts(log_path)) >= 3, 15, what="three counts")
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--shell-job")
    env.wait_dumped(tree)
    before = counts(log_path)
    n = before[-1]
    check_eq(before, list(range(1, n + 1)), "counts before the dump")
    time.sleep(3 * float(PERIOD))
    check_eq(counts(log_path), before, "counts while dumped (the counter should be gone)")

    restore_and_follow(env, images, pid, n, log_path)
    kill_tree(pid)
    # The same image again: it starts over from N+1.
    restore_and_follow(env, images, pid, n, log_path)
    kill_tree(pid)


def case_demo_script(env):
    """integration/demo/counter_demo.sh with a short period; it checks itself."""
    demo = os.path.join(REPO, "integration", "demo", "counter_demo.sh")
    pid = env.spawn(["bash", demo, CRYO], name="demo", setsid=True,
                    env=dict(os.environ, DEMO_PERIOD="0.5", DEMO_TMP=env.dir))
    statuses = reap([pid], timeout=120, what="counter_demo.sh")
    status = statuses.get(pid)
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          f"counter_demo.sh failed (status {status})")


if __name__ == "__main__":
    run({"counter": case_counter, "demo_script": case_demo_script})
