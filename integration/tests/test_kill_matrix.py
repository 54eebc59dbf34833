#!/usr/bin/env python3
"""The kill matrix: `cryo dump --tcp-established` and `cryo restore` killed (SIGKILL,
by the failpoint CRYO_FAILPOINT, not by timing) at each of their steps in turn.

The tree: a threaded HTTP server with a child process, and a keep-alive client of
the test's own. After every dump killed before its image is complete, the server
answers the same client on the same connection, no task is stopped or traced, no
lock is left. A dump killed once its inventory is in place is finished by the guard
(the tree killed, the lock kept), and its image restores. After every killed restore
nothing of the tree runs, the lock stays, the image is untouched; the final restore
brings the server back to the same client.
"""
import http.client
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, exists, hash_dir, log, reap, run, state, status_fields,  # noqa: E402
                     wait_until)

PYTHON = "/usr/bin/python3"

SERVER = r'''
import http.server, os, sys, threading, time
port, ready = int(sys.argv[1]), sys.argv[2]
child = os.fork()
if child == 0:
    while True:
        time.sleep(1)
count = [0]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        count[0] += 1
        body = f"{count[0]} {os.getpid()} {child}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
def tick():
    while True:
        time.sleep(0.001)
threading.Thread(target=tick, daemon=True).start()
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
with open(ready + ".tmp", "w") as f:
    f.write(str(child))
os.rename(ready + ".tmp", ready)
server.serve_forever()
'''


def lock_tables():
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return re.findall(r"cryo-lock-[0-9-]+", out)


def tree_healthy(pids):
    """Every task of pids runs: none stopped, traced or gone."""
    for pid in pids:
        st = state(pid)
        if st is None or st in ("T", "t", "Z", "X"):
            return False
        for tid in os.listdir(f"/proc/{pid}/task"):
            fields = status_fields(pid, tid, keys=("State", "TracerPid"))
            if fields.get("State", "")[:1] in ("T", "t") or fields.get("TracerPid") != "0":
                return False
    return True


class Client:
    """One keep-alive connection; every request must be answered on it, in order."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self.last = 0

    def request(self, what):
        self.conn.request("GET", "/")
        reply = self.conn.getresponse()
        check_eq(reply.status, 200, f"status of the request {what}")
        count = int(reply.read().split()[0])
        check(count == self.last + 1, f"request {what}: the server counted {count} after {self.last}")
        self.last = count


def start_tree(env):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready, script = env.path("server.ready"), env.path("server.py")
    with open(script, "w") as f:
        f.write(SERVER)
    pid = env.spawn([PYTHON, script, port, ready], name="server")
    wait_until(lambda: os.path.exists(ready), 30, what="the server")
    child = int(open(ready).read())
    return pid, child, port


def case_dump(env):
    pid, child, port = start_tree(env)
    client = Client(port)
    client.request("before any dump")
    tids_before = sorted(os.listdir(f"/proc/{pid}/task"))
    step, kills = 0, []
    while True:
        step += 1
        images = env.path(f"images-{step}")
        result = env.cryo("dump", "-t", pid, "-D", images, "--tcp-established", expect=None,
                          env_extra={"CRYO_FAILPOINT": f"@{step}"})
        if result.returncode != -signal.SIGKILL:
            check_eq(result.returncode, 0, f"exit code of the dump that ran past step {step}")
            break
        where = re.search(r"failpoint (\S+)", result.stderr)
        kills.append(where.group(1) if where else "?")
        if kills[-1] in ("dump.committed", "dump.killing"):
            # The image was complete: the guard finished the job and killed the tree.
            check(os.path.exists(os.path.join(images, "inventory.img")), "a committed dump has no inventory.img")
            wait_until(lambda: not exists(pid) or state(pid) == "Z", 10, what="the guard to kill the dumped tree")
            check(lock_tables(), "the guard of a committed dump dropped the lock its restore needs")
            break
        wait_until(lambda: tree_healthy([pid, child]), 10, what=f"the tree to run on after a kill at {kills[-1]}")
        wait_until(lambda: not lock_tables(), 10, what=f"the lock to go after a kill at {kills[-1]}")
        check_eq(sorted(os.listdir(f"/proc/{pid}/task")), tids_before, f"threads after a kill at {kills[-1]}")
        client.request(f"after cryo dump was killed at step {step} ({kills[-1]})")
    log(f"dump killed at {len(kills)} steps: {' '.join(kills)}")
    check(step > 20, f"only {step} steps: the failpoints do not cover the dump")
    check("remote.syscall" in kills and "dump.parked" in kills and "dump.locked" in kills,
          f"steps not reached: {kills}")
    reap([pid, child], what="the dumped tree")
    return images, port, client, pid, child


def case_dump_and_restore(env):
    images, port, client, pid, child = case_dump(env)
    try:
        restore_matrix(env, images, client, pid, child)
    finally:
        env.cryo("network-unlock", "-D", images, expect=None)  # a failing test leaves no lock behind


def restore_matrix(env, images, client, pid, child):
    before = hash_dir(images)
    for fp in ("restore.stubs", "remote.syscall:5", "remote.syscall:60", "restore.memory", "restore.memory:2",
               "restore.state", "restore.release", "restore.released"):
        result = env.cryo("restore", "-D", images, "--tcp-established", "-d", expect=None,
                          env_extra={"CRYO_FAILPOINT": fp})
        check_eq(result.returncode, -signal.SIGKILL, f"restore with the failpoint {fp}: {result.describe()}")
        wait_until(lambda: all(not exists(p) or state(p) == "Z" for p in (pid, child)), 10,
                   what=f"nothing of the tree to run after a restore killed at {fp}")
        reap([p for p in (pid, child) if exists(p)], what=f"what a restore killed at {fp} made")
        check(lock_tables(), f"a restore killed at {fp} dropped the lock")
        check_eq(hash_dir(images), before, f"the image after a restore killed at {fp}")
        log(f"restore killed at {fp}: nothing left, lock kept, image untouched")
    env.restore(images, "--tcp-established", "-d")
    check(not lock_tables(), "the lock is still there after the restore")
    client.request("after the restore")
    client.request("again after the restore")


if __name__ == "__main__":
    run({"dump": case_dump, "dump_and_restore": case_dump_and_restore})
