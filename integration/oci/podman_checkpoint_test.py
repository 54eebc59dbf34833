"""Podman's checkpoint options with cryo as the runtime and as Podman's criu:
-R and copies of one export under new names, --ignore-rootfs, --tcp-established
(a web server in a container answers a request the checkpoint cut in two),
--file-locks, and -P (--pre-checkpoint) then --with-previous."""
import json
import os
import socket
import subprocess
import tarfile
import textwrap
import threading
import time

from cryo_oci import CRYO, check, main
from podman_test import PARENT, Podman, podman_count, wait_count

COUNTER = ("i=0; while true; do i=$((i+1)); "
           "echo $i > /tmp/count.tmp && mv /tmp/count.tmp /tmp/count; sleep 0.1; done")
# For a container that runs on while Podman archives its rootfs changes (-R --export):
# Podman lists the changed files, then archives each, and a count.tmp renamed away in
# between can fail the export. Written in place, a reader may see it empty (podman_count: 0).
COUNTER_IN_PLACE = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"


def checkpoint_podman(env, driver="vfs"):
    criu_dir = os.path.join(os.path.dirname(CRYO), "criu-path")
    if not os.path.exists(os.path.join(criu_dir, "criu")):
        raise AssertionError("no %s/criu: Podman needs a criu that answers criu swrk" % criu_dir)
    pm = Podman(env, driver)
    pm.environ["PATH"] = criu_dir + ":" + pm.environ["PATH"]
    tar = os.path.join(env.tmp, "rootfs.tar")
    with tarfile.open(tar, "w") as t:
        t.add(env.rootfs, arcname=".")
    pm("import", tar, "localhost/cryo-busybox")
    return pm


def ok(p, what):
    check(p.returncode == 0, "%s: %s" % (what, p.stderr.strip()[-400:]))


