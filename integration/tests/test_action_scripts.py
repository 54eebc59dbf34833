#!/usr/bin/env python3
"""--action-script, as CRIU runs it: a script of the caller's at each stage of a dump and a
restore, with CRTOOLS_SCRIPT_ACTION, CRTOOLS_IMAGE_DIR and CRTOOLS_INIT_PID.

- stages: a counter dumped and restored with a script that logs each call: the dump runs
  pre-dump then post-dump, the restore pre-restore, setup-namespaces, post-setup-namespaces,
  post-restore, pre-resume, post-resume, in that order, each with the image directory and
  (once known) the root's pid; the counter goes on.
- namespaces: a tree with its own pid and network namespaces (the restore works on it from a
  worker inside the pid namespace, which asks cryo to run the post-restore and pre-resume
  scripts): network-lock runs at the dump and network-unlock at the restore, the root's pid
  is the one cryo sees, and at setup-namespaces the root is already in the tree's new network
  namespace.
- failures: a script failing at pre-dump or post-dump fails the dump, naming the script, and
  the tree runs on with no image written; one failing at post-restore fails the restore and
  leaves no process of it; the image then restores.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, exists, progress, read_text, run, snapshot, wait_progress,  # noqa: E402
                     wait_until)

SCRIPT = r'''#!/bin/sh
echo "$CRTOOLS_SCRIPT_ACTION ${CRTOOLS_INIT_PID:--} ${CRTOOLS_IMAGE_DIR:--}" >> "{log}"
if [ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ]; then
    readlink "/proc/$CRTOOLS_INIT_PID/ns/net" > "{log}.net"
fi
[ "$CRTOOLS_SCRIPT_ACTION" = "${FAIL_AT:-}" ] && exit 3
exit 0
'''


def make_script(env):
    log = env.path("actions.log")
    path = env.path("action.sh")
    with open(path, "w") as f:
        f.write(SCRIPT.replace("{log}", log))
    os.chmod(path, 0o755)
    return path, log


def calls(log):
    """The logged calls since the last read, as (action, pid or None, image dir)."""
    lines = (read_text(log) or "").splitlines()
    os.unlink(log) if os.path.exists(log) else None
    out = []
    for line in lines:
        action, pid, images = line.split(" ", 2)
        out.append((action, None if pid == "-" else int(pid), images))
    return out


def start_counter(env, wrap=()):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([*wrap, env.workload("counter"), ready, report, prog], name="counter")
    env.wait_ready(ready, pid)
    if wrap:  # unshare --fork: the counter is its child
        pid = wait_until(lambda: [int(x) for x in (read_text(f"/proc/{pid}/task/{pid}/children") or "").split()],
                         10, what="the counter below unshare")[0]
    wait_progress(prog, 5)
    return pid, report, prog


def case_stages(env):
    script, log = make_script(env)
    pid, report, prog = start_counter(env)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--action-script", script)
    env.wait_dumped(before)
    check_eq(calls(log), [("pre-dump", pid, images), ("post-dump", pid, images)], "the dump's calls")
    _, rpid = env.restore(images, "--action-script", script)
    check_eq(rpid, pid, "restored pid")
    want = [("pre-restore", None, images)] + [(a, pid, images) for a in (
        "setup-namespaces", "post-setup-namespaces", "post-restore", "pre-resume", "post-resume")]
    check_eq(calls(log), want, "the restore's calls")
    wait_progress(prog, progress(prog)[0] + 5)
    env.trigger_and_report(pid, report)


def case_namespaces(env):
    script, log = make_script(env)
    pid, report, prog = start_counter(env, wrap=("unshare", "--pid", "--fork", "--net", "setsid"))
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--action-script", script)
    env.wait_dumped(before)
    check_eq([c[0] for c in calls(log)], ["pre-dump", "network-lock", "post-dump"], "the dump's calls")
    _, rpid = env.restore(images, "--action-script", script)
    got = calls(log)
    check_eq([c[0] for c in got], ["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore",
                                   "pre-resume", "network-unlock", "post-resume"], "the restore's calls")
    check_eq({c[1] for c in got[1:]}, {rpid}, "CRTOOLS_INIT_PID of the restore's calls")
    net = os.readlink(f"/proc/{rpid}/ns/net")
    check(net != os.readlink("/proc/self/ns/net"), "the restored root shares cryo's network namespace")
    check_eq((read_text(log + ".net") or "").strip(), net, "the root's network namespace at setup-namespaces")
    wait_progress(prog, progress(prog)[0] + 5)
    env.trigger_and_report(rpid, report)


def case_failures(env):
    script, log = make_script(env)
    pid, report, prog = start_counter(env)
    images = env.path("images")
    for stage in ("pre-dump", "post-dump"):
        result = env.cryo("dump", "-t", pid, "-D", images, "--action-script", script, expect=1,
                          env_extra={"FAIL_AT": stage})
        check(script in result.stderr and stage in result.stderr,
              f"the failure at {stage} does not name the script: {result.stderr.strip()!r}")
        check(not os.path.exists(os.path.join(images, "inventory.img")) and not any(
            n.startswith("inventory") for n in os.listdir(images)), f"an image was written after a failed {stage}")
        wait_progress(prog, progress(prog)[0] + 5)
    calls(log)
    before = snapshot(pid)
    env.dump(pid, images)
    env.wait_dumped(before)
    result, _ = env.restore(images, "--action-script", script, expect=1, env_extra={"FAIL_AT": "post-restore"})
    check(script in result.stderr, f"the failed restore does not name the script: {result.stderr.strip()!r}")
    wait_until(lambda: not exists(pid), 10, what=f"pid {pid} to be gone after the failed restore")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"stages": case_stages, "namespaces": case_namespaces, "failures": case_failures})
