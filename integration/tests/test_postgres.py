#!/usr/bin/env python3
"""A real PostgreSQL server (Debian's, a cluster of its own in the temp dir) is
dumped with --tcp-established while a psql client, outside the tree, is in the
middle of a transaction over TCP. After the restore the same transaction goes on
and commits, new clients connect through the unix socket (its file keeps the
owner and mode clients need), and the server shuts down cleanly. PostgreSQL
brings together a tree of processes that each lead a session, a System V
segment, shared anonymous memory, epoll and signalfd latches, pipes, a
listening TCP socket and a named unix listener."""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, free_port, log, reap, run, snapshot, wait_until  # noqa: E402

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))



class Cluster:
    def __init__(self, env):
        check(BIN, "PostgreSQL is not installed (make deps installs it)")
        self.bin = BIN[-1]
        self.env = env
        self.dir = env.path("pg")
        os.makedirs(self.dir)
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        os.chmod(os.path.dirname(self.dir), 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_postgres(os.path.join(self.bin, "initdb"), "-D", self.data, "--auth=trust", "-U", "postgres",
                         "--no-sync")
        self.pid = None

    def as_postgres(self, *argv, **kwargs):
        cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]
        return subprocess.run(cmd, check=kwargs.pop("check", True), capture_output=True, text=True, **kwargs)

    def start(self, wrap=()):
        argv = [*wrap, "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", os.path.join(self.bin, "postgres"),
                "-D", self.data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off", "-c", "max_connections=10"]
        self.pid = self.env.spawn(argv, name="postgres")
        wait_until(lambda: self.sql("select 1", check=False).returncode == 0, 30, what="postgres to accept clients")

    def psql(self, *args, tcp=False):
        host = "127.0.0.1" if tcp else self.dir
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", os.path.join(self.bin, "psql"),
                "-h", host, "-p", str(self.port), "-U", "postgres", "-tA", "-X", *args]

    def sql(self, query, check=True):
        return subprocess.run(self.psql("-c", query), capture_output=True, text=True, check=check, timeout=30)

    def stop(self):
        """A fast shutdown; the postmaster must exit 0."""
        os.kill(self.pid, 2)
        statuses = reap([self.pid], timeout=30, what="postgres after SIGINT")
        return statuses.get(self.pid)


def case_transaction_across_restore(env):
    pg = Cluster(env)
    pg.start()
    segments = [line.split()[4] for line in open(f"/proc/{pg.pid}/maps") if "/SYSV" in line]
    try:
        transaction_across_restore(env, pg, segments)
    finally:  # a failed run is killed, not shut down: its segment would stay
        for shmid in segments:
            subprocess.run(["ipcrm", "-m", shmid], capture_output=True)


def case_ipc_namespace(env):
    """The server in an IPC namespace of its own (as in a container): its
    segment is the namespace's, saved with it and found again after the
    restore under the same id, in a fresh namespace."""
    pg = Cluster(env)
    pg.start(wrap=["unshare", "--ipc", "--"])
    check(os.readlink(f"/proc/{pg.pid}/ns/ipc") != os.readlink("/proc/self/ns/ipc"), "no IPC namespace of its own")
    segments = [line.split()[4] for line in open(f"/proc/{pg.pid}/maps") if "/SYSV" in line]
    check(segments, "postgres attached no System V segment")
    ids = namespace_segments(pg.pid)
    log(f"segments in the server's namespace: {ids}")
    transaction_across_restore(env, pg, segments, check_segments=lambda pid: check_eq(
        namespace_segments(pid), ids, "the segments (id, key, size) of the restored namespace"))


def namespace_segments(pid):
    out = subprocess.run(["nsenter", "-t", str(pid), "--ipc", "cat", "/proc/sysvipc/shm"], capture_output=True,
                         text=True, check=True).stdout.splitlines()[1:]
    return sorted(tuple(line.split()[:4]) for line in out)


def transaction_across_restore(env, pg, segments, check_segments=None):
    check(segments, "postgres attached no System V segment")
    pg.sql("create table t(i int); insert into t values (1), (2), (3)")

    client = subprocess.Popen(pg.psql(tcp=True), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    client.stdin.write("begin; insert into t values (100); select 'in', count(*) from t;\n")
    client.stdin.flush()
    for want in ("BEGIN", "INSERT 0 1", "in|4"):
        check_eq(client.stdout.readline().strip(), want, "the client's answer before the dump")

    before = snapshot(pg.pid)
    log(f"postgres tree: {sorted(before)}")
    images = env.path("images")
    env.dump(pg.pid, images, "--tcp-established")
    env.wait_dumped(before)
    _, rpid = env.restore(images, "--tcp-established")
    check_eq(rpid, pg.pid, "restored postmaster pid")
    if check_segments:
        check(os.readlink(f"/proc/{rpid}/ns/ipc") != os.readlink("/proc/self/ns/ipc"),
              "the restored server shares cryo's IPC namespace")
        check_segments(rpid)

    check_eq(pg.sql("insert into t values (5); select count(*) from t").stdout.split(), ["INSERT", "0", "1", "4"],
             "a new client through the unix socket")
    client.stdin.write("insert into t values (101); commit; select 'done', count(*) from t;\n")
    client.stdin.close()
    out = client.stdout.read().split()
    check_eq(out, ["INSERT", "0", "1", "COMMIT", "done|6"], "the transaction begun before the dump")
    check_eq(client.wait(timeout=30), 0, "exit code of psql")
    check_eq(pg.sql("select sum(i) from t").stdout.strip(), "212", "sum of the rows")
    status = pg.stop()
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          f"the restored postmaster did not shut down cleanly ({status})")
    check(segments[0] not in open("/proc/sysvipc/shm").read().split(),
          f"System V segment {segments[0]} is left after the shutdown")
    shutil.rmtree(pg.dir, ignore_errors=True)


if __name__ == "__main__":
    run({"transaction_across_restore": case_transaction_across_restore, "ipc_namespace": case_ipc_namespace})
