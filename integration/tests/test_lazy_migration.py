#!/usr/bin/env python3
"""Lazy migration (post-copy from a source): `cryo dump --lazy-pages --port 0` writes an image
without the tree's private anonymous memory and serves that memory from the frozen tree;
the image goes to another directory (the "destination"), where `cryo lazy-pages --page-server`
fetches the pages from the source as the tree restored with `restore --lazy-pages --new-pidns`
(its pids are the source's, still taken here) touches them, and the rest in the background.
The restored process (256 MiB of patterned memory, and more it gives up, moves and forks
over after its restore) checks all of it; the source's tree is killed and its dump exits 0
only once the daemon has every page; after a pre-dump, it serves only what was written since.
A source killed midway takes the restored tree with it
(it cannot run without its memory) and the daemon names the cause; the source's tree, let
go by its dead dump, runs on with its memory whole. An image of a lazy dump is refused
without --lazy-pages.
cow: memory a parent and its children share copy-on-write since their fork (the sharing
workload's 64 MiB shared by five processes) comes over once and stays one copy in the
restored tree, and each process still sees its own writes only."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
import harness  # noqa: E402
from test_page_server import make_certs, tls_args  # noqa: E402
from test_sharing import MIB, pss_in  # noqa: E402
from harness import (check, check_eq, descendants, exists, exit_status_text, log, page_files_size, read_text, reap,  # noqa: E402
                     run, snapshot, state, status_fields, wait_until)


def start_lazymem(env, mib=256):
    ready, report = env.path("ready"), env.path("report")
    pid = env.spawn([env.workload("lazymem"), ready, report, "--mib", str(mib), "--after-restore"])
    env.wait_ready(ready, pid)
    return pid, report


def start_source(env, pid, images, *extra):
    """cryo dump --lazy-pages in the background; returns (Popen, port) once its status fd
    says it serves."""
    os.makedirs(images, exist_ok=True)
    status_read, status_write = os.pipe()
    out_path, err_path = env.path("source.out"), env.path("source.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([env.cryo_path, "dump", "-t", str(pid), "-D", images, "--lazy-pages", "--address",
                                 "127.0.0.1", "--port", "0", "--status-fd", str(status_write), "-v4", "-o",
                                 env.path("source.log"), *extra], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                pass_fds=(status_write,))
    harness._POPENS.append(proc)
    env.logs.append(env.path("source.log"))
    os.close(status_write)
    log(f"cryo dump -t {pid} --lazy-pages & (pid {proc.pid})")
    got = os.read(status_read, 1)
    os.close(status_read)
    check(got == b"\0", "the source closed its status fd without saying it serves: " +
          (read_text(err_path, "") or "").strip())
    check(proc.poll() is None, "the source exited instead of serving")
    port = int(read_text(out_path, "").split()[0])
    check(page_files_size(images) < (16 << 20), "the lazy dump wrote the tree's memory into its image")
    return proc, err_path, port


def to_destination(env, images):
    dest = env.path("dest")
    shutil.copytree(images, dest)
    return dest


def start_daemon(env, dest, port, rate, *extra):
    socket_path = os.path.join(dest, "lazy-pages.socket")
    proc, out, err = env.cryo_background_env({"CRYO_LAZY_RATE": str(rate)}, "lazy-pages", "--page-server",
                                             "--address", "127.0.0.1", "--port", port, "-D", dest, "-v4", "-o",
                                             env.path("lazy-pages.log"), *extra)
    env.logs.append(env.path("lazy-pages.log"))

    def listening():
        check(proc.poll() is None, "lazy-pages exited: " + (read_text(err, "") or "").strip())
        return os.path.exists(socket_path)
    wait_until(listening, 30, what="lazy-pages to listen")
    return proc, err


def restore_lazily(env, dest):
    """The restored root as seen here, and cryo's init above it (pid 1 of its namespace)."""
    _, host = env.restore(dest, "--lazy-pages", "--new-pidns")
    check(host is not None, "no pid file")
    init = int(status_fields(host, keys=("PPid",))["PPid"])
    return host, init


