#!/usr/bin/env python3
"""External pipes and --inherit-fd. A process whose pipe has its other end in this test
(outside the tree) is dumped with the bytes queued in it and comes back with a fresh pipe
whose outer end is gone: its writes fail with EPIPE, its reads give the queued bytes, then
end of file; a jobserver pipe held on both sides keeps its tokens. With `restore
--inherit-fd fd[N]:pipe:[INODE]` the tree gets a pipe this test passes to cryo restore
instead, and this test reads what the restored process writes (or feeds what it reads);
a shell job's stdio pipe and terminal, and a regular file, are handed over the same way. `cryo inspect` names
each external pipe by its key. Keys that name nothing are refused by name."""
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (_POPENS, check, check_eq, exit_status_text, log, read_text, reap, run,  # noqa: E402
                     snapshot)


def start(env, mode, fds, stdout=None, stdin=None):
    """Starts extpipe in its own session with `fds` passed at their numbers; returns
    (pid, ready fields, report, expect path)."""
    ready, report, expect = env.path("ready"), env.path("report"), env.path("expect")
    out_path = env.path(f"extpipe-{mode}.output")
    with open(out_path, "wb") as out:
        argv = [env.workload("extpipe"), ready, report, expect, mode] + [str(fd) for fd in fds]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                stdout=out if stdout is None else stdout, stderr=out, pass_fds=fds,
                                start_new_session=True)
    _POPENS.append(proc)
    env.logs.append(out_path)
    log(f"started extpipe {mode} {fds} as {proc.pid}")
    return proc.pid, env.wait_ready(ready, proc.pid), report, expect


def restore_with(env, images, *extra, pass_fds=()):
    """cryo restore -d with some fds of this test passed at their numbers; returns
    (exit code, stderr)."""
    pidfile = env.path("restore.pid")
    args = [env.cryo_path, "restore", "-D", images, "-d", "--pidfile", pidfile, "-o", env.path("restore.log"),
            "-v4"] + [str(a) for a in extra]
    err_path = env.path("restore.err")
    with open(err_path, "wb") as err:
        rc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=pass_fds,
                            timeout=120).returncode
    stderr = read_text(err_path, "")
    log(f"{' '.join(args[1:])} -> {rc}" + (f"\n  stderr: {stderr.strip()[-600:]}" if stderr.strip() else ""))
    return rc, stderr


def dump(env, pid, *extra):
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, *extra)
    env.wait_dumped(before)
    return images


def inspect_external(env, images):
    image = json.loads(env.cryo("inspect", images).stdout)
    check("external" in image, "cryo inspect shows no external pipes and inherited files")
    return image["external"]


def trigger(env, pid, report, expect, line):
    with open(expect, "w") as f:
        f.write(line + "\n")
    env.trigger_and_report(pid, report, timeout=20)


def read_until(fd, text, timeout=10):
    """Reads fd (a terminal's master) until text has come; fails after timeout."""
    got, deadline = b"", time.monotonic() + timeout
    while text not in got:
        left = deadline - time.monotonic()
        check(left > 0 and select.select([fd], [], [], left)[0], f"{text!r} did not come (got {got!r})")
        got += os.read(fd, 4096)
    return got


