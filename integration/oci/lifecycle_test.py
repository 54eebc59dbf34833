"""create/start/state/exec/kill/delete/list/ps/pause/resume/run through the CLI."""
import json
import os
import signal
import time

from cryo_oci import check, main


def test_lifecycle(env):
    bundle = env.bundle("life", ["sh", "-c", "echo started > /tmp/started; exec sleep 1000"])
    pid_file = os.path.join(env.tmp, "life.pid")
    env.run(["create", "--bundle", bundle, "--pid-file", pid_file, "life"])
    st = env.state("life")
    check(st["status"] == "created", "state after create is created")
    check(int(open(pid_file).read()) == st["pid"] and st["pid"] > 0, "pid file holds the init pid")
    check(st["bundle"] == os.path.realpath(bundle) and st["ociVersion"], "state has bundle and ociVersion")
    check(not os.path.exists(os.path.join(env.rootfs, "tmp/started")), "process not started before start")
    again = env.run(["create", "--bundle", bundle, "life"], check=False)
    check(again.returncode != 0 and "already exists" in again.stderr, "second create of the same id fails")
    env.run(["start", "life"])
    env.wait_status("life", "running")
    for _ in range(100):
        if os.path.exists(os.path.join(env.rootfs, "tmp/started")):
            break
        time.sleep(0.05)
    check(os.path.exists(os.path.join(env.rootfs, "tmp/started")), "process ran after start")
    check(env.run(["start", "life"], check=False).returncode != 0, "start of a running container fails")
    rm = env.run(["delete", "life"], check=False)
    check(rm.returncode != 0 and "not stopped" in rm.stderr, "delete of a running container without --force fails")
    listing = json.loads(env.run(["list", "-f", "json"]).stdout)
    check([c["id"] for c in listing] == ["life"] and listing[0]["status"] == "running", "list -f json")
    check(env.run(["list", "-q"]).stdout.split() == ["life"], "list -q")
    out = env.run(["exec", "life", "sh", "-c", "echo $((6*7)); exit 3"], check=False)
    check(out.returncode == 3 and out.stdout.strip() == "42", "exec runs in the container and returns its status")
    out = env.run(["exec", "--env", "FOO=bar", "--cwd", "/tmp", "life", "sh", "-c", "echo $FOO $(pwd)"])
    check(out.stdout.strip() == "bar /tmp", "exec --env --cwd")
    out = env.run(["exec", "life", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"])
    lines = out.stdout.split("\n")
    check(lines[1].startswith("sleep 1000"), "exec sees the container's pid namespace: " + out.stdout)
    pids = json.loads(env.run(["ps", "-f", "json", "life"]).stdout)
    check(pids == [st["pid"]], "ps -f json lists the init: %s" % pids)
    table = env.run(["ps", "life"]).stdout
    check("sleep 1000" in table and "PID" in table, "ps table")
    env.run(["exec", "-d", "--pid-file", os.path.join(env.tmp, "exec.pid"), "life", "sleep", "1001"])
    exec_pid = int(open(os.path.join(env.tmp, "exec.pid")).read())
    check(exec_pid in json.loads(env.run(["ps", "-f", "json", "life"]).stdout), "exec -d process is in the cgroup")
    env.run(["pause", "life"])
    check(env.state("life")["status"] == "paused", "pause")
    check(env.run(["exec", "life", "true"], check=False).returncode != 0, "exec in a paused container fails")
    env.run(["resume", "life"])
    check(env.state("life")["status"] == "running", "resume")
    stats = json.loads(env.run(["events", "--stats", "life"]).stdout)
    check(stats["type"] == "stats" and stats["data"]["pids"]["current"] == 2, "events --stats: %s" % stats)
    import subprocess
    events_out = open(os.path.join(env.tmp, "events.out"), "w+")
    events = subprocess.Popen([os.environ.get("CRYO", "cryo"), "--root", env.root, "events", "--interval", "100ms", "life"],
                              stdout=events_out, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    env.run(["kill", "life", "KILL"])
    env.wait_status("life", "stopped")
    events.wait(10)
    lines = open(events_out.name).read().splitlines()
    check(len(lines) >= 2 and all(json.loads(line)["type"] == "stats" for line in lines),
          "events streams stats every --interval and ends when the container stops: %d lines" % len(lines))
    check(env.state("life")["pid"] == 0, "stopped container has pid 0")
    k = env.run(["kill", "life", "TERM"], check=False)
    check(k.returncode != 0 and "not running" in k.stderr, "kill of a stopped container fails clearly")
    env.run(["delete", "life"])
    gone = env.run(["state", "life"], check=False)
    check(gone.returncode != 0 and "does not exist" in gone.stderr, "state after delete says does not exist")
    check(not os.path.exists("/sys/fs/cgroup/memory/cryo-test-lifecycle-life"), "delete removed the cgroup")


def test_kill_signals(env):
    script = "trap 'echo got-usr1 > /tmp/usr1' USR1; echo ready > /tmp/ready; while true; do sleep 0.1; done"
    bundle = env.bundle("sig", ["sh", "-c", script])
    env.run(["run", "-d", "--bundle", bundle, "sig"])
    for _ in range(100):
        if os.path.exists(os.path.join(env.rootfs, "tmp/ready")):
            break
        time.sleep(0.05)
    env.run(["kill", "sig", "SIGUSR1"])
    for _ in range(100):
        if os.path.exists(os.path.join(env.rootfs, "tmp/usr1")):
            break
        time.sleep(0.05)
    check(os.path.exists(os.path.join(env.rootfs, "tmp/usr1")), "kill SIGUSR1 by name reaches the trap")
    check(env.run(["kill", "sig", "NOSUCH"], check=False).returncode != 0, "unknown signal name fails")
    env.run(["exec", "-d", "sig", "sleep", "100"])
    env.run(["kill", "--all", "sig", "9"])
    env.wait_status("sig", "stopped")
    env.run(["delete", "sig"])


def test_run_foreground(env):
    bundle = env.bundle("fg", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    p = env.run(["run", "--bundle", bundle, "fg"], check=False)
    check(p.returncode == 7 and p.stdout.strip() == "out" and "err" in p.stderr, "run returns the exit status and stdio")
    check(env.run(["state", "fg"], check=False).returncode != 0, "run deletes the container afterwards")
    import subprocess
    bundle = env.bundle("fwd", ["sh", "-c", "trap 'exit 9' TERM; touch /tmp/fwd-ready; while true; do sleep 0.1; done"])
    p = subprocess.Popen([os.environ.get("CRYO", "cryo"), "--root", env.root, "run", "--bundle", bundle, "fwd"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(os.path.join(env.rootfs, "tmp/fwd-ready")):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    check(p.wait(20) == 9, "run forwards SIGTERM to the container and returns its status")


def test_create_errors(env):
    bundle = env.bundle("bad", ["true"], edit=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}]))
    p = env.run(["create", "--bundle", bundle, "bad"], check=False)
    check(p.returncode != 0 and "RLIMIT_NOFILE" in p.stderr and "CAP_SYS_RESOURCE" in p.stderr,
          "an rlimit above the hard limit fails clearly: " + p.stderr.strip())
    check(env.run(["state", "bad"], check=False).returncode != 0, "a failed create leaves no state")
    bundle = env.bundle("unsup", ["true"], edit=lambda c: c["linux"].update(intelRdt={"closID": "x"}))
    p = env.run(["create", "--bundle", bundle, "unsup"], check=False)
    check(p.returncode != 0 and "linux.intelRdt" in p.stderr, "unsupported config names the field: " + p.stderr.strip())
    bundle = env.bundle("nocmd", ["no-such-program"])
    p = env.run(["create", "--bundle", bundle, "nocmd"], check=False)
    check(p.returncode != 0 and "no-such-program" in p.stderr and "not found" in p.stderr,
          "a missing program fails create: " + p.stderr.strip())
    log = os.path.join(env.tmp, "log.json")
    p = env.run(["--log", log, "--log-format", "json", "start", "nosuch"], check=False)
    last = json.loads(open(log).read().strip().split("\n")[-1])
    check(p.returncode != 0 and last["level"] == "error" and "does not exist" in last["msg"] and last["time"],
          "json log has the error line")
    p = env.run(["--systemd-cgroup", "create", "--bundle", bundle, "x"], check=False)
    check(p.returncode != 0 and "systemd" in p.stderr, "--systemd-cgroup fails clearly")


def test_concurrency(env):
    """The directory lock: racing creates of one id make one container, racing deletes one delete."""
    import subprocess
    bundle = env.bundle("race", ["sleep", "100"])
    cmd = [os.environ.get("CRYO", "cryo"), "--root", env.root]
    # stderr to files: the winner's container keeps its stdio open.
    errs = [open(os.path.join(env.tmp, "err%d" % i), "w+") for i in range(4)]
    procs = [subprocess.Popen(cmd + ["create", "--bundle", bundle, "race"], stdout=subprocess.DEVNULL,
                              stderr=errs[i]) for i in range(4)]
    results = [(p.wait(30), "") for p in procs]
    results = [(rc, open(errs[i].name).read()) for i, (rc, _) in enumerate(results)]
    ok = [r for r in results if r[0] == 0]
    check(len(ok) == 1 and all("already exists" in e for rc, e in results if rc != 0),
          "exactly one of 4 racing creates wins: %s" % results)
    env.wait_status("race", "created")
    starts = [subprocess.Popen(cmd + ["start", "race"], stderr=subprocess.DEVNULL) for _ in range(3)]
    codes = sorted(p.wait(30) for p in starts)
    check(codes == [0, 1, 1], "exactly one of 3 racing starts starts it: %s" % codes)
    deletes = [subprocess.Popen(cmd + ["delete", "--force", "race"], stderr=subprocess.DEVNULL) for _ in range(3)]
    codes = [p.wait(30) for p in deletes]
    check(codes == [0, 0, 0], "racing delete --force all succeed: %s" % codes)
    check(env.run(["state", "race"], check=False).returncode != 0 and not os.path.exists(
        "/sys/fs/cgroup/pids/cryo-test-concurrency-race"), "and the container is gone")


def test_text_log_and_oom_score(env):
    log = os.path.join(env.tmp, "cryo.log")
    p = env.run(["--log", log, "delete", "nosuch"], check=False)
    check(p.returncode != 0 and "does not exist" in open(log).read(), "--log FILE (text) gets the error")
    bundle = env.bundle("oom", ["cat", "/proc/self/oom_score_adj"], edit=lambda c: c["process"].update(oomScoreAdj=500))
    check(env.run(["run", "--bundle", bundle, "oom"]).stdout.strip() == "500", "process.oomScoreAdj")
    bundle = env.bundle("oomneg", ["true"], edit=lambda c: c["process"].update(oomScoreAdj=-500))
    p = env.run(["run", "--bundle", bundle, "oomneg"], check=False)
    check(p.returncode != 0 and "oomScoreAdj" in p.stderr and "CAP_SYS_RESOURCE" in p.stderr,
          "lowering oomScoreAdj fails clearly: " + p.stderr.strip())


if __name__ == "__main__":
    main({"lifecycle": test_lifecycle, "kill_signals": test_kill_signals, "run_foreground": test_run_foreground,
          "create_errors": test_create_errors, "concurrency": test_concurrency, "text_log": test_text_log_and_oom_score})
