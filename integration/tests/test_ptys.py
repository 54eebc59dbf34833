#!/usr/bin/env python3
"""Terminals of the tree's own (a /dev/ptmx master in the tree, as script, tmux or an
sshd session hold it). The pty workload checks from inside, after restore, that its
pair is the same /dev/pts/N with its settings, that the bytes queued both ways are
there exactly once (output, echo, whole lines, a line ended by VEOF or VEOL and an
unfinished one), and that its job is still in the foreground of its session's
controlling terminal and reads what the master types. `script` and tmux run real
programs on terminals of their own. What cannot be saved is refused, naming pid and fd."""
import fcntl
import os
import shutil
import struct
import subprocess
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, log, progress, read_text, reap, run, snapshot, state,  # noqa: E402
                     wait_progress, wait_until)

TIOCGPTN = 0x80045430


def start_pty(env, *flags):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("pty"), ready, report, prog, *flags])
    info = env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    return pid, info, report, prog


def restore_and_report(env, pid, report, images):
    tree = snapshot(pid)
    env.dump(pid, images)
    env.wait_dumped(tree)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_session(env):
    """A session leader with the slave as controlling terminal, its job in the foreground,
    bytes queued both ways: dump (-R first: the bytes read must go back), kill, restore."""
    pid, info, report, prog = start_pty(env)
    images = env.path("images-R")
    env.dump(pid, images, "-R")
    count = progress(prog)[0]
    wait_progress(prog, count + 3)
    restore_and_report(env, pid, report, env.path("images"))


def case_leave_running(env):
    """dump -R reads the queued bytes and puts them back: the tree running on sees them once."""
    pid, info, report, prog = start_pty(env)
    env.dump(pid, env.path("images"), "-R")
    env.dump(pid, env.path("images2"), "-R")
    env.trigger_and_report(pid, report)


def case_packet(env):
    """The same with the master in packet mode."""
    pid, info, report, prog = start_pty(env, "--packet")
    restore_and_report(env, pid, report, env.path("images"))


def case_closed_slave(env):
    """A master whose slave was closed (its program exited, as a dead tmux pane): the
    output it left is read after restore, then EIO."""
    pid, info, report, prog = start_pty(env, "--closed")
    restore_and_report(env, pid, report, env.path("images"))


def case_index_taken(env):
    """The pts number is taken by another terminal when the restore comes: it fails,
    naming /dev/pts/N, and leaves nothing behind; once it is free the restore works."""
    pid, info, report, prog = start_pty(env)
    index = info["index"]
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(tree)
    held = []
    try:
        while True:
            fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
            held.append(fd)
            got = struct.unpack("I", fcntl.ioctl(fd, TIOCGPTN, b"\0\0\0\0"))[0]
            if got >= index:
                break
        check_eq(got, index, "the pts number this test took")
        result, _ = env.restore(images, expect=1)
        check(f"/dev/pts/{index}" in result.stderr and "in use" in result.stderr,
              f"the refusal does not name /dev/pts/{index}: {result.stderr.strip()!r}")
        check(state(pid) is None, f"pid {pid} is left after a failed restore")
    finally:
        for fd in held:
            os.close(fd)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def refused(env, pid, prog, words):
    result = env.dump(pid, env.path("images"), expect=1)
    for word in words:
        check(word in result.stderr, f"the refusal does not say {word!r}: {result.stderr.strip()!r}")
    count = progress(prog)[0]
    wait_progress(prog, count + 3)  # it runs on
    return result


def case_never_opened(env):
    """A master whose slave was never opened: refused (what is queued for the slave
    cannot be read without opening it), naming pid and fd; the tree runs on."""
    pid, info, report, prog = start_pty(env, "--fresh")
    refused(env, pid, prog, [f"pid {pid} fd 3", "never been opened"])
    os.kill(pid, 9)


