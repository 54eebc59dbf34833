"""cryo as CRIU: the `criu swrk FD` RPC door that runc and Podman (go-criu) drive.

- door: a client of our own (protobuf's Python runtime, on a schema compiled here from
  runtime/criu_rpc/criu_rpc.proto) over a SOCK_SEQPACKET socketpair asks VERSION (3.16 at
  least, as Podman wants), CHECK and FEATURE_CHECK (mem_track as `cryo check` says, lazy_pages
  true), SINGLE_PRE_DUMP and a PRE_DUMP to a page server (refused), a PRE_DUMP asking for lazy
  pages and a DUMP carrying a field cryo does not know: each refusal names the field, and the
  process asked about runs on. Then a PRE_DUMP and a DUMP with parent_img (-R) that keeps its
  unchanged pages in the pre-dump.
  `criu --version` prints CRIU's version line.
- notify: the client dumps a process over the door with notify_scripts and sees the stages
  (pre-dump, post-dump) as NOTIFY messages it must answer, then restores it with its stdin
  handed over by inherit_fd: setup-namespaces and post-restore carry the restored pid, the
  answer's pid is the process's, which goes on counting from where it was, reading the pipe
  it was handed; a NOTIFY answered with failure fails the restore, which leaves nothing.
- runc: Debian's runc, with cryo as its CRIU (--criu), checkpoints a busybox container
  (default `runc spec`, plus a read-only bind of a host file) and restores it detached: the
  counter in the container's shell goes on from where it was, `runc state` says running,
  `runc exec` works in it, `runc kill` and `runc delete` clean up.
- runc_leave_running: `runc checkpoint --leave-running` keeps the container running; killed
  and deleted, it is restored from that image and counts on from the checkpoint.
- runc_terminal: a terminal container: runc's orphan_pts_master; the new console's master
  reaches runc's console socket and carries the counts on.
- runc_pre_dump: `runc checkpoint --pre-dump`, then `checkpoint --parent-path ../pre`, then
  restore: the counter goes on, the final image holds only what changed.
- runc_lazy: `runc checkpoint --lazy-pages --page-server A:P --status-fd FD` serves the frozen
  container's memory; `cryo lazy-pages --page-server` and `runc restore --lazy-pages` bring it
  back as another container, which counts on; the checkpoint ends once every page is over."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

try:
    import google.protobuf  # noqa: F401
except ImportError:  # the system's python3 has Debian's python3-protobuf (make test-deps)
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != "/usr/bin/python3":
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

from cryo_oci import CRYO, check, main, reap

RUNC = shutil.which("runc") or "/usr/sbin/runc"
HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, os.pardir, os.pardir, "runtime", "criu_rpc", "criu_rpc.proto")


def criu_entry():
    """The `criu` the build makes beside cryo (a symlink to it)."""
    path = os.path.join(os.path.dirname(os.path.abspath(CRYO)), "criu-path", "criu")
    if not os.path.exists(path):
        raise AssertionError("no criu entry at %s (built with cryo)" % path)
    return path


def load_schema(env):
    out = os.path.join(env.tmp, "pb")
    os.makedirs(out)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(PROTO))))
    subprocess.run(["protoc", "--python_out=" + out, "-I", root, os.path.abspath(PROTO)], check=True, timeout=60)
    sys.path.insert(0, os.path.join(out, "runtime", "criu_rpc"))
    import criu_rpc_pb2
    return criu_rpc_pb2


class Door:
    """One `criu swrk 3`: our end of the socketpair and the process at the other."""

    def __init__(self, env, pass_fds=(), stdin=subprocess.DEVNULL):
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = open(os.path.join(env.tmp, "swrk.err"), "ab")
        fds = {3: theirs.fileno()}
        assert all(fd > 9 for fd in pass_fds)

        def place():  # theirs at 3, the others (all above 9) where they are
            if fds[3] != 3:
                os.dup2(fds[3], 3)
            os.set_inheritable(3, True)
        self.proc = subprocess.Popen([criu_entry(), "swrk", "3"], pass_fds=(3,) + tuple(pass_fds),
                                     preexec_fn=place, stdin=stdin, stdout=self.log, stderr=self.log)
        theirs.close()

    def send(self, req):
        self.ours.send(req.SerializeToString())

    def receive(self, pb, fds=False):
        data, ancillary, _, _ = self.ours.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
        resp = pb.criu_resp()
        resp.ParseFromString(data)
        if fds:
            got = []
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got += list(memoryview(payload).cast("i"))
            return resp, got
        return resp

    def ask(self, pb, req):
        self.send(req)
        return self.receive(pb)

    def close(self):
        self.ours.close()
        code = self.proc.wait(timeout=120)
        self.log.close()
        return code


def request(pb, kind, **opts):
    req = pb.criu_req()
    req.type = kind
    for name, value in opts.items():
        setattr(req.opts, name, value)
    return req


# Counts in its memory and writes each count to a file (a restore that started it anew
# would count from 1 again); what it reads on stdin goes to FILE.line. One process
# that never forks: no child's pid for another process to take while it is dumped.
COUNTER = r"""
import os, sys, time
path = sys.argv[1]
os.set_blocking(0, False)
i = 0
while True:
    i += 1
    with open(path + ".tmp", "w") as f:
        f.write(str(i))
    os.rename(path + ".tmp", path)
    try:
        data = os.read(0, 100)
        if data:
            with open(path + ".line", "w") as f:
                f.write(data.decode())
    except BlockingIOError:
        pass
    time.sleep(0.05)