def case_migrate(env):
    pid, report = start_lazymem(env)
    before = snapshot(pid)
    source, source_err, port = start_source(env, pid, env.path("images"))
    check(state(pid) in ("t", "T"), f"the source's tree is not frozen while it serves (state {state(pid)})")
    dest = to_destination(env, env.path("images"))
    daemon, err = start_daemon(env, dest, port, rate=64)  # 4 s for the lot: the tree runs long before
    host, init = restore_lazily(env, dest)
    check(daemon.poll() is None, "the daemon had finished before the restored tree ran: nothing was lazy")
    check(source.poll() is None, "the source exited before the pages were all in")
    env.trigger_and_report(host, report, timeout=120)
    reap([init], what="cryo's init once the root has ended")
    check_eq(daemon.wait(timeout=120), 0, "lazy-pages exit code (stderr: " + (read_text(err, "") or "").strip() + ")")
    check_eq(source.wait(timeout=60), 0, "the source's exit code (stderr: " + (read_text(source_err, "") or "").strip() + ")")
    daemon_log = read_text(env.path("lazy-pages.log"), "")
    check("remote pages from the source" in daemon_log, "lazy-pages does not say what came from the source")
    check("has what it needs" in read_text(env.path("source.log"), ""), "the source does not say the daemon had every page")
    statuses = env.wait_dumped(before)
    check(pid in statuses, "the source's tree was not reaped")


def case_after_predump(env):
    """Pre-copy then post-copy: a pre-dump travels first, the lazy dump against it
    (--prev-images-dir) serves only what was written since; the daemon brings the rest from
    the pre-dump beside the image."""
    pid, report = start_lazymem(env, mib=64)
    before = snapshot(pid)
    images = env.path("images")
    os.makedirs(os.path.join(images, "pre"))
    env.cryo("pre-dump", "-t", pid, "-D", os.path.join(images, "pre"), log_name="pre-dump")
    source, source_err, port = start_source(env, pid, os.path.join(images, "final"), "--prev-images-dir", "../pre")
    dest = to_destination(env, images)
    daemon, err = start_daemon(env, os.path.join(dest, "final"), port, rate=64)
    host, init = restore_lazily(env, os.path.join(dest, "final"))
    env.trigger_and_report(host, report, timeout=120)
    reap([init], what="cryo's init once the root has ended")
    check_eq(daemon.wait(timeout=120), 0, "lazy-pages exit code (stderr: " + (read_text(err, "") or "").strip() + ")")
    check_eq(source.wait(timeout=60), 0, "the source's exit code (stderr: " + (read_text(source_err, "") or "").strip() + ")")
    # 64 MiB written before the pre-dump, nothing since: what comes over is page flags.
    found = re.search(r"received (\d+) bytes", read_text(env.path("lazy-pages.log"), ""))
    check(found, "lazy-pages does not say how much came from the source")
    check(int(found.group(1)) < (1 << 20), f"{found.group(1)} bytes came from the source: the pre-dump's pages did not")
    env.wait_dumped(before)


def case_tls(env):
    """Over TLS, each side proving itself with a certificate of the test's CA (the source is
    the TLS server)."""
    d = make_certs(env)
    pid, report = start_lazymem(env, mib=32)
    before = snapshot(pid)
    source, source_err, port = start_source(env, pid, env.path("images"), *tls_args(d, "server"))
    dest = to_destination(env, env.path("images"))
    daemon, err = start_daemon(env, dest, port, 64, *tls_args(d, "client"))
    host, init = restore_lazily(env, dest)
    env.trigger_and_report(host, report, timeout=120)
    reap([init], what="cryo's init once the root has ended")
    check_eq(daemon.wait(timeout=120), 0, "lazy-pages exit code (stderr: " + (read_text(err, "") or "").strip() + ")")
    check_eq(source.wait(timeout=60), 0, "the source's exit code (stderr: " + (read_text(source_err, "") or "").strip() + ")")
    env.wait_dumped(before)