def read_to_eof(fd, timeout=10):
    """Reads a pipe until its end of file; fails when a writer stays after timeout."""
    data, deadline = b"", time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        check(left > 0 and select.select([fd], [], [], left)[0], f"no end of file after {data!r} (a writer left?)")
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def case_writer_epipe(env):
    """fd 1 writes into a pipe this test reads: dumped (no --shell-job needed), named
    by inspect, and after the restore its writes fail with EPIPE. Bad --inherit-fd
    arguments are refused first, naming them, and leave the image restorable."""
    r, w = os.pipe()
    pid, ready, report, expect = start(env, "writer", [1], stdout=w)
    os.close(w)
    check_eq(os.read(r, 6), b"hello\n", "what the writer wrote before the dump")
    key = f"pipe:[{ready['ino']}]"
    images = dump(env, pid)
    external = inspect_external(env, images)
    log(f"inspect: external = {external}")
    check_eq([(e["key"], e["kind"], e["outside_holder"], e["owners"]) for e in external],
             [(key, "external pipe", os.getpid(), [{"pid": pid, "fd": 1, "end": "write"}])],
             "what inspect says of the external pipe")
    spare_r, spare_w = os.pipe()
    os.mkdir(env.path("somedir"))
    for extra, fds, mention in [
            ([f"--inherit-fd=fd[{spare_w}]:pipe:[1]"], (spare_w,), "pipe:[1]"),
            ([f"--inherit-fd=fd[{spare_w}]:{key}"], (), f"fd[{spare_w}]"),  # not passed: not open in cryo
            (["--inherit-fd=fd[x]:" + key], (), "fd[x]"),
            ([f"--inherit-fd=fd[{spare_w}]:file[12:345]"], (spare_w,), "file[12:345]"),
            ([f"--inherit-fd=fd[{spare_w}]:tmp/nothing/here"], (spare_w,), "tmp/nothing/here")]:
        rc, stderr = restore_with(env, images, *extra, pass_fds=fds)
        check_eq(rc, 1, f"exit code of a restore with {extra}")
        check(mention in stderr, f"the refusal of {extra} does not name {mention}: {stderr.strip()!r}")
    os.close(spare_r)
    os.close(spare_w)
    rc, _ = restore_with(env, images)
    check_eq(rc, 0, "exit code of cryo restore")
    check_eq(os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:["), True, "fd 1 of the restored writer is a pipe")
    trigger(env, pid, report, expect, "epipe")
    os.close(r)


def case_reader_eof(env):
    """fd N reads a pipe this test writes into; bytes queued at the dump come back,
    then end of file, as the outer writer is gone."""
    r, w = os.pipe()
    pid, ready, report, expect = start(env, "reader", [r])
    os.close(r)
    text = "queued-before-the-dump"
    os.write(w, text.encode())
    images = dump(env, pid)
    external = inspect_external(env, images)
    check_eq([(e["key"], e["queued_bytes"], e["owners"]) for e in external],
             [(f"pipe:[{ready['ino']}]", len(text), [{"pid": pid, "fd": r, "end": "read"}])],
             "what inspect says of the external pipe")
    rc, _ = restore_with(env, images)
    check_eq(rc, 0, "exit code of cryo restore")
    trigger(env, pid, report, expect, "read " + text)
    os.close(w)


def case_writer_inherit(env):
    """--inherit-fd fd[N]:pipe:[INODE] with a new pipe of this test's: what the restored
    process writes to its fd 1 arrives there."""
    r, w = os.pipe()
    pid, ready, report, expect = start(env, "writer", [1], stdout=w)
    os.close(w)
    check_eq(os.read(r, 6), b"hello\n", "what the writer wrote before the dump")
    images = dump(env, pid)
    os.close(r)
    r2, w2 = os.pipe()
    rc, _ = restore_with(env, images, f"--inherit-fd=fd[{w2}]:pipe:[{ready['ino']}]", pass_fds=(w2,))
    check_eq(rc, 0, "exit code of cryo restore --inherit-fd")
    os.close(w2)
    check_eq(os.readlink(f"/proc/{pid}/fd/1"), f"pipe:[{os.fstat(r2).st_ino}]", "fd 1 of the restored writer")
    trigger(env, pid, report, expect, "write after-the-restore")
    check_eq(read_to_eof(r2), b"after-the-restore", "what this test read from the pipe it handed over")
    os.close(r2)


def case_reader_inherit(env):
    """The reading side handed over: the restored process reads what this test writes
    into its new pipe (and not the old pipe's queued bytes), then end of file."""
    r, w = os.pipe()
    pid, ready, report, expect = start(env, "reader", [r])
    os.close(r)
    os.write(w, b"old-bytes")
    images = dump(env, pid)
    os.close(w)
    r2, w2 = os.pipe()
    rc, _ = restore_with(env, images, f"--inherit-fd", f"fd[{r2}]:pipe:[{ready['ino']}]", pass_fds=(r2,))
    check_eq(rc, 0, "exit code of cryo restore --inherit-fd")
    os.close(r2)
    os.write(w2, b"new-bytes")
    os.close(w2)
    trigger(env, pid, report, expect, "read new-bytes")


def case_jobserver(env):
    """A make-like jobserver: this test and the process both hold both ends, with three
    tokens in it. Restored without --inherit-fd, the process has the three tokens in a
    pipe of its own; with it, it works on this test's new jobserver (two tokens) and
    gives its tokens back there."""
    r, w = os.pipe()
    os.write(w, b"+++")
    pid, ready, report, expect = start(env, "jobserver", [r, w])
    key = f"pipe:[{ready['ino']}]"
    images = env.path("images")
    env.dump(pid, images, "-R")  # it runs on, killed below
    external = inspect_external(env, images)
    check_eq([(e["key"], e["queued_bytes"], sorted(o["end"] for o in e["owners"])) for e in external],
             [(key, 3, ["read", "write"])], "what inspect says of the jobserver")
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    rc, _ = restore_with(env, images)
    check_eq(rc, 0, "exit code of cryo restore")
    trigger(env, pid, report, expect, "tokens 3")

    for path in (report, env.path("ready")):
        os.unlink(path)
    pid, ready, report, expect = start(env, "jobserver", [r, w])
    images = dump(env, pid)
    os.close(r)
    os.close(w)
    r2, w2 = os.pipe()
    os.write(w2, b"++")
    os.set_blocking(r2, False)
    rc, _ = restore_with(env, images, f"--inherit-fd=fd[{r2}]:pipe:[{ready['ino']}]", pass_fds=(r2,))
    check_eq(rc, 0, "exit code of cryo restore --inherit-fd")
    trigger(env, pid, report, expect, "tokens 2")
    check_eq(os.read(r2, 16), b"++", "the tokens given back into this test's jobserver")
    os.close(r2)
    os.close(w2)


def case_foreground_closes_given_fd(env):
    """cryo restore without -d waits for the root, holding none of the fds it was given:
    here the only writer of the pipe handed over for a reader is cryo's fd N (this test
    closed its own), so the restored reader sees end of file only if cryo closed it.
    The tree's end is opened as a read end through the write end it was given."""
    r, w = os.pipe()
    pid, ready, report, expect = start(env, "reader", [r])
    os.close(r)
    images = dump(env, pid)
    os.close(w)
    r2, w2 = os.pipe()
    pidfile = env.path("restore.pid")
    args = [env.cryo_path, "restore", "-D", images, "-o", env.path("restore.log"), "-v4", "--pidfile", pidfile,
            f"--inherit-fd=fd[{w2}]:pipe:[{ready['ino']}]"]
    with open(env.path("restore.err"), "wb") as err:
        cryo = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=(w2,))
    _POPENS.append(cryo)
    os.close(w2)
    check_eq(int(env.wait_file(pidfile, pid=cryo.pid, what="the pidfile of cryo restore")), pid, "restored pid")
    check_eq(os.readlink(f"/proc/{pid}/fd/{r}"), f"pipe:[{os.fstat(r2).st_ino}]", f"fd {r} of the restored reader")
    trigger(env, pid, report, expect, "read ")
    check_eq(cryo.wait(timeout=30), 0, "exit code of cryo restore (the root's)")
    os.close(r2)


MAKEFILE = """all:
\t+@exec sh run.sh
"""

RUN_SH = r"""auth=$(printf '%s\n' "$MAKEFLAGS" | sed -n 's/.*--jobserver-auth=\([0-9]*\),\([0-9]*\).*/\1 \2/p')
[ -n "$auth" ] || { echo "no jobserver pipe in MAKEFLAGS: $MAKEFLAGS" >&2; exit 3; }
exec "$EXTPIPE" "$READY" "$REPORT" "$EXPECT" jobserver $auth
"""


def case_make_jobserver(env):
    """A job of GNU make -j4 (a recipe marked +, which keeps make's jobserver pipe, with
    make's three spare tokens in it), dumped as a shell job (make leads the session) while
    make holds both ends; restored, it has the three tokens in a pipe of its own."""
    with open(env.path("Makefile"), "w") as f:
        f.write(MAKEFILE)
    with open(env.path("run.sh"), "w") as f:
        f.write(RUN_SH)
    ready, report, expect = env.path("ready"), env.path("report"), env.path("expect")
    make = env.spawn(["make", "-j4", "-s"], name="make", cwd=env.dir,
                     env={**os.environ, "EXTPIPE": env.workload("extpipe"), "READY": ready, "REPORT": report,
                          "EXPECT": expect, "MAKEFLAGS": ""})
    fields = env.wait_ready(ready, make)
    pid = fields["pid"]
    check_eq(int(read_text(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1]), make, "the job's parent")
    images = dump(env, pid, "--shell-job")  # make leads the session
    external = inspect_external(env, images)
    check_eq([(e["outside_holder"], e["queued_bytes"], sorted(o["end"] for o in e["owners"])) for e in external],
             [(make, 3, ["read", "write"])], "what inspect says of make's jobserver")
    status = reap([make], timeout=30, what="make after its job was dumped")[make]
    log(f"make: {exit_status_text(status)}")
    rc, _ = restore_with(env, images, "--shell-job")
    check_eq(rc, 0, "exit code of cryo restore")
    trigger(env, pid, report, expect, "tokens 3")


def case_shell_job_inherit(env):
    """A shell job's stdout pipe: --shell-job keeps re-attaching it to cryo restore's
    stdout, and --inherit-fd hands over another pipe in its place."""
    r, w = os.pipe()
    pid, ready, report, expect = start(env, "writer", [1], stdout=w)
    os.close(w)
    check_eq(os.read(r, 6), b"hello\n", "what the writer wrote before the dump")
    images = dump(env, pid, "--shell-job")
    os.close(r)
    external = inspect_external(env, images)
    check_eq([(e["key"], e["kind"]) for e in external], [(f"pipe:[{ready['ino']}]", "shell job's pipe")],
             "what inspect says of the shell job's stdout")
    r2, w2 = os.pipe()
    rc, _ = restore_with(env, images, "--shell-job", f"--inherit-fd=fd[{w2}]:pipe:[{ready['ino']}]", pass_fds=(w2,))
    check_eq(rc, 0, "exit code of cryo restore --shell-job --inherit-fd")
    os.close(w2)
    check_eq(os.readlink(f"/proc/{pid}/fd/1"), f"pipe:[{os.fstat(r2).st_ino}]", "fd 1 of the restored shell job")
    trigger(env, pid, report, expect, "write via-the-shell-job")
    check_eq(read_to_eof(r2), b"via-the-shell-job", "what this test read from the pipe it handed over")
    os.close(r2)


def case_tty_inherit(env):
    """A shell job's terminal named tty[RDEV:DEV]: --inherit-fd puts another terminal in
    its place."""
    master, slave = os.openpty()
    st = os.fstat(slave)
    key = "tty[%x:%x]" % (st.st_rdev, st.st_dev)
    pid, ready, report, expect = start(env, "writer", [1], stdout=slave)
    os.close(slave)
    images = dump(env, pid, "--shell-job")
    external = inspect_external(env, images)
    check_eq([(e["key"], e["kind"]) for e in external], [(key, "shell job's terminal")],
             "what inspect says of the shell job's terminal")
    master2, slave2 = os.openpty()
    rc, _ = restore_with(env, images, "--shell-job", f"--inherit-fd=fd[{slave2}]:{key}", pass_fds=(slave2,))
    check_eq(rc, 0, "exit code of cryo restore --shell-job --inherit-fd")
    check_eq(os.readlink(f"/proc/{pid}/fd/1"), os.ttyname(slave2), "fd 1 of the restored shell job")
    os.close(slave2)
    trigger(env, pid, report, expect, "write via-the-terminal")
    read_until(master2, b"via-the-terminal")
    for fd in (master, master2):
        os.close(fd)


def case_external_tty(env):
    """CRIU's --external tty[RDEV:DEV]: a terminal outside the tree held without
    --shell-job (refused without the flag, the key suggested) is dumped as external;
    the restore refuses to go without another in its place, naming the key, and takes
    the one --inherit-fd hands over."""
    master, slave = os.openpty()
    st = os.fstat(slave)
    key = "tty[%x:%x]" % (st.st_rdev, st.st_dev)
    pid, ready, report, expect = start(env, "writer", [1], stdout=slave)
    os.close(slave)
    images = env.path("images")
    refused = env.dump(pid, images, expect=1)
    check(f"--external {key}" in refused.stderr, f"the refusal does not suggest --external {key}: {refused.stderr!r}")
    images = dump(env, pid, "--external", key)
    external = inspect_external(env, images)
    check_eq([(e["key"], e["kind"]) for e in external], [(key, "external terminal")],
             "what inspect says of the external terminal")
    rc, stderr = restore_with(env, images)
    check_eq(rc, 1, "exit code of a restore without the terminal handed over")
    check(f"--inherit-fd fd[N]:{key}" in stderr, f"the refusal does not name {key}: {stderr.strip()!r}")
    master2, slave2 = os.openpty()
    rc, _ = restore_with(env, images, f"--inherit-fd=fd[{slave2}]:{key}", pass_fds=(slave2,))
    check_eq(rc, 0, "exit code of cryo restore --inherit-fd")
    check_eq(os.readlink(f"/proc/{pid}/fd/1"), os.ttyname(slave2), "fd 1 of the restored process")
    os.close(slave2)
    trigger(env, pid, report, expect, "write via-the-external-terminal")
    read_until(master2, b"via-the-external-terminal")
    for fd in (master, master2):
        os.close(fd)


def case_stdio_handover(env):
    """What a container runtime does: a shell loop whose stdin, stdout and stderr are
    pipes this test holds (a shim's) is dumped, and restored with three new pipes
    handed over by --inherit-fd; it answers a line sent through the new stdin on the
    new stdout and stderr, and ends with status 0 at the new stdin's end of file."""
    script = 'while read line; do echo "out $line"; echo "err $line" >&2; done'
    (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
    proc = subprocess.Popen(["sh", "-c", script], stdin=in_r, stdout=out_w, stderr=err_w, start_new_session=True)
    _POPENS.append(proc)
    pid = proc.pid
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    os.write(in_w, b"before\n")
    check_eq(os.read(out_r, 100), b"out before\n", "the loop's answer before the dump")
    check_eq(os.read(err_r, 100), b"err before\n", "the loop's error line before the dump")
    keys = [f"pipe:[{os.fstat(fd).st_ino}]" for fd in (in_w, out_r, err_r)]
    images = dump(env, pid)
    external = inspect_external(env, images)
    check_eq(sorted((e["key"], [(o["fd"], o["end"]) for o in e["owners"]]) for e in external),
             sorted([(keys[0], [(0, "read")]), (keys[1], [(1, "write")]), (keys[2], [(2, "write")])]),
             "what inspect says of the shell's stdio")
    for fd in (in_w, out_r, err_r):
        os.close(fd)
    (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
    given = (in_r, out_w, err_w)
    rc, _ = restore_with(env, images, *[f"--inherit-fd=fd[{fd}]:{key}" for fd, key in zip(given, keys)],
                         pass_fds=given)
    check_eq(rc, 0, "exit code of cryo restore with the new stdio")
    for fd in given:
        os.close(fd)
    os.write(in_w, b"after\n")
    os.close(in_w)
    status = reap([pid], timeout=20, what="the shell loop at the end of its new stdin").get(pid)
    check_eq(read_to_eof(out_r), b"out after\n", "what the restored loop wrote on its new stdout")
    check_eq(read_to_eof(err_r), b"err after\n", "what the restored loop wrote on its new stderr")
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          f"the restored loop ended with {exit_status_text(status) if status is not None else 'nothing we reaped'}")
    os.close(out_r)
    os.close(err_r)


def case_file_inherit(env):
    """A regular file named as CRIU names it, its path without the leading slash: the
    restored process writes into the file this test opened instead of its old one."""
    old_path, new_path = env.path("old.log"), env.path("new.log")
    fd = os.open(old_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid, ready, report, expect = start(env, "writer", [fd])
    os.close(fd)
    images = dump(env, pid)
    new = os.open(new_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rc, _ = restore_with(env, images, f"--inherit-fd=fd[{new}]:{old_path.lstrip('/')}", pass_fds=(new,))
    check_eq(rc, 0, "exit code of cryo restore --inherit-fd")
    os.close(new)
    check_eq(os.readlink(f"/proc/{pid}/fd/{fd}"), new_path, f"fd {fd} of the restored process")
    trigger(env, pid, report, expect, "write into-the-new-file")
    check_eq(read_text(old_path), "hello\n", "the old file")
    check_eq(read_text(new_path), "into-the-new-file", "the file handed over")


if __name__ == "__main__":
    run({"writer_epipe": case_writer_epipe, "reader_eof": case_reader_eof, "writer_inherit": case_writer_inherit,
         "reader_inherit": case_reader_inherit, "jobserver": case_jobserver,
         "make_jobserver": case_make_jobserver, "shell_job_inherit": case_shell_job_inherit,
         "tty_inherit": case_tty_inherit, "file_inherit": case_file_inherit,
         "foreground_closes_given_fd": case_foreground_closes_given_fd, "external_tty": case_external_tty,
         "stdio_handover": case_stdio_handover})
