#!/usr/bin/env python3
"""Credentials come back as they were: real/effective/saved ids and supplementary
groups of an unprivileged process, and the capability sets (bounding, inheritable,
ambient) of a root process that dropped some."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check_eq, compare_snapshots, log, run, snapshot, status_fields,  # noqa: E402
                     wait_progress)

KEYS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")


def creds_round_trip(env, setpriv_args, expect):
    shared = env.path("shared")
    os.chmod(env.dir, 0o711)  # so that an unprivileged workload reaches shared/
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    ready, report, prog = (os.path.join(shared, n) for n in ("ready", "report", "progress"))
    pid = env.spawn(["setpriv", *setpriv_args, "--", env.workload("counter"), ready, report, prog, "--threads", "2",
                     "--child"], name="counter")
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    creds = {p: {t: status_fields(p, t, KEYS) for t in before[p]["tids"]} for p in before}
    log(f"credentials of {pid}: {creds[pid][pid]}")
    for key, want in expect.items():
        check_eq(creds[pid][pid].get(key), want, f"{key} before the dump (setpriv did not do what we think)")
    images = env.round_trip(pid, before)
    for p in before:
        for t in before[p]["tids"]:
            env.soft(check_eq, status_fields(p, t, KEYS), creds[p][t], f"credentials of {p}/{t}")
    env.trigger_and_report(pid, report)


def case_unprivileged(env):
    creds_round_trip(env, ["--ruid", "1000", "--euid", "1001", "--rgid", "2000", "--egid", "2001",
                           "--groups", "3000,3001,3002"],
                     {"Uid": "1000\t1001\t1001\t1001", "Gid": "2000\t2001\t2001\t2001", "Groups": "3000 3001 3002"})


def case_capabilities(env):
    creds_round_trip(env, ["--bounding-set", "-sys_admin,-net_raw,-sys_module", "--inh-caps", "+net_bind_service",
                           "--ambient-caps", "+net_bind_service", "--groups", "4000"],
                     {"CapAmb": "0000000000000400", "Groups": "4000"})


if __name__ == "__main__":
    run({"unprivileged": case_unprivileged, "capabilities": case_capabilities})