"""


def start_counter(env, name, stdin=subprocess.DEVNULL):
    path = os.path.join(env.tmp, name)
    proc = subprocess.Popen(["/usr/bin/python3", "-c", COUNTER, path], stdin=stdin, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: count(path) >= 3, "the counter to start")
    return proc, path


def count(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else 0
    except OSError:
        return 0


def wait_for(condition, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_door(env):
    pb = load_schema(env)
    out = subprocess.run([criu_entry(), "--version"], capture_output=True, text=True, timeout=30)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    check(out.returncode == 0 and first.startswith("Version: ") and
          tuple(int(x) for x in first[9:].split(".")[:2]) >= (3, 16), "criu --version: %r" % out.stdout)
    out = subprocess.run([CRYO, "criu", "--version"], capture_output=True, text=True, timeout=30)
    check(out.stdout.startswith("Version: "), "cryo criu --version: %r" % out.stdout)

    door = Door(env)
    resp = door.ask(pb, pb.criu_req(type=pb.VERSION))
    check(resp.type == pb.VERSION and resp.success and
          resp.version.major_number * 10000 + resp.version.minor_number * 100 >= 31600,
          "VERSION: %d.%d (Podman wants 3.16)" % (resp.version.major_number, resp.version.minor_number))
    resp = door.ask(pb, pb.criu_req(type=pb.CHECK))
    check(resp.type == pb.CHECK and resp.success, "CHECK succeeds: %s" % resp.cr_errmsg)
    req = pb.criu_req(type=pb.FEATURE_CHECK)
    req.features.mem_track = True
    req.features.lazy_pages = True
    resp = door.ask(pb, req)
    tracking = subprocess.run([CRYO, "check", "--feature", "mem_dirty_track"], capture_output=True,
                              timeout=30).returncode == 0
    check(resp.success and resp.features.HasField("mem_track") and resp.features.mem_track == tracking and
          resp.features.HasField("lazy_pages") and resp.features.lazy_pages,
          "FEATURE_CHECK: memory tracking as cryo check says (%s), lazy pages (%s)"
          % (tracking, str(resp.features).replace("\n", " ")))

    proc, path = start_counter(env, "count")
    images = os.path.join(env.tmp, "images")
    os.makedirs(images)
    images_fd = os.open(images, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # PRE_DUMP, then a DUMP naming it (parent_img, track_mem, as runc asks): the
        # process runs on after both (-R), the dump keeps most pages in the pre-dump.
        pre = os.path.join(env.tmp, "pre")
        os.makedirs(pre)
        pre_fd = os.open(pre, os.O_RDONLY | os.O_DIRECTORY)
        try:
            resp = door.ask(pb, request(pb, pb.PRE_DUMP, images_dir_fd=pre_fd, pid=proc.pid, track_mem=True))
        finally:
            os.close(pre_fd)
        check(resp.success and resp.type == pb.PRE_DUMP, "PRE_DUMP: %s" % resp.cr_errmsg)
        before = count(path)
        wait_for(lambda: count(path) > before + 2, "the counter to go on after PRE_DUMP")
        after = os.path.join(env.tmp, "after")
        os.makedirs(after)
        after_fd = os.open(after, os.O_RDONLY | os.O_DIRECTORY)
        try:
            resp = door.ask(pb, request(pb, pb.DUMP, images_dir_fd=after_fd, pid=proc.pid, parent_img="../pre",
                                        track_mem=True, leave_running=True))
        finally:
            os.close(after_fd)
        check(resp.success, "DUMP with parent_img: %s" % resp.cr_errmsg)
        with open(os.path.join(pre, "stats-dump.json")) as f:
            full = json.load(f)["pages_bytes"]
        with open(os.path.join(after, "stats-dump.json")) as f:
            delta = json.load(f)["pages_bytes"]
        # A Python loop dirties a varying share of its heap between the two (13-26% seen,
        # more when the machine is loaded and the dump's running copy takes longer); a
        # dump that ignored its parent would write all of it again.
        check(delta * 2 < full, "the dump keeps its unchanged pages in the pre-dump (%d bytes against %d)"
              % (delta, full))
        before = count(path)
        wait_for(lambda: count(path) > before + 2, "the counter to go on after the dump (-R)")

        resp = door.ask(pb, request(pb, pb.SINGLE_PRE_DUMP, images_dir_fd=images_fd, pid=proc.pid))
        check(not resp.success and "single-pre-dump" in resp.cr_errmsg, "SINGLE_PRE_DUMP refused: %s" % resp.cr_errmsg)
        req = request(pb, pb.PRE_DUMP, images_dir_fd=images_fd, pid=proc.pid)
        req.opts.ps.address, req.opts.ps.port = "127.0.0.1", 1
        resp = door.ask(pb, req)
        check(not resp.success and "--page-server" in resp.cr_errmsg, "PRE_DUMP to a page server refused: %s"
              % resp.cr_errmsg)
        resp = door.ask(pb, request(pb, pb.PRE_DUMP, images_dir_fd=images_fd, pid=proc.pid, lazy_pages=True,
                                    log_file="dump.log"))
        check(not resp.success and "lazy_pages" in resp.cr_errmsg and resp.cr_errno != 0,
              "lazy_pages of a pre-dump refused by name: %s" % resp.cr_errmsg)
        log = open(os.path.join(images, "dump.log")).read() if os.path.exists(os.path.join(images, "dump.log")) else ""
        check("Error" in log and "lazy_pages" in log, "the refusal is in the log, where runc quotes it")
        # A field of a CRIU newer than the schema cryo knows (number 200, varint 1).
        req = request(pb, pb.DUMP, images_dir_fd=images_fd, pid=proc.pid)
        opts = req.opts.SerializeToString() + bytes([0xC0, 0x0C, 0x01])
        inner = pb.criu_req(type=pb.DUMP).SerializeToString()
        raw = inner + bytes([0x12]) + encode_varint(len(opts)) + opts
        door.ours.send(raw)
        resp = door.receive(pb)
        check(not resp.success and "field 200" in resp.cr_errmsg, "an unknown field refused: %s" % resp.cr_errmsg)
        resp = door.ask(pb, request(pb, pb.DUMP, images_dir_fd=images_fd, pid=proc.pid, link_remap=True))
        check(not resp.success and "criu_opts.link_remap" in resp.cr_errmsg, "link_remap refused: %s" % resp.cr_errmsg)
        resp = door.ask(pb, request(pb, pb.DUMP, images_dir_fd=images_fd))
        check(not resp.success and "criu_opts.pid" in resp.cr_errmsg, "a dump of the caller refused: %s" % resp.cr_errmsg)
        check(alive(proc.pid) and not os.path.exists(os.path.join(images, "inventory.img")),
              "the refused dumps left the process running and wrote no image")
        before = count(path)
        wait_for(lambda: count(path) > before + 2, "the counter to go on after the refusals")

    finally:
        os.close(images_fd)
        code = door.close()
        proc.kill()
        proc.wait()
    check(code != 0, "swrk exits non-zero after a failed last request (%d)" % code)


def encode_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def serve_notifications(door, pb, answer=lambda script: True):
    """Answers NOTIFY messages until the final answer; returns (final, [(script, pid)])."""
    seen = []
    while True:
        resp = door.receive(pb)
        if resp.type != pb.NOTIFY:
            return resp, seen
        seen.append((resp.notify.script, resp.notify.pid))
        door.send(pb.criu_req(type=pb.NOTIFY, notify_success=answer(resp.notify.script)))


def test_notify(env):
    pb = load_schema(env)
    images = os.path.join(env.tmp, "images")
    os.makedirs(images)
    # The counter reads a pipe too: its read end comes back on a pipe the restore is handed.
    read_end, write_end = os.pipe()
    proc, path = start_counter(env, "count", stdin=read_end)
    os.close(read_end)
    key = "pipe:[%d]" % os.fstat(write_end).st_ino
    images_fd = os.open(images, os.O_RDONLY | os.O_DIRECTORY)
    restored = None
    try:
        door = Door(env)
        door.send(request(pb, pb.DUMP, images_dir_fd=images_fd, pid=proc.pid, notify_scripts=True, shell_job=False,
                          log_file="dump.log", log_level=4))
        resp, seen = serve_notifications(door, pb)
        check(resp.type == pb.DUMP and resp.success, "DUMP over the door: %s" % resp.cr_errmsg)
        scripts = [s for s, _ in seen]
        check(scripts[:1] == ["pre-dump"] and "post-dump" in scripts, "dump notifications: %s" % scripts)
        check(door.close() == 0, "swrk exits 0 after a successful dump")
        proc.wait(timeout=10)
        os.close(write_end)
        at_dump = count(path)

        # A failed NOTIFY answer fails the restore, which leaves nothing running.
        pipe_read, new_write = os.pipe()
        new_read = os.dup2(pipe_read, 50)  # above the door's own descriptors
        os.close(pipe_read)
        door = Door(env, pass_fds=(new_read,))
        req = request(pb, pb.RESTORE, images_dir_fd=images_fd, notify_scripts=True, log_file="restore-refused.log")
        req.opts.inherit_fd.add(key=key, fd=new_read)
        door.send(req)
        resp, seen = serve_notifications(door, pb, answer=lambda script: script != "setup-namespaces")
        check(not resp.success and "setup-namespaces" in resp.cr_errmsg,
              "a NOTIFY answered with failure fails the restore: %s" % resp.cr_errmsg)
        door.close()
        reap()
        time.sleep(0.3)
        check(count(path) == at_dump, "nothing of the failed restore runs")

        door = Door(env, pass_fds=(new_read,))
        req = request(pb, pb.RESTORE, images_dir_fd=images_fd, notify_scripts=True, log_file="restore.log",
                      log_level=4, rst_sibling=True)
        req.opts.inherit_fd.add(key=key, fd=new_read)
        door.send(req)
        resp, seen = serve_notifications(door, pb)
        check(resp.type == pb.RESTORE and resp.success and resp.restore.pid == proc.pid,
              "RESTORE answers the restored pid %d: %s" % (resp.restore.pid, resp.cr_errmsg))
        restored = resp.restore.pid if resp.success else None
        pids = dict(seen)
        check(pids.get("setup-namespaces") == proc.pid and pids.get("post-restore") == proc.pid,
              "restore notifications carry the pid: %s" % seen)
        check(door.close() == 0, "swrk exits 0 after the restore")
        os.close(new_read)
        first = wait_for(lambda: count(path) != at_dump and count(path), "the restored counter to go on")
        check(first > at_dump, "it counts on from %d (next: %d), not from 1" % (at_dump, first))
        os.write(new_write, b"handed-over\n")
        line = wait_for(lambda: open(path + ".line").read().strip() if os.path.exists(path + ".line") else "",
                        "the line written to the pipe handed over")
        check(line == "handed-over", "it reads the pipe handed over by inherit_fd: %r" % line)
        os.close(new_write)
    finally:
        os.close(images_fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if restored:
            try:
                os.kill(restored, 9)
            except ProcessLookupError:
                pass
        reap()


class Runc:
    """Debian's runc with cryo as its CRIU, under a state root of the test's own."""

    def __init__(self, env):
        self.env = env
        self.root = os.path.join(env.tmp, "runc-state")
        self.criu = criu_entry()
        self.ids = []
        self.cgroups = []

    def call(self, *args, timeout=120, container_stdio=False):
        """runc ARGS; container_stdio: the container gets runc's stdio, /dev/null (not a
        file of ours, which a temporary file would be: deleted while open)."""
        cmd = [RUNC, "--root", self.root, "--criu", self.criu] + list(args)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            null = subprocess.DEVNULL if container_stdio else None
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=null or out, stderr=null or err, text=True,
                               timeout=timeout)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        reap()
        if p.returncode != 0:
            raise AssertionError("%s failed (%d): %s %s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr[-2000:]))
        return p.stdout

    def bundle(self, cid, terminal=False, prefix=""):
        bundle = os.path.join(self.env.tmp, "bundle-" + cid)
        os.makedirs(bundle)
        subprocess.run([RUNC, "spec", "--bundle", bundle], check=True, timeout=30)
        path = os.path.join(bundle, "config.json")
        import json
        with open(path) as f:
            config = json.load(f)
        config["root"] = {"path": self.env.rootfs, "readonly": False}
        config["process"]["terminal"] = terminal
        config["process"]["args"] = ["/bin/sh", "-c", prefix + 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count.tmp; '
                                     'mv /tmp/count.tmp /tmp/count; %ssleep 0.05; done'
                                     % ("echo count=$i; " if terminal else "")]
        cgroup = "/cryo-test-criu-rpc-%d-%s" % (os.getpid(), cid)
        config["linux"]["cgroupsPath"] = cgroup
        self.cgroups.append(cgroup)
        hosts = os.path.join(self.env.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost criu-rpc-test\n")
        config["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": hosts,
                                 "options": ["rbind", "ro"]})
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        return bundle

    def state(self, cid):
        import json
        return json.loads(self.call("state", cid))

    def cleanup(self):
        for cid in self.ids:
            subprocess.run([RUNC, "--root", self.root, "delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        reap()
        for base in os.listdir("/sys/fs/cgroup"):
            for cgroup in self.cgroups:
                path = os.path.join("/sys/fs/cgroup", base) + cgroup
                if os.path.isdir(path):
                    for sub, _, _ in sorted(os.walk(path, topdown=False)):
                        try:
                            os.rmdir(sub)
                        except OSError as e:
                            check(False, "cgroup %s left behind: %s" % (sub, e))


def container_count(env):
    return count(os.path.join(env.rootfs, "tmp", "count"))


def checkpoint_restore(env, leave_running):
    runc = Runc(env)
    cid = "criu-rpc-" + ("lr" if leave_running else "cr")
    try:
        bundle = runc.bundle(cid)
        runc.ids.append(cid)
        runc.call("run", "-d", "--bundle", bundle, cid, container_stdio=True)
        pid = runc.state(cid)["pid"]
        wait_for(lambda: container_count(env) >= 10, "the container's counter")
        images = os.path.join(env.tmp, "checkpoint")
        work = os.path.join(env.tmp, "work")
        before = container_count(env)
        runc.call("checkpoint", "--image-path", images, "--work-path", work,
                  *(["--leave-running"] if leave_running else []), cid)
        check(os.path.exists(os.path.join(images, "inventory.img")), "runc checkpoint wrote cryo's image")
        check(os.path.exists(os.path.join(work, "dump.log")), "the log went to runc's work path")
        if leave_running:
            check(runc.state(cid)["status"] == "running", "--leave-running: the container runs on")
            now = container_count(env)
            wait_for(lambda: container_count(env) > now + 3, "the container to count on after the checkpoint")
            runc.call("kill", cid, "KILL")
            wait_for(lambda: not alive(pid), "the container to die")
            reap()
            runc.call("delete", cid)
        else:
            check(not alive(pid), "the checkpointed container is gone")
            out = subprocess.run([RUNC, "--root", runc.root, "state", cid], capture_output=True, text=True,
                                 timeout=30)
            check(out.returncode != 0, "runc checkpoint deleted the container: %s" % out.stdout.strip())
        at_dump = container_count(env)
        check(at_dump >= before, "counted %d at the checkpoint" % at_dump)
        runc.call("restore", "-d", "--image-path", images, "--work-path", work, "--bundle", bundle, cid,
                  container_stdio=True)
        state = runc.state(cid)
        check(state["status"] == "running", "runc state after the restore: %s" % state["status"])
        restored = state["pid"]  # a new pid on the host: its pid namespace is new, where it is 1 again
        # It goes on from the image's count: the last one written, or (--leave-running, which
        # counted on) one above what was read before the checkpoint. From scratch it would be 1.
        lowest = before if leave_running else at_dump
        first = wait_for(lambda: container_count(env) != at_dump and container_count(env),
                         "the restored counter to go on")
        check(first > lowest, "the counter goes on from above %d (next: %d), not from 1" % (lowest, first))
        out = runc.call("exec", cid, "/bin/sh", "-c", "echo exec-in:$(cat /etc/hosts | head -n 1); cat /proc/1/cmdline")
        check("exec-in:127.0.0.1 localhost criu-rpc-test" in out and "/bin/sh" in out,
              "runc exec in the restored container: %r" % out)
        runc.call("kill", cid, "KILL")
        wait_for(lambda: not alive(restored), "the restored container to die on runc kill")
        reap()
        runc.call("delete", cid)
        runc.ids.remove(cid)
        out = subprocess.run([RUNC, "--root", runc.root, "list", "-q"], capture_output=True, text=True, timeout=30)
        check(out.stdout.strip() == "", "runc delete left nothing: %r" % out.stdout)
    finally:
        runc.cleanup()


def stats_pages(image):
    with open(os.path.join(image, "stats-dump.json")) as f:
        return json.load(f)["pages_bytes"]


def test_runc_pre_dump(env):
    """runc checkpoint --pre-dump (runc asks FEATURE_CHECK for mem_track, then PRE_DUMP), then
    checkpoint --parent-path ../pre (a DUMP with parent_img and track_mem): the container runs
    on after the pre-dump, the final image holds what changed since (far less than the
    pre-dump's whole copy of the 2 MB the shell holds), and runc restore counts on."""
    runc = Runc(env)
    cid = "criu-rpc-pre"
    try:
        bundle = runc.bundle(cid, prefix="big=$(head -c 2000000 /dev/zero | tr '\\0' x); ")
        runc.ids.append(cid)
        runc.call("run", "-d", "--bundle", bundle, cid, container_stdio=True)
        pid = runc.state(cid)["pid"]
        wait_for(lambda: container_count(env) >= 10, "the container's counter")
        pre, final = os.path.join(env.tmp, "ck", "pre"), os.path.join(env.tmp, "ck", "final")
        runc.call("checkpoint", "--pre-dump", "--image-path", pre, cid)
        check(runc.state(cid)["status"] == "running" and alive(pid), "--pre-dump: the container runs on")
        now = container_count(env)
        wait_for(lambda: container_count(env) > now + 3, "the container to count on after the pre-dump")
        runc.call("checkpoint", "--image-path", final, "--parent-path", "../pre", cid)
        check(not alive(pid), "the checkpointed container is gone")
        at_dump = container_count(env)
        full, delta = stats_pages(pre), stats_pages(final)
        check(full >= 2000000 and delta * 4 < full,
              "the final image holds what changed since the pre-dump: %d bytes against %d" % (delta, full))
        check(os.readlink(os.path.join(final, "parent")) == "../pre", "the final image names its parent")
        runc.call("restore", "-d", "--image-path", final, "--bundle", bundle, cid, container_stdio=True)
        state = runc.state(cid)
        check(state["status"] == "running", "runc state after the restore: %s" % state["status"])
        first = wait_for(lambda: container_count(env) != at_dump and container_count(env),
                         "the restored counter to go on")
        check(first > at_dump, "the counter goes on from above %d (next: %d), not from 1" % (at_dump, first))
        runc.call("kill", cid, "KILL")
        wait_for(lambda: not alive(state["pid"]), "the restored container to die on runc kill")
        reap()
        runc.call("delete", cid)
        runc.ids.remove(cid)
    finally:
        runc.cleanup()


def test_runc_terminal(env):
    """A terminal container (its console's master at a console socket, as with conmon or the
    shim): runc checkpoints it through cryo (orphan_pts_master) and restores it with a new
    console socket, which gets the new pty's master through the orphan-pts-master
    notification; the counts go on, on the new console."""
    from checkpoint_test import Console, last_count, read_counts, wait_counts
    runc = Runc(env)
    cid = "criu-rpc-tty"
    try:
        bundle = runc.bundle(cid, terminal=True)
        runc.ids.append(cid)
        console = Console(os.path.join(env.tmp, "console.sock"))
        runc.call("run", "-d", "--console-socket", console.path, "--bundle", bundle, cid, container_stdio=True)
        master = console.master()
        out = wait_counts(master, 4, "counts on the console")
        images = os.path.join(env.tmp, "checkpoint")
        runc.call("checkpoint", "--image-path", images, cid)
        last = last_count(read_counts(master, out))
        os.close(master)
        console2 = Console(os.path.join(env.tmp, "console2.sock"))
        runc.call("restore", "-d", "--console-socket", console2.path, "--image-path", images, "--bundle", bundle, cid,
                  container_stdio=True)
        master2 = console2.master()
        text = wait_counts(master2, last + 3, "counts on the new console")
        first = last_count(text.split(b"\n", 1)[0] + b"\n")
        check(last < first <= last + 2, "the new console carries the counts from %d on (first %d)" % (last, first))
        pid = runc.state(cid)["pid"]
        check(os.readlink("/proc/%d/fd/0" % pid).startswith("/dev/pts/"), "the restored init's stdio is a terminal")
        runc.call("kill", cid, "KILL")
        wait_for(lambda: not alive(pid), "the restored container to die on runc kill")
        reap()
        runc.call("delete", cid)
        runc.ids.remove(cid)
        os.close(master2)
    finally:
        runc.cleanup()


def test_runc(env):
    checkpoint_restore(env, leave_running=False)


def test_runc_leave_running(env):
    checkpoint_restore(env, leave_running=True)


def test_runc_lazy(env):
    """Lazy migration through runc, cryo as its CRIU: `runc checkpoint --lazy-pages
    --page-server 127.0.0.1:PORT --status-fd FD` asks FEATURE_CHECK for lazy_pages, then a DUMP
    with lazy_pages and ps, which serves the frozen container's memory; FD gets its zero byte
    once it does (runc writes it on the status-ready notification). The image goes to another
    directory, `cryo lazy-pages --page-server` there fetches from the checkpoint, and `runc
    restore --lazy-pages` brings the container back as another one: it counts on from the
    checkpoint while its memory comes over; the checkpoint ends (0) once every page is in,
    and runc deletes the first container."""
    runc = Runc(env)
    cid, copy = "criu-rpc-lazy", "criu-rpc-lazy-copy"
    daemon = checkpoint = None
    try:
        bundle = runc.bundle(cid)
        runc.ids.append(cid)
        runc.call("run", "-d", "--bundle", bundle, cid, container_stdio=True)
        pid = runc.state(cid)["pid"]
        wait_for(lambda: container_count(env) >= 10, "the container's counter")
        images, work = os.path.join(env.tmp, "checkpoint"), os.path.join(env.tmp, "work")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        status_read, status_write = os.pipe()
        checkpoint_err, daemon_err = os.path.join(env.tmp, "checkpoint.err"), os.path.join(env.tmp, "lazy-pages.err")

        def text(path):
            return open(path).read()[-2000:] if os.path.exists(path) else ""
        with open(checkpoint_err, "w") as err:
            checkpoint = subprocess.Popen([RUNC, "--root", runc.root, "--criu", runc.criu, "checkpoint", "--image-path",
                                           images, "--work-path", work, "--lazy-pages", "--page-server",
                                           "127.0.0.1:%d" % port, "--status-fd", str(status_write), cid],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                          pass_fds=(status_write,))
        os.close(status_write)
        got = os.read(status_read, 1)
        os.close(status_read)
        if got != b"\0":
            checkpoint.wait(timeout=60)
            check(False, "runc checkpoint --lazy-pages never said it serves (%r): %s %s"
                  % (got, text(checkpoint_err), text(os.path.join(work, "dump.log"))))
        at_dump = container_count(env)
        check(checkpoint.poll() is None, "the checkpoint runs on, serving the container's memory")
        check(alive(pid), "the checkpointed container is kept (frozen) while its memory is served")
        dest = os.path.join(env.tmp, "dest")
        shutil.copytree(images, dest)
        with open(daemon_err, "w") as err:
            daemon = subprocess.Popen([CRYO, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port",
                                       str(port), "-D", dest, "-v4", "-o", os.path.join(env.tmp, "lazy-pages.log")],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: os.path.exists(os.path.join(dest, "lazy-pages.socket")) or daemon.poll() is not None,
                 "cryo lazy-pages to listen")
        check(daemon.poll() is None, "cryo lazy-pages runs (stderr: %s)" % text(daemon_err))
        copy_bundle = runc.bundle(copy)
        runc.ids.append(copy)
        runc.call("restore", "-d", "--lazy-pages", "--image-path", dest, "--work-path", dest, "--bundle", copy_bundle,
                  copy, container_stdio=True)
        state = runc.state(copy)
        check(state["status"] == "running", "runc state after the lazy restore: %s" % state["status"])
        first = wait_for(lambda: container_count(env) != at_dump and container_count(env),
                         "the restored counter to go on")
        check(first > at_dump, "the copy counts on from above %d (next: %d), not from 1" % (at_dump, first))
        check(daemon.wait(timeout=120) == 0, "cryo lazy-pages exits 0 (stderr: %s)" % text(daemon_err))
        check(checkpoint.wait(timeout=120) == 0, "runc checkpoint --lazy-pages exits 0 (stderr: %s)" % text(checkpoint_err))
        reap()
        check(not alive(pid), "the checkpointed container is gone once its memory is over")
        out = subprocess.run([RUNC, "--root", runc.root, "state", cid], capture_output=True, text=True, timeout=30)
        check(out.returncode != 0, "runc checkpoint deleted the first container: %s" % out.stdout.strip())
        runc.ids.remove(cid)
        now = container_count(env)
        wait_for(lambda: container_count(env) > now + 3, "the copy to count on once all its memory is in")
        restored = state["pid"]
        runc.call("kill", copy, "KILL")
        wait_for(lambda: not alive(restored), "the restored container to die on runc kill")
        reap()
        runc.call("delete", copy)
        runc.ids.remove(copy)
    finally:
        for p in (daemon, checkpoint):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        runc.cleanup()


if __name__ == "__main__":
    main({"door": test_door, "notify": test_notify, "runc": test_runc, "runc_leave_running": test_runc_leave_running,
          "runc_terminal": test_runc_terminal, "runc_pre_dump": test_runc_pre_dump,
          "runc_lazy": test_runc_lazy})
