#!/usr/bin/env python3
"""fds at the top of the fd limit. The restorer holds a copy of every file while it
builds the tree, at numbers no process of the image uses: above them where the limit
leaves room, else in the widest gap between them (core/files/fd_zone.h). A process that
keeps its fds just below RLIMIT_NOFILE, as valgrind does, comes back with the same fd
table, working; one that leaves no room at all is refused before any task exists; a
program running under valgrind goes on counting."""
import os
import resource
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, exists, fd_table, log, progress, read_text, run,  # noqa: E402
                     snapshot, state, wait_progress, wait_until)

# Its log and a pipe at the last numbers the hard limit allows, its soft limit then
# lowered below them (allowed: a limit bounds new fds only). It counts through the log
# fd and sends each count around the pipe; on SIGUSR1 it checks both and its limit.
TOP_OF_LIMIT = r'''
import os, resource, signal, sys, time
ready, report, progress_path = sys.argv[1:4]
fill = len(sys.argv) > 4
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
LOG, PIPE_R, PIPE_W = hard - 1, hard - 3, hard - 2
fd = os.open(progress_path, os.O_WRONLY | os.O_CREAT, 0o644)
os.dup2(fd, LOG)
os.close(fd)
r, w = os.pipe()
os.dup2(r, PIPE_R)
os.dup2(w, PIPE_W)
os.close(r)
os.close(w)
if fill:  # every other number taken too, but for a gap of two
    spare = os.open("/dev/null", os.O_RDONLY)
    for n in range(3, LOG):
        if n not in (spare, PIPE_R, PIPE_W, 10, 11):
            os.dup2(spare, n, inheritable=False)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))
with open(ready + ".tmp", "w") as f:
    f.write(f"READY log={LOG} pipe_r={PIPE_R} pipe_w={PIPE_W}\n")
os.replace(ready + ".tmp", ready)
count, problems = 0, []
while not triggered:
    count += 1
    os.write(PIPE_W, count.to_bytes(4, "little"))
    back = int.from_bytes(os.read(PIPE_R, 4), "little")
    if back != count:
        problems.append(f"the pipe gave {back} for {count}")
        break
    text = f"{count}\n".encode()
    os.pwrite(LOG, text.ljust(16), 0)
    time.sleep(0.01)
if resource.getrlimit(resource.RLIMIT_NOFILE) != (1024, hard):
    problems.append(f"RLIMIT_NOFILE is {resource.getrlimit(resource.RLIMIT_NOFILE)}")
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
sys.exit(1 if problems else 0)
'''


def case_top_of_limit(env):
    pid, info, report, prog = env.start_python(TOP_OF_LIMIT, "top")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    check_eq(info["log"], hard - 1, "the log's fd (the last one the limit allows)")
    before_count = wait_progress(prog, 20)
    before, fds = snapshot(pid), fd_table(pid)
    check(min(n for n in fds if n > 2) >= hard - 3, f"pid {pid} has fds below the top: {sorted(fds)}")
    env.round_trip(pid, before)
    env.soft(check_eq, fd_table(pid), fds, "fd table")
    after = wait_progress(prog, max(progress(prog)[0], before_count) + 20)
    log(f"counted {before_count} before the dump, {after} after")
    env.trigger_and_report(pid, report)


def case_no_room(env):
    """Every number below the limit taken but two: the restorer cannot hold its files
    and pipes anywhere. Refused before any task exists, the image as it was."""
    pid, info, report, prog = env.start_python(TOP_OF_LIMIT.replace("fill = len(sys.argv) > 4", "fill = True"), "full")
    wait_progress(prog, 5)
    before = snapshot(pid)
    check(len(fd_table(pid)) > info["log"] - 8, f"pid {pid} did not fill its fd table")
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    kept = {name: read_text(os.path.join(images, name), "") for name in ("inventory.img",)}
    result, _ = env.restore(images, expect=1)
    message = result.stderr.strip()
    check("no fd number is free for the restorer between 10 and 12" in message,
          f"the refusal does not say where the restorer found no room: {message!r}")
    check(not exists(pid) or state(pid) == "Z", f"pid {pid} exists after the refused restore ({state(pid)})")
    check_eq({name: read_text(os.path.join(images, name), "") for name in kept}, kept, "the image after the refusal")


def case_valgrind(env):
    """perl counting under valgrind's memcheck, whose own fds sit at the top of the
    fd limit and whose memory is laid out its own way, goes on counting."""
    valgrind = shutil.which("valgrind")
    check(valgrind is not None, "valgrind is not installed (make test-deps installs it)")
    out = env.path("count")
    counter = "$| = 1; my $i = 0; while (1) { print ++$i, qq(\\n); select(undef, undef, undef, 0.05) }"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # valgrind takes the numbers at the top of the soft limit for its own.
    with open(out, "wb") as f:
        # (--vgdb=no: no FIFOs of its gdb server, which a killed valgrind leaves in /tmp)
        pid = env.spawn([valgrind, "-q", "--vgdb=no", "--tool=memcheck", "perl", "-e", counter], stdout=f,
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)))

    def counts():
        return [int(x) for x in read_text(out, "").split()]
    wait_until(lambda: len(counts()) >= 5, 120, what="perl under valgrind to count")
    def fds_now():  # (its stdout's position moves on as it counts)
        return {fd: (target, flags) for fd, (target, _, flags) in fd_table(pid).items()}
    before, fds = snapshot(pid), fds_now()
    check(max(fds) > hard - 100, f"valgrind's fds are not at the top of the limit ({hard}): {sorted(fds)}")
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    last = counts()[-1]
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(check_eq, fds_now(), fds, "fd table")
    wait_until(lambda: len(counts()) >= last + 5, 60, what="five counts after the restore")
    check_eq(counts()[last:last + 5], list(range(last + 1, last + 6)), "counts after the restore")


if __name__ == "__main__":
    run({"top_of_limit": case_top_of_limit, "no_room": case_no_room, "valgrind": case_valgrind})
