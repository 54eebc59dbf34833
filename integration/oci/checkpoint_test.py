"""runc's checkpoint and restore verbs: a busybox container counting (its count in a volume,
/data, a bind of a host directory; /etc/hosts a read-only bind of a host file, as runc's
callers bind it) is checkpointed and restored by `cryo checkpoint` / `cryo restore ID`, and
must count on from where it was, be `running`, and answer exec, ps, pause, resume, kill and
delete. Its stdio: /dev/null, a pipe the test holds (handed to the restore as its fd 1, as a
shim or conmon does: runc's descriptors.json), or a console whose master comes to the test's
console socket. Also: refusals in created and stopped states (runc's words, checked against
runc itself), refused flags, SIGKILL of checkpoint at every step, failed restores."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time

from cryo_oci import CRYO, NamespaceHolder, check, main, reap

COUNTER = r'''
i=0
while :; do
  i=$((i+1))
  echo $i > /data/count.tmp && mv /data/count.tmp /data/count
  echo count=$i
  sleep 0.05
done
'''


def counter_bundle(env, cid, terminal=False):
    """A bundle whose process counts; returns (bundle, the host dir bound at /data)."""
    data = os.path.join(env.tmp, "data-" + cid)
    os.makedirs(data)
    hosts = os.path.join(env.tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost ckpt-test-host\n")

    def edit(config):
        config["mounts"] += [{"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]},
                             {"destination": "/etc/hosts", "type": "bind", "source": hosts, "options": ["rbind", "ro"]}]
    return env.bundle(cid, ["/bin/sh", "-c", COUNTER], edit=edit, terminal=terminal), data


def count(data):
    try:
        with open(os.path.join(data, "count")) as f:
            text = f.read().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def wait_for(predicate, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        reap()
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def runtime(env, args, **popen):
    """The runtime with the given stdio (/dev/null by default); returns the Popen, waited for."""
    for name in ("stdin", "stdout", "stderr"):
        popen.setdefault(name, subprocess.DEVNULL)
    p = subprocess.Popen([CRYO, "--root", env.root] + args, **popen)
    p.wait(60)
    reap()
    return p


def start(env, bundle, cid):
    """run -d with stdio on /dev/null (what descriptors.json then says)."""
    check(runtime(env, ["run", "-d", "--bundle", bundle, cid]).returncode == 0, f"run -d {cid}")


def cgroup_dirs(env, cid):
    name = "cryo-test-%s-%s" % (env.name, cid)
    return [os.path.join("/sys/fs/cgroup", base, name) for base in os.listdir("/sys/fs/cgroup")
            if os.path.isdir(os.path.join("/sys/fs/cgroup", base, name))]


def gone(env, cid):
    """Nothing of container cid is left: state, state directory, cgroups."""
    p = env.run(["state", cid], check=False)
    return (p.returncode != 0 and "does not exist" in p.stderr and not os.path.exists(os.path.join(env.root, cid))
            and not cgroup_dirs(env, cid))


def checkpoint(env, cid, image, *flags, expect_ok=True):
    p = env.run(["checkpoint", "--image-path", image, *flags, cid], check=False, timeout=120)
    if expect_ok:
        check(p.returncode == 0, f"checkpoint {cid} {' '.join(flags)}: {p.stderr.strip()[-600:]}")
    return p


def restore(env, bundle, cid, image, *flags):
    p = env.run(["restore", "-d", "--bundle", bundle, "--image-path", image, *flags, cid], check=False, timeout=120)
    check(p.returncode == 0, f"restore {cid}: {p.stderr.strip()[-600:]}")


def counts_on(data, last, what):
    """The counter moves on from `last` (the value the checkpoint saw, at least 10), not
    from 0: a counter started again would show a value below it first. The first value
    seen may be a few ticks on (a busy machine polls late), but not many."""
    first = wait_for(lambda: count(data) if count(data) != last else 0, what + ": the counter to move")
    check(last < first <= last + 8, f"{what}: the counter goes on from {last} (next {first})")
    wait_for(lambda: count(data) > first + 3, what + ": the counter to keep counting")


def stopped_counter(data):
    last = count(data)
    time.sleep(0.4)
    return count(data) == last


def test_basic(env):
    bundle, data = counter_bundle(env, "c1")
    start(env, bundle, "c1")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "c1", image)
    last = count(data)
    check(stopped_counter(data), "the container stops counting once checkpointed")
    check(gone(env, "c1"), "after checkpoint the container is gone (state, state dir, cgroups), as with runc")
    with open(os.path.join(image, "descriptors.json")) as f:
        check(json.load(f) == ["/dev/null"] * 3, "descriptors.json names init's stdio (/dev/null)")
    check(os.path.exists(os.path.join(image, "dump.log")), "dump.log is in the work path (the image path)")
    check(os.path.exists(os.path.join(image, "stats-dump.json")), "stats-dump.json is written")
    with open(os.path.join(image, "stats-dump"), "rb") as f:  # CRIU's: service magic, stats magic
        check(f.read(8) == bytes.fromhex("4059105506330957"), "stats-dump is CRIU's statistics image (Podman's)")
    restore(env, bundle, "c1", image)
    counts_on(data, last, "restored")
    st = env.state("c1")
    check(st["status"] == "running" and os.path.exists("/proc/%d" % st["pid"]), "state: running, with its pid: %s" % st)
    names = [line.split()[0] for line in env.run(["list", "-q"]).stdout.split()]
    check("c1" in names, "list shows the restored container")
    p = env.run(["exec", "c1", "cat", "/etc/hosts"], check=False)
    check(p.returncode == 0 and "ckpt-test-host" in p.stdout, "exec in the restored container: %r" % p.stdout)
    pids = json.loads(env.run(["ps", "-f", "json", "c1"]).stdout)
    check(st["pid"] in pids, "ps lists the restored init: %s" % pids)
    env.run(["pause", "c1"])
    check(env.state("c1")["status"] == "paused", "pause: paused")
    check(stopped_counter(data), "a paused restored container does not count")
    env.run(["resume", "c1"])
    check(env.state("c1")["status"] == "running", "resume: running")
    now = count(data)
    wait_for(lambda: count(data) > now + 2, "the counter after resume")
    env.run(["kill", "c1", "KILL"])
    env.wait_status("c1", "stopped")
    env.run(["delete", "c1"])
    check(gone(env, "c1"), "kill and delete remove everything of the restored container")


def test_new_name(env):
    """A checkpoint restored under another name, with another cgroupsPath, once the first
    container and its cgroups are gone (Podman's restore -n): the container's /sys/fs/cgroup
    (binds of its cgroups, no cgroup namespace) shows the new cgroups, not the old ones."""
    bundle, data = counter_bundle(env, "nm")
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    # Podman's default on a cgroup v1 host, and runc 1.1 spec's: no cgroup namespace.
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "cgroup"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    start(env, bundle, "nm")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "nm", image)
    last = count(data)
    check(gone(env, "nm"), "checkpointed and gone, with its cgroups")
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    check(any(m["type"] == "cgroup" for m in config["mounts"]) and
          not any(n["type"] == "cgroup" for n in config["linux"]["namespaces"]),
          "the bundle mounts its cgroups without a cgroup namespace")
    config["linux"]["cgroupsPath"] = "/cryo-test-%s-nm2" % env.name
    env.ids.append("nm2")
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    restore(env, bundle, "nm2", image)
    counts_on(data, last, "restored as nm2")
    pid = env.state("nm2")["pid"]
    new_cgroup = "/sys/fs/cgroup/pids/cryo-test-%s-nm2" % env.name
    check(str(pid) in open(new_cgroup + "/cgroup.procs").read().split(), "init is in the new pids cgroup")
    p = env.run(["exec", "nm2", "stat", "-c", "%i", "/sys/fs/cgroup/pids"], check=False)
    check(p.returncode == 0 and p.stdout.strip() == str(os.stat(new_cgroup).st_ino),
          "the container's /sys/fs/cgroup/pids is its new cgroup (inode %r, want %d)" %
          (p.stdout.strip(), os.stat(new_cgroup).st_ino))
    env.run(["delete", "--force", "nm2"])
    check(gone(env, "nm2"), "deleted")


def test_leave_running(env):
    bundle, data = counter_bundle(env, "lr")
    start(env, bundle, "lr")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    work = os.path.join(env.tmp, "work")
    checkpoint(env, "lr", image, "--leave-running", "--leave-running", "--work-path", work)  # Podman repeats it
    at_checkpoint = count(data)
    check(env.state("lr")["status"] == "running", "--leave-running: still running")
    wait_for(lambda: count(data) > at_checkpoint + 3, "the counter to go on after --leave-running")
    check(os.path.exists(os.path.join(work, "dump.log")), "dump.log goes into --work-path")
    env.run(["delete", "--force", "lr"])
    check(gone(env, "lr"), "deleted")
    restore(env, bundle, "lr", image, "--work-path", work)
    check(os.path.exists(os.path.join(work, "restore.log")), "restore.log goes into --work-path")
    first = wait_for(lambda: count(data) if count(data) != 0 else 0, "the restored counter")
    wait_for(lambda: count(data) > first + 2, "the restored counter to count")
    check(env.state("lr")["status"] == "running", "restored: running")
    env.run(["delete", "--force", "lr"])
    check(gone(env, "lr"), "deleted after restore")


def test_twice(env):
    bundle, data = counter_bundle(env, "tw")
    start(env, bundle, "tw")
    wait_for(lambda: count(data) >= 10, "the counter")
    for round_ in (1, 2):
        image = os.path.join(env.tmp, "image%d" % round_)
        checkpoint(env, "tw", image)
        last = count(data)
        check(gone(env, "tw"), "round %d: checkpointed and gone" % round_)
        if round_ == 1:  # a fresh rootfs lacks the mount points create made: restore makes them, as runc does
            os.rmdir(os.path.join(env.rootfs, "data"))
            os.unlink(os.path.join(env.rootfs, "etc", "hosts"))
        # containerd spells it with one dash; strict: the engine makes the container's cgroups itself
        mode = ["--manage-cgroups-mode", "strict"] if round_ == 2 else []
        p = env.run(["restore", "-d", "-no-subreaper", *mode, "--bundle", bundle, "--image-path", image, "tw"],
                    check=False, timeout=120)
        check(p.returncode == 0, "round %d: restore: %s" % (round_, p.stderr.strip()[-600:]))
        counts_on(data, last, "round %d" % round_)
    env.run(["delete", "--force", "tw"])
    check(gone(env, "tw"), "deleted")


def read_counts(fd, text=b""):
    """What a non-blocking pipe or pty master holds now, added to text."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return text
        if not chunk:
            return text
        text += chunk


def wait_counts(fd, above, what):
    """Reads fd until a count above `above` shows; returns everything read."""
    got = [b""]

    def more():
        got[0] = read_counts(fd, got[0])
        return last_count(got[0]) > above
    wait_for(more, what)
    return got[0]


def last_count(text):
    counts = [int(w[6:]) for w in text.decode(errors="replace").split() if w.startswith("count=") and w[6:].isdigit()]
    return counts[-1] if counts else 0


def test_pipe(env):
    """stdout is a pipe the test reads (a shim's, conmon's): after restore, the pipe the
    test hands as fd 1 of `cryo restore` carries the counts."""
    bundle, data = counter_bundle(env, "pp")
    r, w = os.pipe()
    os.set_blocking(r, False)
    check(runtime(env, ["run", "-d", "--bundle", bundle, "pp"], stdout=w).returncode == 0, "run -d, stdout a pipe")
    os.close(w)
    out = wait_counts(r, 4, "counts on the pipe")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "pp", image)
    with open(os.path.join(image, "descriptors.json")) as f:
        descriptors = json.load(f)
    check(descriptors[1].startswith("pipe:[") and descriptors[0] == "/dev/null",
          "descriptors.json: stdout is the pipe: %s" % descriptors)
    out = read_counts(r, out)
    last = last_count(out)
    check(last > 0, "counts read before the checkpoint")
    os.close(r)
    r2, w2 = os.pipe()
    os.set_blocking(r2, False)
    p = runtime(env, ["restore", "-d", "--bundle", bundle, "--image-path", image, "pp"], stdout=w2,
                stderr=subprocess.PIPE)
    os.close(w2)
    check(p.returncode == 0, "restore with our pipe as fd 1: %s" % p.stderr.read().decode()[-600:])
    text = wait_counts(r2, last + 3, "counts on the new pipe")
    first = last_count(text.split(b"\n", 1)[0] + b"\n")
    check(last < first <= last + 2, "the new pipe carries the counts from %d on (first %d)" % (last, first))
    env.run(["delete", "--force", "pp"])
    check(read_counts(r2) is not None, "drained")
    os.close(r2)
    check(gone(env, "pp"), "deleted")