def status(pm, name):
    return pm("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def test_copies(env):
    """checkpoint -R --export leaves the container counting; two containers restored from
    the export at the same time under new names (-n) count on from the checkpoint, each in
    its own cgroup (also the one its /sys/fs/cgroup binds), beside the original. A file the
    container wrote comes back with the rootfs changes, and not with --ignore-rootfs (a copy
    restored once the original is gone)."""
    pm = checkpoint_podman(env)
    try:
        pm("run", "-d", "--name", "k1", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
           "sh", "-c", "echo written > /marker; " + COUNTER_IN_PLACE)
        wait_count(pm, "k1", 10, "the counter")
        export = os.path.join(env.tmp, "k1.tar.zst")
        ok(pm("container", "checkpoint", "-R", "--export", export, "k1", check=False, timeout=120),
           "podman container checkpoint -R --export")
        at_export = podman_count(pm, "k1")
        check(status(pm, "k1") == "running", "-R leaves the container running")
        wait_count(pm, "k1", at_export + 3, "the left-running counter to count on")

        results = {}

        def restore(name):
            results[name] = pm("container", "restore", "--import", export, "-n", name, check=False, timeout=120)

        threads = [threading.Thread(target=restore, args=(n,)) for n in ("k2", "k3")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pids = set()
        for name in ("k2", "k3"):
            ok(results[name], "podman container restore --import -n %s (two at once)" % name)
            check(status(pm, name) == "running", name + " is running")
            first = wait_count(pm, name, 0, name + "'s counter")
            later = wait_count(pm, name, first + 3, name + "'s counter to count on")
            check(first >= at_export - 1 and later > first,
                  "%s counts on from the checkpoint (%d then %d; %d at the checkpoint)" % (name, first, later,
                                                                                          at_export))
            check(pm("exec", name, "cat", "/marker").stdout.strip() == "written",
                  name + " has the file the container wrote (rootfs-diff.tar)")
            pids.add(pm("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
            cid = pm("inspect", "--format", "{{.Id}}", name).stdout.strip()
            tasks = "/sys/fs/cgroup/pids%s/libpod-%s/tasks" % (PARENT, cid)
            check(os.path.exists(tasks) and open(tasks).read().split(),
                  "%s's tasks are in its own cgroup libpod-%s" % (name, cid[:12]))
            seen = pm("exec", name, "stat", "-c", "%i", "/sys/fs/cgroup/pids", check=False).stdout.strip()
            check(seen == str(os.stat(os.path.dirname(tasks)).st_ino),
                  "%s's /sys/fs/cgroup/pids is its own cgroup, not the original's" % name)
        check(len(pids) == 2, "two restored copies are two process trees: " + str(pids))
        check(status(pm, "k1") == "running", "the original still runs beside its copies")

        # Once the original and its cgroups are gone, a copy still finds its own.
        pm("rm", "-f", "k1")
        ok(pm("container", "restore", "--import", export, "-n", "k4", "--ignore-rootfs", check=False, timeout=120),
           "podman container restore --ignore-rootfs")
        p = pm("exec", "k4", "cat", "/marker", check=False)
        check(p.returncode != 0, "--ignore-rootfs leaves the container's file behind: " + p.stdout.strip())
        wait_count(pm, "k4", at_export, "k4's counter")
    finally:
        pm.cleanup()


def test_overlay(env):
    """A container whose root is an overlay mount (Podman's overlay driver, mounted on the
    host): checkpointed and restored, it counts on and keeps what it wrote in its upper dir."""
    pm = checkpoint_podman(env, "overlay")
    try:
        pm("run", "-d", "--name", "ov", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
           "sh", "-c", "echo upper > /marker; " + COUNTER)
        wait_count(pm, "ov", 10, "the counter")
        root = pm("exec", "ov", "sh", "-c", "grep ' / / ' /proc/self/mountinfo").stdout
        check(" - overlay " in root, "the container's root is an overlay: " + root.strip())
        ok(pm("container", "checkpoint", "ov", check=False, timeout=120), "podman container checkpoint (overlay root)")
        at_checkpoint = int(open(os.path.join(pm("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}",
                                                  "ov").stdout.strip(), "tmp", "count")).read())
        ok(pm("container", "restore", "ov", check=False, timeout=120), "podman container restore (overlay root)")
        first = wait_count(pm, "ov", 0, "the restored counter")
        later = wait_count(pm, "ov", first + 3, "the restored counter to count on")
        check(first >= at_checkpoint and later > first,
              "the restored container counts on from %d (%d, then %d)" % (at_checkpoint, first, later))
        check(pm("exec", "ov", "cat", "/marker").stdout.strip() == "upper", "what it wrote is still there")
    finally:
        pm.cleanup()


SLOW_CGI = """\
#!/bin/sh
echo "Content-Type: text/plain"
echo
echo first-half
sleep 4
echo second-half
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_established(env):
    """A web server in a container (host network) is checkpointed with --tcp-established
    while a client waits in the middle of its answer; restored, it sends the rest."""
    pm = checkpoint_podman(env)
    try:
        cgi = os.path.join(env.tmp, "www", "cgi-bin")
        os.makedirs(cgi)
        with open(os.path.join(cgi, "slow"), "w") as f:
            f.write(SLOW_CGI)
        os.chmod(os.path.join(cgi, "slow"), 0o755)
        port = free_port()
        pm("run", "-d", "--name", "web", "--network", "host", "--cgroup-parent", PARENT,
           "-v", os.path.dirname(cgi) + ":/www:ro", "localhost/cryo-busybox",
           "httpd", "-f", "-p", "127.0.0.1:%d" % port, "-h", "/www")
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        out = os.path.join(env.tmp, "curl.out")
        with open(out, "w") as f:
            curl = subprocess.Popen(["curl", "-sS", "-N", "-m", "60", "http://127.0.0.1:%d/cgi-bin/slow" % port],
                                    stdout=f, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                if "first-half" in open(out).read():
                    break
                time.sleep(0.05)
            check("first-half" in open(out).read(), "the client has the first half before the checkpoint")
            ok(pm("container", "checkpoint", "--tcp-established", "web", check=False, timeout=120),
               "podman container checkpoint --tcp-established")
            check(curl.poll() is None, "the client still waits while the server is checkpointed")
            ok(pm("container", "restore", "--tcp-established", "web", check=False, timeout=120),
               "podman container restore --tcp-established")
            code = curl.wait(timeout=60)
        finally:
            if curl.poll() is None:
                curl.kill()
                curl.wait()
        text = open(out).read()
        check(code == 0 and text.split() == ["first-half", "second-half"],
              "the client gets the whole answer (curl %d): %r" % (code, text))
    finally:
        pm.cleanup()


LOCKER = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
/* hold PATH: flock() it and put a POSIX lock on its first byte, then sleep.
   probe PATH: print which of the two locks someone else holds. */
int main(int argc, char** argv) {
  int fd = open(argv[2], O_RDWR | O_CREAT, 0644);
  if (fd < 0) return 2;
  if (!strcmp(argv[1], "hold")) {
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (flock(fd, LOCK_EX) || fcntl(fd, F_SETLK, &l)) return 3;
    write(1, "locked\n", 7);
    for (;;) pause();
  }
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  if (fcntl(fd, F_GETLK, &l)) return 4;
  printf("flock=%s posix=%s\n", flock(fd, LOCK_EX | LOCK_NB) ? "held" : "free",
         l.l_type == F_WRLCK ? "held" : "free");
  return 0;
}
"""


def image_pages(pm, name, image):
    """The bytes of pages cryo wrote into the container's IMAGE directory (checkpoint or
    pre-checkpoint, in the container's userdata, its bundle)."""
    bundle = pm("inspect", "--format", "{{.StaticDir}}", name).stdout.strip()
    with open(os.path.join(bundle, image, "stats-dump.json")) as f:
        return json.load(f)["pages_bytes"]


def test_pre_checkpoint(env):
    """podman container checkpoint -P (--pre-checkpoint: cryo checkpoint --pre-dump, after
    Podman asked its criu for memory tracking) leaves the container running; checkpoint
    --with-previous (--parent-path ../pre-checkpoint) then writes only what changed, far less
    than the pre-checkpoint's copy of the 2 MB the shell holds; restore counts on. Then both
    as archives (-P --export, --with-previous --export), restored with --import-previous."""
    pm = checkpoint_podman(env)
    try:
        pm("run", "-d", "--name", "pc", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
           "sh", "-c", "big=$(head -c 2000000 /dev/zero | tr '\\0' x); " + COUNTER)
        wait_count(pm, "pc", 10, "the counter")
        ok(pm("container", "checkpoint", "-P", "pc", check=False, timeout=120), "podman container checkpoint -P")
        check(status(pm, "pc") == "running", "-P leaves the container running")
        at_pre = wait_count(pm, "pc", 0, "the counter after -P")
        before = wait_count(pm, "pc", at_pre + 3, "the counter to count on after -P")
        ok(pm("container", "checkpoint", "--with-previous", "pc", check=False, timeout=120),
           "podman container checkpoint --with-previous")
        check(status(pm, "pc") == "exited", "the checkpoint stops the container: " + status(pm, "pc"))
        full, delta = image_pages(pm, "pc", "pre-checkpoint"), image_pages(pm, "pc", "checkpoint")
        check(full >= 2000000 and delta * 4 < full,
              "--with-previous writes what changed since -P: %d bytes against %d" % (delta, full))
        ok(pm("container", "restore", "pc", check=False, timeout=120), "podman container restore")
        first = wait_count(pm, "pc", 0, "the restored counter")
        later = wait_count(pm, "pc", first + 3, "the restored counter to count on")
        check(first >= before and later > first,
              "the restored container counts on from the checkpoint (%d, then %d; %d before it, %d at -P)"
              % (first, later, before, at_pre))

        # The same as archives, as a migration carries them: -P --export, --with-previous
        # --export, the container removed, then restore --import with --import-previous.
        pre_tar, ck_tar = os.path.join(env.tmp, "pre.tar.gz"), os.path.join(env.tmp, "ck.tar.gz")
        ok(pm("container", "checkpoint", "-P", "--export", pre_tar, "pc", check=False, timeout=120),
           "podman container checkpoint -P --export")
        before = wait_count(pm, "pc", later, "the counter after -P --export")
        ok(pm("container", "checkpoint", "--with-previous", "--export", ck_tar, "pc", check=False, timeout=120),
           "podman container checkpoint --with-previous --export")
        pm("rm", "pc")
        ok(pm("container", "restore", "--import", ck_tar, "--import-previous", pre_tar, check=False, timeout=120),
           "podman container restore --import --import-previous")
        first = wait_count(pm, "pc", 0, "the imported counter")
        later = wait_count(pm, "pc", first + 3, "the imported counter to count on")
        check(first >= before and later > first,
              "the imported container counts on from the checkpoint (%d, then %d; %d before it)"
              % (first, later, before))

        # A plain checkpoint after -P (no --with-previous) starts over: it ends the
        # pre-checkpoint's write tracking, which refused the memory before.
        ok(pm("container", "checkpoint", "-P", "pc", check=False, timeout=120), "podman container checkpoint -P")
        before = wait_count(pm, "pc", later, "the counter after the second -P")
        ok(pm("container", "checkpoint", "pc", check=False, timeout=120),
           "podman container checkpoint without --with-previous after -P")
        ok(pm("container", "restore", "pc", check=False, timeout=120), "podman container restore")
        first = wait_count(pm, "pc", 0, "the counter restored from the plain checkpoint")
        later = wait_count(pm, "pc", first + 3, "that counter to count on")
        check(first >= before and later > first,
              "the container restored from the plain checkpoint counts on (%d, then %d; %d before it)"
              % (first, later, before))
    finally:
        pm.cleanup()


def test_file_locks(env):
    """--file-locks: a container holding a flock and a POSIX lock holds both after restore."""
    pm = checkpoint_podman(env)
    try:
        src = os.path.join(env.tmp, "locker.c")
        with open(src, "w") as f:
            f.write(textwrap.dedent(LOCKER))
        subprocess.run(["cc", "-static", "-O", "-o", os.path.join(env.tmp, "locker"), src], check=True)
        pm("run", "-d", "--name", "lk", "--network", "none", "--cgroup-parent", PARENT,
           "-v", os.path.join(env.tmp, "locker") + ":/locker:ro", "localhost/cryo-busybox",
           "/locker", "hold", "/tmp/lock")
        for _ in range(100):
            if "locked" in pm("logs", "lk").stdout:
                break
            time.sleep(0.05)
        probe = ["exec", "lk", "/locker", "probe", "/tmp/lock"]
        check(pm(*probe).stdout.strip() == "flock=held posix=held", "the locks are held before the checkpoint")
        ok(pm("container", "checkpoint", "--file-locks", "lk", check=False, timeout=120),
           "podman container checkpoint --file-locks")
        ok(pm("container", "restore", "--file-locks", "lk", check=False, timeout=120),
           "podman container restore --file-locks")
        check(pm(*probe).stdout.strip() == "flock=held posix=held", "the restored container holds both locks")
    finally:
        pm.cleanup()


if __name__ == "__main__":
    main({"copies": test_copies, "overlay": test_overlay, "tcp_established": test_tcp_established, "file_locks": test_file_locks,
          "pre_checkpoint": test_pre_checkpoint})