def case_source_killed(env):
    pid, report = start_lazymem(env)
    source, _, port = start_source(env, pid, env.path("images"))
    dest = to_destination(env, env.path("images"))
    daemon, err = start_daemon(env, dest, port, rate=16)  # 16 s for the lot
    host, init = restore_lazily(env, dest)
    time.sleep(1)
    check(daemon.poll() is None, "the daemon had finished before the source was killed")
    source.kill()
    source.wait()
    log("killed the source mid-transfer")
    rc = daemon.wait(timeout=60)
    text = (read_text(err, "") or "").strip()
    log("lazy-pages says: " + text)
    check_eq(rc, 1, "lazy-pages exit code once the source is gone (stderr: " + text + ")")
    check("the source" in text and "killed" in text, f"lazy-pages does not say the source went and the tree is killed: {text}")
    statuses = reap([host, init], timeout=30, what="the restored tree (the keeper should kill it)")
    if host in statuses:
        check(os.WIFSIGNALED(statuses[host]) and os.WTERMSIG(statuses[host]) == signal.SIGKILL,
              f"the restored process ended with {exit_status_text(statuses[host])}, not killed")
    check(not read_text(report), "the restored process ran with memory missing and reported: " + (read_text(report) or ""))
    # The source's tree, let go by its dead dump, runs on whole.
    wait_until(lambda: exists(pid) and state(pid) not in ("t", "T"), 10, what="the source's tree to run on")
    env.trigger_and_report(pid, report, timeout=60)


def case_refused_whole(env):
    """The image of a lazy dump holds no memory: a restore without --lazy-pages is refused,
    and so is a lazy-pages daemon without --page-server."""
    pid, report = start_lazymem(env, mib=8)
    source, _, port = start_source(env, pid, env.path("images"))
    dest = to_destination(env, env.path("images"))
    result = env.cryo("restore", "-D", dest, "-d", "--new-pidns", expect=1)
    check("--lazy-pages" in result.stderr and "page-server" in result.stderr,
          f"the refusal does not say how to restore it: {result.stderr.strip()}")
    result = env.cryo("lazy-pages", "-D", dest, expect=1)
    check("--page-server" in result.stderr, f"lazy-pages does not ask for the source: {result.stderr.strip()}")
    source.kill()
    source.wait()
    wait_until(lambda: exists(pid) and state(pid) not in ("t", "T"), 10, what="the source's tree to run on")
    env.trigger_and_report(pid, report, timeout=60)


def case_cow(env):
    ready, report = env.path("ready"), env.path("report")
    root = env.spawn([env.workload("sharing"), "cow", ready, report], name="sharing")
    info = env.wait_ready(ready, root)
    offset = info["addr"] - info["addr"] % 4096
    before = snapshot(root)
    source, source_err, port = start_source(env, root, env.path("images"))
    dest = to_destination(env, env.path("images"))
    daemon, err = start_daemon(env, dest, port, rate=64)
    host, init = restore_lazily(env, dest)
    check_eq(daemon.wait(timeout=120), 0, "lazy-pages exit code (stderr: " + (read_text(err, "") or "").strip() + ")")
    check_eq(source.wait(timeout=60), 0, "the source's exit code (stderr: " + (read_text(source_err, "") or "").strip() + ")")
    env.wait_dumped(before)
    tree = [host] + descendants(host)
    check_eq(len(tree), 5, "processes in the restored tree")
    pss = sum(pss_in(p, offset, offset + 64 * MIB) for p in tree)
    found = re.search(r"received (\d+) bytes", read_text(env.path("lazy-pages.log"), ""))
    check(found, "lazy-pages does not say how much came from the source")
    log(f"{int(found.group(1)) / MIB:.1f} MiB came from the source; Pss of the 64 MiB mapping in the 5 restored "
        f"processes once every page is in: {pss / MIB:.1f} MiB")
    check(pss < 80 * MIB, f"the restored tree holds {pss / MIB:.1f} MiB of the mapping: not shared as it was")
    check(int(found.group(1)) < 80 * MIB, f"{int(found.group(1)) / MIB:.1f} MiB came from the source: the shared pages "
          "more than once")
    env.trigger_and_report(host, report, timeout=120)
    reap([init], what="cryo's init once the root has ended")


if __name__ == "__main__":
    run({"migrate": case_migrate, "source_killed": case_source_killed, "refused_whole": case_refused_whole,
         "after_predump": case_after_predump, "tls": case_tls, "cow": case_cow})