class Console:
    """A console socket: receives one pty master, as conmon or the shim does."""

    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.server.settimeout(30)

    def master(self):
        conn, _ = self.server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        self.server.close()
        os.set_blocking(fds[0], False)
        return fds[0]


def test_terminal(env):
    bundle, data = counter_bundle(env, "tt", terminal=True)
    console = Console(os.path.join(env.tmp, "console.sock"))
    p = subprocess.Popen([CRYO, "--root", env.root, "run", "-d", "--console-socket", console.path, "--bundle",
                          bundle, "tt"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    master = console.master()
    check(p.wait(60) == 0, "run -d with a console")
    out = wait_counts(master, 4, "counts on the console")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "tt", image)
    last = last_count(read_counts(master, out))
    os.close(master)
    console2 = Console(os.path.join(env.tmp, "console2.sock"))
    p = subprocess.Popen([CRYO, "--root", env.root, "restore", "-d", "--console-socket", console2.path, "--bundle",
                          bundle, "--image-path", image, "tt"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    master2 = console2.master()
    rc = p.wait(60)
    check(rc == 0, "restore --console-socket: %s" % p.stderr.read().decode()[-600:])
    text = wait_counts(master2, last + 3, "counts on the new console")
    first = last_count(text.split(b"\n", 1)[0] + b"\n")
    check(last < first <= last + 2, "the new console carries the counts from %d on (first %d)" % (last, first))
    pid = env.state("tt")["pid"]
    check(os.readlink("/proc/%d/fd/0" % pid).startswith("/dev/pts/"), "the restored init's stdio is a terminal")
    env.run(["delete", "--force", "tt"])
    os.close(master2)
    check(gone(env, "tt"), "deleted")


def runc_message(env, setup, cid):
    """What runc 1.1 says for the same checkpoint (the oracle), or None without runc."""
    runc = shutil.which("runc")
    if not runc:
        return None
    root = os.path.join(env.tmp, "runc-state")
    bundle = os.path.join(env.tmp, "bundle-" + cid)
    try:
        for args in setup:
            subprocess.run([runc, "--root", root] + args + [cid], cwd=bundle, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            time.sleep(0.2)
        reap()
        p = subprocess.run([runc, "--root", root, "checkpoint", "--image-path", os.path.join(env.tmp, "runc-image"),
                            cid], capture_output=True, text=True, timeout=30)
        return p.stderr
    finally:
        subprocess.run([runc, "--root", root, "delete", "--force", cid], capture_output=True, timeout=30)
        reap()


def test_refused(env):
    bundle = env.bundle("cr", ["sleep", "100"])
    env.run(["create", "--bundle", bundle, "cr"])
    p = checkpoint(env, "cr", os.path.join(env.tmp, "image"), expect_ok=False)
    words = "Container cannot be checkpointed in created state"
    check(p.returncode == 1 and words in p.stderr, "created: refused as runc does: %r" % p.stderr)
    oracle = runc_message(env, [["create"]], "cr")
    if oracle is not None:
        check(words in oracle, "runc says the same: %r" % oracle)
    check(env.state("cr")["status"] == "created", "still created")
    env.run(["delete", "--force", "cr"])

    bundle = env.bundle("st", ["true"])
    env.run(["run", "-d", "--bundle", bundle, "st"])
    env.wait_status("st", "stopped")
    p = checkpoint(env, "st", os.path.join(env.tmp, "image"), expect_ok=False)
    words = "Container cannot be checkpointed in stopped state"
    check(p.returncode == 1 and words in p.stderr, "stopped: refused as runc does: %r" % p.stderr)
    oracle = runc_message(env, [["create"], ["start"]], "st")
    if oracle is not None:
        check(words in oracle, "runc says the same: %r" % oracle)
    env.run(["delete", "st"])

    p = checkpoint(env, "nosuch", os.path.join(env.tmp, "image"), expect_ok=False)
    check(p.returncode == 1 and "does not exist" in p.stderr, "no such container: %r" % p.stderr)

    bundle, data = counter_bundle(env, "fl")
    start(env, bundle, "fl")
    for flags, name in ((["--lazy-pages"], "--lazy-pages"),
                        (["--page-server", "nohost"], "Use --page-server ADDRESS:PORT"),
                        (["--page-server", "127.0.0.1:1"], "127.0.0.1"),  # nobody listens: the dump fails first
                        (["--parent-path", "/abs"], "--parent-path must be relative"),
                        (["--parent-path", "../p"], "invalid --parent-path"),
                        (["--pre-dump", "--export", os.path.join(env.tmp, "x.tar")], "not a --pre-dump"),
                        (["--pre-dump", "--page-server", "127.0.0.1:1"], "--page-server: a pre-dump"),
                        (["--status-fd", "99"], "invalid --status-fd argument 99"),
                        (["--manage-cgroups-mode", "bogus"], "manage cgroups mode"),
                        (["--empty-ns", "pid"], 'namespace "pid" is not supported')):
        p = checkpoint(env, "fl", os.path.join(env.tmp, "image-refused"), *flags, expect_ok=False)
        check(p.returncode == 1 and name in p.stderr, "checkpoint %s is refused naming it: %r" % (flags, p.stderr))
    check(env.state("fl")["status"] == "running", "the container runs on after the refusals")
    now = count(data)
    wait_for(lambda: count(data) > now, "the counter after the refusals")
    env.run(["delete", "--force", "fl"])

    for verb in ("checkpoint", "restore", "create", "run", "state", "list", "delete"):
        p = env.run([verb, "--help"], check=False)
        check(p.returncode == 0 and "usage" in p.stdout, "%s --help: exit 0" % verb)
    p = env.run(["restore", "--help"])
    check("--image-path" in p.stdout and "-D" in p.stdout, "restore --help tells both modes")
    p = env.run(["restore", "--lsm-mount-context"], check=False)
    check(p.returncode != 0 and "flag needs an argument" in p.stdout + p.stderr,
          "restore --lsm-mount-context without its argument (Podman's probe): %r" % p.stderr)
    p = env.run(["restore", "--manage-cgroups-mode", "ignore", "x"], check=False)
    check(p.returncode == 1 and "ignore is not supported" in p.stderr, "restore --manage-cgroups-mode ignore is refused")


MEMORY_COUNTER = "big=$(head -c 2000000 /dev/zero | tr '\\0' x); " + COUNTER


def image_pages(image):
    with open(os.path.join(image, "stats-dump.json")) as f:
        return json.load(f)["pages_bytes"]


def test_pre_dump(env):
    """runc's --pre-dump and --parent-path: two pre-dumps (the second against the first, of the
    container paused) leave the container running and counting (paused, the second), and
    write its memory only; the checkpoint against the
    second writes only what changed (far fewer pages than the first pre-dump, a whole copy of
    the 2 MB the shell holds) and the restore, reading through the chain, counts on."""
    bundle, data = counter_bundle(env, "pd")
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["args"] = ["/bin/sh", "-c", MEMORY_COUNTER]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    start(env, bundle, "pd")
    wait_for(lambda: count(data) >= 10, "the counter")
    base = os.path.join(env.tmp, "ck")
    pre1, pre2, final = (os.path.join(base, n) for n in ("pre1", "pre2", "final"))
    checkpoint(env, "pd", pre1, "--pre-dump", "--work-path", os.path.join(env.tmp, "work-pre1"))
    check(env.state("pd")["status"] == "running", "--pre-dump: the container's state stays running")
    now = count(data)
    wait_for(lambda: count(data) > now + 3, "the counter to go on after the pre-dump")
    check(os.path.exists(os.path.join(pre1, "inventory.img")) and
          not os.path.exists(os.path.join(pre1, "descriptors.json")), "the pre-dump is an image of memory only")
    check(os.path.exists(os.path.join(env.tmp, "work-pre1", "dump.log")), "the pre-dump's log is in --work-path")
    env.run(["pause", "pd"])
    checkpoint(env, "pd", pre2, "--pre-dump", "--parent-path", "../pre1")
    check(env.state("pd")["status"] == "paused" and stopped_counter(data), "a paused container stays paused")
    env.run(["resume", "pd"])
    now = count(data)
    wait_for(lambda: count(data) > now + 3, "the counter to go on after resume")
    p = checkpoint(env, "pd", final, "--parent-path", "/abs", expect_ok=False)
    check(p.returncode == 1 and "--parent-path must be relative" in p.stderr, "an absolute --parent-path: runc's words")
    checkpoint(env, "pd", final, "--parent-path", "../pre2")
    last = count(data)
    check(gone(env, "pd"), "the checkpoint against the pre-dump removes the container")
    full, delta = image_pages(pre1), image_pages(final)
    check(full >= 2000000 and delta * 4 < full,
          "the final image writes what changed since the pre-dump: %d bytes against %d of a whole copy" % (delta, full))
    check(os.readlink(os.path.join(final, "parent")) == "../pre2", "the final image names its parent")
    restore(env, bundle, "pd", final)
    counts_on(data, last, "restored through the pre-dumps")
    check(env.state("pd")["status"] == "running", "restored: running")
    env.run(["delete", "--force", "pd"])
    check(gone(env, "pd"), "deleted")


def start_page_server(env, directory):
    """cryo page-server on a free port of loopback; returns (Popen, port)."""
    os.makedirs(directory)
    server = subprocess.Popen([CRYO, "page-server", "-D", directory, "--address", "127.0.0.1", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return server, int(server.stdout.readline())


def test_page_server(env):
    """runc's --page-server ADDRESS:PORT, as in a live migration: a pre-dump on the source, then
    the checkpoint against it sends its pages to `cryo page-server` (the destination); with the
    server's pages.img beside the other files the restore counts on."""
    bundle, data = counter_bundle(env, "ps")
    start(env, bundle, "ps")
    wait_for(lambda: count(data) >= 10, "the counter")
    pre, final = os.path.join(env.tmp, "ck", "pre"), os.path.join(env.tmp, "ck", "final")
    checkpoint(env, "ps", pre, "--pre-dump")
    server, port = start_page_server(env, os.path.join(env.tmp, "dest"))
    try:
        checkpoint(env, "ps", final, "--parent-path", "../pre", "--page-server", "127.0.0.1:%d" % port)
        check(server.wait(timeout=60) == 0, "the page server took the pages: " + server.stderr.read()[-400:])
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    last = count(data)
    check(gone(env, "ps"), "checkpointed and gone")
    check(not os.path.exists(os.path.join(final, "pages.img")), "the pages went to the page server, not the image path")
    shutil.copy(os.path.join(env.tmp, "dest", "pages.img"), final)
    restore(env, bundle, "ps", final)
    counts_on(data, last, "restored with the page server's pages")
    env.run(["delete", "--force", "ps"])
    check(gone(env, "ps"), "deleted")


def test_lazy_migration(env):
    """runc's lazy migration on one host: `checkpoint --lazy-pages --page-server ADDR:PORT
    --status-fd FD` writes the image without the container's memory and serves it from the
    frozen container (FD gets its zero byte then); the image goes to another directory, where
    `cryo lazy-pages --page-server` fetches the memory for `restore --lazy-pages` of a second
    container (the first holds its id and cgroup until the end), which counts on at once; the
    checkpoint then exits 0 and the first container is gone."""
    bundle, data = counter_bundle(env, "lz")
    start(env, bundle, "lz")
    wait_for(lambda: count(data) >= 10, "the counter")
    image, dest = os.path.join(env.tmp, "lz-image"), os.path.join(env.tmp, "lz-dest")
    status_read, status_write = os.pipe()
    # Port 0: the kernel picks a free one, which the checkpoint prints.
    source = subprocess.Popen([CRYO, "--root", env.root, "checkpoint", "--image-path", image, "--lazy-pages",
                               "--page-server", "127.0.0.1:0", "--status-fd", str(status_write), "lz"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              pass_fds=(status_write,))
    os.close(status_write)
    daemon = None
    try:
        got = os.read(status_read, 1)
        if got != b"\0":
            source.wait(timeout=60)
        check(got == b"\0", "the checkpoint says it serves: %r" % (got if got else source.stderr.read()[-600:]))
        port = int(source.stdout.readline())
        last = count(data)
        check(stopped_counter(data), "the container is frozen while it serves")
        shutil.copytree(image, dest)
        daemon = subprocess.Popen([CRYO, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", str(port),
                                   "-D", dest], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(os.path.join(dest, "lazy-pages.socket")) or daemon.poll() is not None,
                 "lazy-pages to listen")
        if daemon.poll() is not None:
            check(False, "lazy-pages runs: " + daemon.stderr.read()[-600:])
        restore(env, bundle, "lz2", dest, "--lazy-pages")
        counts_on(data, last, "restored lazily from the source")
        daemon.wait(timeout=60)
        check(daemon.returncode == 0, "lazy-pages had every page: " + daemon.stderr.read()[-600:])
        source.wait(timeout=60)
        check(source.returncode == 0, "the checkpoint exits 0 once the memory is over: " + source.stderr.read()[-600:])
    finally:
        os.close(status_read)
        for p in (source, daemon):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    check(gone(env, "lz"), "the checkpointed container is gone")
    check(env.state("lz2")["status"] == "running", "the restored container runs")
    env.run(["delete", "--force", "lz2"])
    check(gone(env, "lz2"), "deleted")


def freezer_state(env, cid):
    path = os.path.join("/sys/fs/cgroup/freezer", "cryo-test-%s-%s" % (env.name, cid), "freezer.state")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    with open(os.path.join("/sys/fs/cgroup", "cryo-test-%s-%s" % (env.name, cid), "cgroup.freeze")) as f:
        return "FROZEN" if f.read().strip() == "1" else "THAWED"


def test_paused(env):
    bundle, data = counter_bundle(env, "pz")
    start(env, bundle, "pz")
    wait_for(lambda: count(data) >= 10, "the counter")
    env.run(["pause", "pz"])
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "pz", image, "--leave-running")
    check(env.state("pz")["status"] == "paused" and freezer_state(env, "pz") == "FROZEN",
          "a paused container stays paused after checkpoint --leave-running")
    check(stopped_counter(data), "and does not count")
    env.run(["resume", "pz"])
    now = count(data)
    wait_for(lambda: count(data) > now + 2, "the counter after resume")
    env.run(["pause", "pz"])
    image2 = os.path.join(env.tmp, "image2")
    checkpoint(env, "pz", image2)
    last = count(data)
    check(gone(env, "pz"), "a paused container is checkpointed and removed")
    restore(env, bundle, "pz", image2)
    counts_on(data, last, "restored from a paused checkpoint")
    check(env.state("pz")["status"] == "running", "running after restore")
    env.run(["delete", "--force", "pz"])


def healthy(env, cid, data, paused):
    """The container is as it was: state answers, not traced, frozen only if it was paused."""
    st = env.state(cid)
    if st["status"] != ("paused" if paused else "running"):
        return False
    if freezer_state(env, cid) != ("FROZEN" if paused else "THAWED"):
        return False
    for pid in json.loads(env.run(["ps", "-f", "json", cid]).stdout):
        try:
            with open("/proc/%d/status" % pid) as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if fields["TracerPid"].strip() != "0" or fields["State"].strip()[:1] in "tT":
            return False
    if paused:
        return True
    now = count(data)
    time.sleep(0.2)
    return count(data) > now


def runs_when_resumed(env, cid, data, what):
    """A paused container counts again once resumed (a thread the kill left parked, its
    signals blocked, would not), then is paused again."""
    env.run(["resume", cid])
    now = count(data)
    wait_for(lambda: count(data) > now, what + ": the counter to move once resumed", 5)
    env.run(["pause", cid])


def killed_helpers():
    """What a killed cryo left running that is still at work, below this test (a
    subreaper): its guard (`cryo guard`), which puts the tree back, and its freezer
    watcher (a fork of the checkpoint itself), which puts the cgroup back as it was."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % name) as f:
                argv = f.read().split("\0")
            with open("/proc/%s/comm" % name) as f:
                comm = f.read().strip()
        except (OSError, ValueError, IndexError):
            continue
        # (A pre-dump's keeper, a fork too, names itself and stays: it is not waited for.)
        if ppid == os.getpid() and os.path.basename(argv[0]).startswith("cryo") and (
                argv[1:2] == ["guard"] or (comm == "cryo" and "checkpoint" in argv)):
            found.append(int(name))
    return found


def sigkill_matrix(env, pre_dump):
    """SIGKILL of `cryo checkpoint` (or `checkpoint --pre-dump`) at each of its steps in turn
    (CRYO_FAILPOINT=@N) leaves the container running and thawed (a paused one paused), state
    answering."""
    flags = ["--pre-dump"] if pre_dump else []
    for paused in (False, True):
        cid = ("pp" if paused else "pr") if pre_dump else ("kp" if paused else "kr")
        bundle, data = counter_bundle(env, cid)
        start(env, bundle, cid)
        wait_for(lambda: count(data) >= 10, "the counter")
        if paused:
            env.run(["pause", cid])
        killed = 0
        for step in range(1, 400, 1 if not paused or pre_dump else 2):
            image = os.path.join(env.tmp, "image-%s-%d" % (cid, step))
            p = subprocess.run([CRYO, "--root", env.root, "checkpoint", "--image-path", image, *flags, cid],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "CRYO_FAILPOINT": "@%d" % step})
            # The container is whole again once the killed checkpoint's helpers are done
            # (README, "When the tree is whole again"): the next attempt waits for them,
            # as a script would; one still at work could freeze the cgroup under it.
            wait_for(lambda: (reap(), not killed_helpers())[1], "the killed checkpoint's guard and watcher", 30)
            if p.returncode != -signal.SIGKILL:
                # No step left to kill at: this run completed the checkpoint.
                check(p.returncode == 0, "%s: the checkpoint that was not killed works: %s" % (cid, p.stderr[-400:]))
                if pre_dump:
                    wait_for(lambda: healthy(env, cid, data, paused), "%s healthy after the pre-dump" % cid, 10)
                else:
                    check(gone(env, cid), "%s: then the container is gone" % cid)
                break
            killed += 1
            if not pre_dump and os.path.exists(os.path.join(image, "inventory.img")):
                # Killed after the image was complete: the container may be gone, state still answers.
                p = env.run(["state", cid], check=False)
                check(p.returncode == 0 or "does not exist" in p.stderr, "%s: state answers after a kill at step %d"
                      % (cid, step))
                env.run(["delete", "--force", cid], check=False)
                break
            try:
                wait_for(lambda: healthy(env, cid, data, paused), "%s healthy after a kill at step %d" % (cid, step), 10)
                if paused:
                    runs_when_resumed(env, cid, data, "%s after a kill at step %d" % (cid, step))
            except AssertionError as e:
                check(False, str(e) + ": " + json.dumps(env.state(cid)))
                break
            shutil.rmtree(image, ignore_errors=True)
        # A pre-dump of the shell alone has 4 steps (userfaultfd and close in it, tracked, keeper).
        check(killed >= (4 if pre_dump else 5), "%s: checkpoint %s killed at %d steps, the container as it was after each"
              % (cid, " ".join(flags), killed))
        env.run(["delete", "--force", cid], check=False)


def test_sigkill(env):
    sigkill_matrix(env, pre_dump=False)


def test_sigkill_pre_dump(env):
    sigkill_matrix(env, pre_dump=True)


def tree_hash(path):
    h = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(base, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_failed_restore(env):
    bundle, data = counter_bundle(env, "fr")
    start(env, bundle, "fr")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "fr", image, "--leave-running")
    before = tree_hash(image)
    work = os.path.join(env.tmp, "work")  # restore.log goes there, not into the images
    p = env.run(["restore", "-d", "--bundle", bundle, "--image-path", image, "--work-path", work, "fr"], check=False,
                timeout=120)
    check(p.returncode == 1 and "already exists" in p.stderr, "restore of an existing ID fails: %r" % p.stderr)
    check(env.state("fr")["status"] == "running", "the existing container is untouched")
    now = count(data)
    wait_for(lambda: count(data) > now, "the existing container to count on")
    env.run(["delete", "--force", "fr"])

    with open("/proc/self/mountinfo") as f:
        mounts = f.read().count("\n")
    bad = os.path.join(env.tmp, "bad-image")
    shutil.copytree(image, bad)
    pages = os.path.join(bad, "pages.img")
    with open(pages, "r+b") as f:  # a byte in the middle of the pages: the checksum fails
        size = os.path.getsize(pages)
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xff]))
    bad_before = tree_hash(bad)
    p = env.run(["restore", "-d", "--bundle", bundle, "--image-path", bad, "--work-path", work, "fr"], check=False,
                timeout=120)
    check(p.returncode == 1, "restore of a corrupt image fails: %r" % p.stderr[-400:])
    check(gone(env, "fr"), "a failed restore leaves no state dir, no cgroup")
    with open("/proc/self/mountinfo") as f:
        check(f.read().count("\n") == mounts, "a failed restore leaves no mount")
    check(tree_hash(bad) == bad_before, "a failed restore leaves the image untouched")
    # Failing midway, once the container's processes exist (a failpoint at that
    # step): the restore ends (it once waited for its mount holder forever) and
    # leaves nothing.
    for step in ("@3", "@12"):
        os.environ["CRYO_FAILPOINT"] = step
        try:
            p = env.run(["restore", "-d", "--bundle", bundle, "--image-path", image, "--work-path", work, "fr"],
                        check=False, timeout=60)
        finally:
            del os.environ["CRYO_FAILPOINT"]
        check(p.returncode == 1 and "failpoint" in p.stderr, "restore stopped at step %s fails: %r" % (step, p.stderr[-400:]))
        check(gone(env, "fr"), "a restore failed at step %s leaves no state dir, no cgroup" % step)
        with open("/proc/self/mountinfo") as f:
            check(f.read().count("\n") == mounts, "a restore failed at step %s leaves no mount" % step)
    check(tree_hash(image) == before, "the good image is untouched too")
    restore(env, bundle, "fr", image, "--work-path", work)
    check(env.state("fr")["status"] == "running", "the good image restores after the failures")
    env.run(["delete", "--force", "fr"])
    check(gone(env, "fr"), "deleted")


def test_netns_path(env):
    """A network namespace given by path in config.json (Podman's, a CNI one) is not saved:
    the restore joins the one the bundle names."""
    with NamespaceHolder("--net") as ns_dir:
        def edit(config):
            config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
            config["linux"]["namespaces"].append({"type": "network", "path": ns_dir + "net"})
        bundle, data = counter_bundle(env, "nn")
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        edit(config)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        start(env, bundle, "nn")
        wait_for(lambda: count(data) >= 10, "the counter")
        holder_ns = os.readlink(ns_dir + "net")
        check(os.readlink("/proc/%d/ns/net" % env.state("nn")["pid"]) == holder_ns, "the container is in the given netns")
        image = os.path.join(env.tmp, "image")
        checkpoint(env, "nn", image)
        last = count(data)
        with open(os.path.join(image, "container.json")) as f:
            check(json.load(f)["network"] == "extRootNetNS", "container.json: the network namespace is external")
        restore(env, bundle, "nn", image)
        counts_on(data, last, "restored into the given netns")
        check(os.readlink("/proc/%d/ns/net" % env.state("nn")["pid"]) == holder_ns,
              "the restored container joined the bundle's network namespace")
        env.run(["delete", "--force", "nn"])
    check(gone(env, "nn"), "deleted")


def test_foreground(env):
    """restore without -d waits for the container, exits with its status and removes it."""
    bundle, data = counter_bundle(env, "fg")
    start(env, bundle, "fg")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "fg", image)
    last = count(data)
    p = subprocess.Popen([CRYO, "--root", env.root, "restore", "--bundle", bundle, "--image-path", image, "fg"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    counts_on(data, last, "restored in the foreground")
    check(p.poll() is None and env.state("fg")["status"] == "running", "restore waits while the container runs")
    # Not env.run: its reap() could take the status of the restore before p.wait() does.
    subprocess.run([CRYO, "--root", env.root, "kill", "fg", "KILL"], check=True, timeout=30)
    rc = p.wait(30)
    check(rc == 128 + 9, "restore exits with the container's status (137 after SIGKILL): %d %s"
          % (rc, p.stderr.read().decode()[-300:]))
    reap()
    check(gone(env, "fg"), "and removes the container")


def test_config_files(env):
    """cryo.yaml ($CRYO_CONFIG) and the annotation org.criu.config apply to checkpoint and
    restore: each names an action script here, which leaves its mark."""
    marks = os.path.join(env.tmp, "marks")
    script = os.path.join(env.tmp, "action.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho \"$1$CRTOOLS_SCRIPT_ACTION\" >> %s\n" % marks)
    os.chmod(script, 0o755)
    criu_conf = os.path.join(env.tmp, "criu.conf")
    with open(criu_conf, "w") as f:
        f.write("action-script %s\n" % script)
    yaml_conf = os.path.join(env.tmp, "cryo.yaml")
    with open(yaml_conf, "w") as f:
        f.write("restore:\n  action-script: [%s]\n" % script)
    bundle, data = counter_bundle(env, "cf")
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.setdefault("annotations", {})["org.criu.config"] = criu_conf
    with open(path, "w") as f:
        json.dump(config, f)
    start(env, bundle, "cf")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "cf", image)
    with open(marks) as f:
        dumped = f.read().split()
    check("pre-dump" in dumped and "post-dump" in dumped, "org.criu.config was read by checkpoint: %s" % dumped)
    with open(path) as f:
        config = json.load(f)
    del config["annotations"]["org.criu.config"]
    with open(path, "w") as f:
        json.dump(config, f)
    os.unlink(marks)
    os.environ["CRYO_CONFIG"] = yaml_conf
    try:
        restore(env, bundle, "cf", image)
    finally:
        del os.environ["CRYO_CONFIG"]
    with open(marks) as f:
        restored = f.read().split()
    check("pre-restore" in restored and "post-restore" in restored, "cryo.yaml was read by restore: %s" % restored)
    env.run(["delete", "--force", "cf"])
    check(gone(env, "cf"), "deleted")


def test_hooks(env):
    """As runc: prestart and createRuntime hooks run again on restore with the restored
    init's pid, in time to set up its namespaces (here: an address on lo in its network namespace,
    which the checkpoint saved empty, as runc has CRIU do); poststart runs after, poststop at
    delete."""
    marks = os.path.join(env.tmp, "hooks")
    os.makedirs(marks)
    setup = ('cat > %s/$0.json; pid=$(sed -n "s/.*\\"pid\\": *\\([0-9]*\\).*/\\1/p" %s/$0.json); '
             'nsenter -t $pid -n ip addr add 10.123.45.67/32 dev lo' % (marks, marks))

    def hook(name, script):
        return {"path": "/bin/sh", "args": ["sh", "-c", script, name]}
    bundle, data = counter_bundle(env, "hk")
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["hooks"] = {"prestart": [hook("prestart", setup)],
                       "createRuntime": [hook("createRuntime", "cat > %s/$0.json" % marks)],
                       "poststart": [hook("poststart", "cat > %s/$0.json" % marks)],
                       "poststop": [hook("poststop", "cat > %s/$0.json" % marks)]}
    with open(path, "w") as f:
        json.dump(config, f)
    start(env, bundle, "hk")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "hk", image)
    last = count(data)
    for name in os.listdir(marks):
        os.unlink(os.path.join(marks, name))
    restore(env, bundle, "hk", image)
    counts_on(data, last, "restored with hooks")
    pid = env.state("hk")["pid"]
    for name in ("prestart", "createRuntime", "poststart"):
        try:
            with open(os.path.join(marks, name + ".json")) as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            check(False, "the %s hook ran on restore: %s" % (name, e))
            continue
        check(state["pid"] == pid and state["id"] == "hk", "the %s hook ran on restore with the restored pid" % name)
    p = env.run(["exec", "hk", "ip", "addr", "show", "dev", "lo"], check=False)
    check("10.123.45.67" in p.stdout, "the prestart hook set up the restored container's network namespace: %r" % p.stdout)
    env.run(["delete", "--force", "hk"])
    check(os.path.exists(os.path.join(marks, "poststop.json")), "poststop ran at delete")
    check(gone(env, "hk"), "deleted")


def test_userns(env):
    """A container with a user namespace of its own (identity map) is checkpointed and
    restored into a user namespace with the same maps."""
    bundle, data = counter_bundle(env, "us")
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    with open(path, "w") as f:
        json.dump(config, f)
    start(env, bundle, "us")
    wait_for(lambda: count(data) >= 10, "the counter")
    image = os.path.join(env.tmp, "image")
    checkpoint(env, "us", image)
    last = count(data)
    restore(env, bundle, "us", image)
    counts_on(data, last, "restored with its user namespace")
    pid = env.state("us")["pid"]
    check(os.readlink("/proc/%d/ns/user" % pid) != os.readlink("/proc/self/ns/user"),
          "the restored container has a user namespace of its own")
    with open("/proc/%d/uid_map" % pid) as f:
        check(f.read().split() == ["0", "0", "65536"], "with the bundle's uid map")
    env.run(["delete", "--force", "us"])
    check(gone(env, "us"), "deleted")


if __name__ == "__main__":
    main({"basic": test_basic, "new_name": test_new_name, "leave_running": test_leave_running, "twice": test_twice, "pipe": test_pipe,
          "terminal": test_terminal, "refused": test_refused, "paused": test_paused, "sigkill": test_sigkill,
          "failed_restore": test_failed_restore, "netns_path": test_netns_path, "foreground": test_foreground,
          "config_files": test_config_files, "hooks": test_hooks, "pre_dump": test_pre_dump,
          "page_server": test_page_server, "lazy_migration": test_lazy_migration,
          "sigkill_pre_dump": test_sigkill_pre_dump,
          "userns": test_userns})