def case_slave_outside(env):
    """The slave is open in a process outside the tree: refused, naming it."""
    pid, info, report, prog = start_pty(env, "--unlocked")
    fd = os.open(f"/dev/pts/{info['index']}", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        refused(env, pid, prog, [f"pid {pid} fd 3", f"pid {os.getpid()}", "outside the tree"])
    finally:
        os.close(fd)
    env.trigger_and_report(pid, report)


CONSOLE_HOLDER = """
import os, sys, time
ready, report, prog = sys.argv[1:4]
fd = os.open("/dev/console", os.O_WRONLY | os.O_NOCTTY)
open(ready + ".tmp", "w").write(f"READY fd={fd}\\n")
os.rename(ready + ".tmp", ready)
i = 0
while True:
    i += 1
    open(prog + ".tmp", "w").write(f"{i}\\n")
    os.rename(prog + ".tmp", prog)  # never seen empty by the test
    time.sleep(0.02)
"""


def case_console(env):
    """/dev/console is the machine's, not the tree's: refused, naming pid and fd, with the reason."""
    pid, info, report, prog = env.start_python(CONSOLE_HOLDER, "console")
    wait_progress(prog, 2)
    refused(env, pid, prog, [f"pid {pid} fd {info['fd']}", "console of the machine"])
    os.kill(pid, 9)


def case_script(env):
    """util-linux script running a program on a terminal of its own: the program
    (a counter in a loop) goes on after restore with its /dev/pts/N, and what it
    prints still reaches script's output file through the master."""
    check(shutil.which("script"), "script (util-linux) is not installed")
    out = env.path("typescript")
    loop = ("i=0; while :; do echo tick $i; tty > " + env.path("tty") + "; i=$((i+1)); sleep 0.1; done")
    pid = env.spawn(["script", "-q", "-f", "-c", loop, out])
    wait_until(lambda: read_text(env.path("tty")), 10, what="the program's tty")
    pts = read_text(env.path("tty")).strip()
    check(pts.startswith("/dev/pts/"), f"the program's terminal is {pts!r}")
    wait_until(lambda: (read_text(out, "") or "").count("tick") > 3, 10, what="ticks in the typescript")
    images = env.path("images")
    env.dump(pid, images)
    env.reap_tree_of(pid)
    ticks = read_text(out, "").count("tick")
    # Emptied, not removed: a dump that caught `tty > FILE` between its open and its exit
    # saved that fd, and the restore opens the file again by its path.
    open(env.path("tty"), "w").close()
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    wait_until(lambda: read_text(out, "").count("tick") > ticks + 5, 10, what="new ticks after restore")
    wait_until(lambda: (read_text(env.path("tty"), "") or "").strip(), 10, what="the program's tty after restore")
    check_eq(read_text(env.path("tty"), "").strip(), pts, "the program's terminal after restore")
    text = read_text(out, "")
    numbers = [int(w.split()[1]) for w in text.replace("\r", "").splitlines() if w.startswith("tick ")]
    check(numbers == list(range(numbers[0], numbers[0] + len(numbers))),
          f"ticks were lost or repeated: {numbers[-20:]}")
    os.kill(pid, 9)


def case_tmux(env):
    """A tmux server with a detached session: its pane's program (a shell loop reading
    lines) comes back on the same /dev/pts/N with its window size; a line typed before
    the dump but not finished is finished after it and read whole, once."""
    check(shutil.which("tmux"), "tmux is not installed")
    tmux = ["tmux", "-S", env.path("tmux.sock"), "-f", "/dev/null"]

    def call(*args):
        return subprocess.run(tmux + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=10).stdout

    program = 'while read -r l; do echo "got:$l $(stty size) $(tty)"; done'
    call("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", program)
    server = int(call("display-message", "-p", "#{pid}").strip())
    try:
        def pane():
            return call("capture-pane", "-p", "-t", "t")
        call("send-keys", "-t", "t", "before", "Enter")
        wait_until(lambda: "got:before" in pane(), 10, what="the pane's first answer")
        line = [x for x in pane().splitlines() if x.startswith("got:before")][0]
        check(line.startswith("got:before 30 100 /dev/pts/"), f"the pane answered {line!r}")
        pts = line.split()[-1]
        call("send-keys", "-t", "t", "queued")
        wait_until(lambda: "queued" in pane(), 10, what="the echo of the unfinished line")
        images = env.path("images")
        env.dump(server, images)
        env.reap_tree_of(server)
        _, rpid = env.restore(images)
        check_eq(rpid, server, "restored tmux server")
        call("send-keys", "-t", "t", " more", "Enter")
        wait_until(lambda: "got:queued more" in pane(), 10, what="the pane's answer after restore")
        answers = [x for x in pane().splitlines() if x.startswith("got:")]
        check_eq(answers, ["got:before 30 100 " + pts, "got:queued more 30 100 " + pts], "the pane's answers")
        check_eq(call("display-message", "-p", "#{pane_width}x#{pane_height}").strip(), "100x30", "pane size")
    finally:
        call("kill-server")


CONTAINER = r"""
set -e
R={root}
mkdir -p $R/usr $R/proc $R/dev $R/tmp $R{tmp} $R{workloads}
for d in bin sbin lib lib64; do ln -s usr/$d $R/$d; done
mount --bind $R $R
mount --bind /usr $R/usr
mount -t tmpfs -o mode=755 tmpfs $R/dev
mkdir $R/dev/pts
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $R/dev/pts
ln -s pts/ptmx $R/dev/ptmx
mknod -m 666 $R/dev/null c 1 3
mknod -m 666 $R/dev/tty c 5 0
mount -t proc proc $R/proc
mount --bind {tmp} $R{tmp}
mount --bind {workloads} $R{workloads}
cd $R
pivot_root . .
umount -l .
exec {workload} {ready} {report} {progress}
"""


def case_own_devpts(env):
    """A container (its own pid and mount namespaces, pivoted into a rootfs) with a devpts of
    its own, where the pty workload makes its pair: restored, the pair is made again in the
    container's new devpts, with the same /dev/pts/N there, its settings and queued bytes."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    workload = env.workload("pty")
    script = env.path("container.sh")
    with open(script, "w") as f:
        f.write(CONTAINER.format(root=env.path("rootfs"), tmp=env.dir, workloads=os.path.dirname(workload),
                                 workload=workload, ready=ready, report=report, progress=prog))
    outer = env.spawn(["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "setsid", "sh", script],
                      name="unshare")
    wait_until(lambda: os.path.exists(ready) and read_text(ready), 20, what="the workload in the container")
    root = int(read_text(f"/proc/{outer}/task/{outer}/children").split()[0])
    master_dev = os.stat(f"/proc/{root}/root/dev/pts/ptmx").st_dev
    check(master_dev != os.stat("/dev/pts/ptmx").st_dev, "the container's devpts is not the host's")
    wait_progress(prog, 2)
    images = env.path("images")
    env.dump(root, images)
    reap([outer, root], what="unshare and the dumped container")
    _, host = env.restore(images)
    check(os.stat(f"/proc/{host}/root/dev/pts/ptmx").st_dev != os.stat("/dev/pts/ptmx").st_dev,
          "the restored container has a devpts of its own")
    env.trigger_and_report(host, report)


if __name__ == "__main__":
    run({"session": case_session, "leave_running": case_leave_running, "packet": case_packet,
         "closed_slave": case_closed_slave, "index_taken": case_index_taken, "never_opened": case_never_opened,
         "slave_outside": case_slave_outside, "console": case_console, "script": case_script,
         "tmux": case_tmux, "own_devpts": case_own_devpts})
