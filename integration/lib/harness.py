"""Shared harness for cryo's end-to-end tests (Python 3 standard library only).

A test script defines cases as functions taking an Env and calls run(CASES). The
harness makes the test process a child subreaper, so that everything a test starts
and everything cryo restores stays its descendant; it reaps whatever it kills, so that
a PID is free again before a restore needs it; and it removes its temp dirs.

Environment: CRYO (the binary), CRYO_WORKLOADS (the built C workloads). Both default
to the paths of a build in <repo>/build. CRYO_OVERRIDE, when set, wins over CRYO.
"""

import argparse
import ctypes
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# CRYO_OVERRIDE beats the CRYO that ctest sets: run the suite against another binary
# (e.g. a copy that a concurrent rebuild cannot replace mid-run).
CRYO = os.environ.get("CRYO_OVERRIDE") or os.environ.get("CRYO") or os.path.join(REPO, "build", "runtime", "cryo")
WORKLOADS = os.environ.get("CRYO_WORKLOADS") or os.path.join(REPO, "build", "integration", "workloads")

PR_SET_CHILD_SUBREAPER = 36
WALL = 0x40000000  # __WALL: wait for threads' and clone children too
_libc = ctypes.CDLL(None, use_errno=True)
_T0 = time.monotonic()
# Popen objects are kept forever: a dropped one lands on subprocess's _active list
# and gets waitpid()ed behind our back, possibly after its PID went to a restored task.
_POPENS = []


class TestFailure(Exception):
    pass


def log(message):
    print(f"[{time.monotonic() - _T0:7.3f}] {message}", flush=True)


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def check_eq(got, want, what):
    if got != want:
        if isinstance(got, dict) and isinstance(want, dict):
            diff = {k: (got.get(k, "<missing>"), want.get(k, "<missing>")) for k in sorted(set(got) | set(want), key=str)
                    if got.get(k, "<missing>") != want.get(k, "<missing>")}
            raise TestFailure(f"{what}: differs in (got, want): {diff!r}")
        raise TestFailure(f"{what}: got {got!r}, want {want!r}")


def become_subreaper():
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(e)}")


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ---- /proc -------------------------------------------------------------------------------

def read_text(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return default


def read_bytes(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return default


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def exists(pid):
    return os.path.exists(f"/proc/{pid}")


def proc_stat(pid, tid=None):
    """state, ppid, pgid, sid and comm of a task, or None if it is gone."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    text = read_text(path)
    if not text:
        return None
    lparen, rparen = text.index("("), text.rindex(")")
    fields = text[rparen + 2:].split()
    return {
        "comm": text[lparen + 1:rparen],
        "state": fields[0],
        "ppid": int(fields[1]),
        "pgid": int(fields[2]),
        "sid": int(fields[3]),
    }


def state(pid):
    st = proc_stat(pid)
    return st["state"] if st else None


def tids(pid):
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def page_files(images):
    """The paths of an image's page files (pages.img, pages-1.img...), sorted."""
    return sorted(os.path.join(images, n) for n in os.listdir(images) if re.fullmatch(r"pages(-\d+)?\.img", n))


def page_files_size(images):
    """The bytes of an image's page files, headers included."""
    return sum(os.path.getsize(f) for f in page_files(images))


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root):
    """PIDs of every process below root (not root itself), by ppid links."""
    parent = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            parent[pid] = st["ppid"]
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            out.append(child)
            pending.append(child)
    return out


# /proc/PID/stat fields (1-based) the kernel keeps per mm: they must come back as they were.
MM_STAT_FIELDS = {26: "startcode", 27: "endcode", 28: "startstack", 45: "start_data", 46: "end_data",
                  47: "start_brk", 48: "arg_start", 49: "arg_end", 50: "env_start", 51: "env_end"}


def mm_fields(pid):
    text = read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3
    return {name: int(fields[n - 3]) for n, name in MM_STAT_FIELDS.items() if n - 3 < len(fields)}


def snapshot(root):
    """The tree below and including root: pid -> ppid, pgid, sid, state, comm, tids, thread
    names, each thread's tracer (a restore must leave none behind), and the mm fields of
    /proc/PID/stat (start_brk, arg_start, ...)."""
    tree = {}
    for pid in [root] + descendants(root):
        st = proc_stat(pid)
        if not st:
            continue
        ts = tids(pid)
        names, tracers = {}, {}
        for t in ts:
            tst = proc_stat(pid, t)
            if tst:
                names[t] = tst["comm"]
            tracers[t] = status_fields(pid, t, keys=("TracerPid",)).get("TracerPid")
        tree[pid] = dict(st, tids=ts, thread_names=names, tracers=tracers, mm=mm_fields(pid))
    return tree


def compare_snapshots(before, after, root):
    """Fails unless the restored tree has the same tasks, threads, parents, groups,
    sessions, names, and zombies/stopped tasks in the same places."""
    problems = []
    if set(before) != set(after):
        problems.append(f"pids {sorted(before)} became {sorted(after)}")
    for pid in sorted(set(before) & set(after)):
        b, a = before[pid], after[pid]
        for key in ("pgid", "sid", "comm", "tids", "thread_names", "tracers", "mm"):
            if b[key] != a[key]:
                problems.append(f"pid {pid}: {key} {b[key]!r} became {a[key]!r}")
        if pid != root and b["ppid"] != a["ppid"]:
            problems.append(f"pid {pid}: ppid {b['ppid']} became {a['ppid']}")
        for special, name in (("Z", "zombie"), ("T", "stopped")):
            if (b["state"] == special) != (a["state"] == special):
                problems.append(f"pid {pid}: state {b['state']} became {a['state']} ({name})")
    check(not problems, "restored tree differs:\n  " + "\n  ".join(problems))


def _normalize_map_path(path):
    if path.startswith("/dev/zero") or path.startswith("/memfd:") or path.startswith("/SYSV"):
        return "[shared-anon]"
    # The kernel labels any anonymous VMA that overlaps [start_brk, brk) "[heap]", so when
    # the bss and the heap VMAs merge on restore the label spreads; start_brk and brk are
    # compared on their own (snapshot's mm fields).
    if path == "[heap]":
        return ""
    return path


def maps(pid):
    """/proc/PID/maps as (start, end, perms, path), adjacent equal entries merged
    (anonymous VMAs may merge differently when recreated)."""
    out = []
    for line in (read_text(f"/proc/{pid}/maps") or "").splitlines():
        parts = line.split(None, 5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        path = _normalize_map_path(parts[5].strip() if len(parts) > 5 else "")
        if out and out[-1][1] == start and out[-1][2] == parts[1] and out[-1][3] == path:
            out[-1] = (out[-1][0], end, parts[1], path)
        else:
            out.append((start, end, parts[1], path))
    return out


def compare_maps(before, after, what):
    if before == after:
        return
    b, a = set(before), set(after)
    fmt = lambda m: f"{m[0]:x}-{m[1]:x} {m[2]} {m[3]}"
    lines = [f"- {fmt(m)}" for m in sorted(b - a)] + [f"+ {fmt(m)}" for m in sorted(a - b)]
    raise TestFailure(f"{what}: memory layout differs (- before, + after):\n  " + "\n  ".join(lines[:40]))


# VmFlags of /proc/PID/smaps that a restore must bring back (madvise and mlock state):
# rr/sr random/sequential read, dc dontfork, de dontexpand, lo locked, gd growsdown,
# hg/nh (no)hugepage, wf wipeonfork, dd dontdump, mg mergeable, nr MAP_NORESERVE.
VMA_FLAGS = {"rr", "sr", "dc", "de", "lo", "gd", "hg", "nh", "wf", "dd", "mg", "nr"}


def vma_flags(pid):
    """[(start, end, flags)] of every VMA, flags limited to VMA_FLAGS."""
    out, current = [], None
    for line in (read_text(f"/proc/{pid}/smaps") or "").splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            current = [start, end]
        elif line.startswith("VmFlags:") and current:
            out.append((current[0], current[1], frozenset(line.split()[1:]) & VMA_FLAGS))
            current = None
    return out


def compare_vma_flags(before, after, what):
    """Each VMA of before must lie in VMAs of after with the same flags."""
    problems = []
    for start, end, flags in before:
        covering = [(s, e, f) for s, e, f in after if s < end and e > start]
        for s, e, f in covering:
            if f != flags:
                problems.append(f"{start:x}-{end:x}: {sorted(flags)} became {sorted(f)} (at {s:x}-{e:x})")
                break
    check(not problems, f"{what}: VMA flags differ:\n  " + "\n  ".join(problems[:20]))


def fd_table(pid):
    """fd -> (target, pos, flags); pipe and socket inode numbers are dropped."""
    table = {}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return table
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        target = re.sub(r"^(pipe|socket):\[\d+\]$", r"\1", target)
        info = read_text(f"/proc/{pid}/fdinfo/{fd}", "")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        table[int(fd)] = (target, fields.get("pos", "").strip(), fields.get("flags", "").strip())
    return table


def status_fields(pid, tid=None, keys=("SigBlk", "SigPnd", "ShdPnd", "SigIgn", "SigCgt", "Umask", "NoNewPrivs",
                                       "CapEff", "CapPrm", "CapBnd", "Seccomp")):
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    out = {}
    for line in (read_text(path) or "").splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = value.strip()
    return out


def hash_dir(path):
    """name -> sha256 of every file below path (and the mode of each entry), but for
    stats-restore.json: the report a restore that succeeded leaves in its work
    directory (the image's by default, as CRIU's stats-restore), not part of the image."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            if name == "stats-restore.json" and dirpath == path:
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    out[rel] = (st.st_mode, hashlib.sha256(f.read()).hexdigest())
            else:
                out[rel] = (st.st_mode, None)
    return out


# ---- reaping ---------------------------------------------------------------------------------

def reap(pids, timeout=10.0, kill=False, what="tasks"):
    """Waits until none of pids exists any more, reaping the ones that are (or became)
    our children. With kill, SIGKILLs what is still alive. Returns pid -> wait status
    for those we reaped."""
    statuses = {}
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                got, status = os.waitpid(pid, os.WNOHANG | WALL)
                if got == pid:
                    statuses[pid] = status
            except ChildProcessError:
                pass
            if exists(pid):
                alive.append(pid)
        if not alive:
            return statuses
        if kill:
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if time.monotonic() > deadline:
            desc = ", ".join(f"{p} ({state(p)})" for p in alive)
            raise TestFailure(f"{what} still present after {timeout} s: {desc}")
        time.sleep(0.01)


def kill_descendants(timeout=10.0):
    """SIGKILLs and reaps everything below this process."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        left = descendants(me)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                got, _ = os.waitpid(-1, os.WNOHANG | WALL)
            except ChildProcessError:
                break
            if got == 0:
                break
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def exit_status_text(status):
    if os.WIFEXITED(status):
        return f"exit {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {status:#x}"


# ---- running things -------------------------------------------------------------------------

class CryoResult:
    def __init__(self, args, returncode, stdout, stderr, seconds, log_path):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr
        self.seconds, self.log_path = seconds, log_path

    def describe(self):
        text = f"`cryo {' '.join(self.args)}` -> {self.returncode} in {self.seconds:.3f} s"
        if self.stdout.strip():
            text += "\n  stdout: " + self.stdout.strip()[-2000:].replace("\n", "\n          ")
        if self.stderr.strip():
            text += "\n  stderr: " + self.stderr.strip()[-2000:].replace("\n", "\n          ")
        if self.log_path:
            tail = (read_text(self.log_path) or "").strip().splitlines()[-25:]
            if tail:
                text += "\n  log tail (" + self.log_path + "):\n    " + "\n    ".join(tail)
        return text


class Env:
    """One test case's world: a temp dir, the binaries, what it started."""

    def __init__(self, name, keep=False):
        self.name = name
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix=f"cryo-it-{name}-", dir=os.environ.get("CRYO_TEST_TMP", "/tmp"))
        self.cryo_path = CRYO
        self.workloads = WORKLOADS
        self._counter = 0
        self.logs = []  # files whose tails are shown on failure
        self.problems = []  # failures recorded by soft(); the case fails at its end
        self.keep_running = set()  # pids reap_tree_of must leave alone

    def soft(self, fn, *args, **kwargs):
        """Runs a check; a TestFailure is recorded instead of raised, so that the case
        goes on (and the workload still reports what it sees)."""
        try:
            return fn(*args, **kwargs)
        except TestFailure as e:
            log(f"problem: {e}")
            self.problems.append(str(e))
            return None

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, name, text):
        """Writes text to a file of the case's dir; returns its path."""
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def workload(self, name):
        path = os.path.join(self.workloads, name)
        check(os.access(path, os.X_OK), f"workload {path} is not built")
        return path

    def _unique(self, stem):
        self._counter += 1
        return f"{stem}-{self._counter}"

    # -- cryo --

    def cryo(self, *args, timeout=180, expect=0, log_name=None, stdin=None, env_extra=None):
        """Runs cryo with stdio in files (never pipes: a restored shell job inherits
        them). Adds -o LOG -v 4 when log_name is given. Fails when the exit code is not
        `expect` (None: any). env_extra adds environment variables; with CRYO_FAILPOINT
        among them, death by SIGKILL is an expected outcome. The result's
        out_path/err_path name its stdout/stderr."""
        check(os.access(self.cryo_path, os.X_OK), f"cryo binary {self.cryo_path} is not built")
        args = [str(a) for a in args]
        log_path = None
        if log_name:
            log_path = self.path(self._unique(log_name) + ".log")
            args += ["-o", log_path, "-v", "4"]
        out_path = self.path(self._unique("cryo") + ".out")
        err_path = out_path[:-4] + ".err"
        start = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([self.cryo_path] + args, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                    stdout=out, stderr=err, env={**os.environ, **(env_extra or {})})
            _POPENS.append(proc)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                tail = "\n    ".join((read_text(log_path, "") if log_path else "").strip().splitlines()[-15:])
                raise TestFailure(f"`cryo {' '.join(args)}` did not finish in {timeout} s (killed it)\n  stderr: "
                                  + (read_text(err_path) or "")[-2000:] + (f"\n  log tail:\n    {tail}" if tail else ""))
        result = CryoResult(args, rc, read_text(out_path, ""), read_text(err_path, ""), time.monotonic() - start,
                            log_path)
        result.out_path, result.err_path = out_path, err_path
        log(f"cryo {' '.join(args)} -> {rc} ({result.seconds:.3f} s)")
        if result.stderr.strip():
            log("  stderr: " + result.stderr.strip()[-600:].replace("\n", "\n          "))
        failpoint = env_extra and "CRYO_FAILPOINT" in env_extra and rc == -signal.SIGKILL
        if rc < 0 and not failpoint:
            raise TestFailure(f"cryo died of signal {-rc}:\n" + result.describe())
        if expect is not None and rc != expect:
            raise TestFailure(f"cryo exit code {rc}, want {expect}:\n" + result.describe())
        return result

    def dump(self, pid, images, *extra, expect=0, timeout=180):
        os.makedirs(images, exist_ok=True)
        return self.cryo("dump", "-t", pid, "-D", images, *extra, expect=expect, timeout=timeout, log_name="dump")

    def dump_killed_at(self, pid, images, step, *extra):
        """cryo dump killed by its own failpoint at `step` (CRYO_FAILPOINT=@STEP, or a
        failpoint's name): fails unless it died of SIGKILL; returns the failpoint's name,
        as its stderr tells it, and the result."""
        os.makedirs(images, exist_ok=True)
        point = step if isinstance(step, str) else f"@{step}"
        result = self.cryo("dump", "-t", pid, "-D", images, *extra, expect=None, env_extra={"CRYO_FAILPOINT": point})
        check_eq(result.returncode, -signal.SIGKILL, f"exit code of the dump with the failpoint {point}")
        self.wait_guards()
        where = re.search(r"failpoint (\S+)", result.stderr)
        return (where.group(1) if where else "?"), result

    def wait_guards(self, timeout=10):
        """After cryo was killed: its guard (`cryo guard`, now our child: we are a
        subreaper) puts the tree back, or finishes the job, and exits. Until then
        the tree may still hold what cryo made in it, or a thread parked. Waits
        for every such guard below us and reaps it."""
        def guards():
            found = []
            for pid in descendants(os.getpid()):
                argv = read_text(f"/proc/{pid}/cmdline", "").split("\0")
                if argv[1:2] == ["guard"] and os.path.basename(argv[0]).startswith("cryo"):
                    found.append(pid)
            return found
        reap(guards(), timeout=timeout, what="guards of a killed cryo")

    def restore(self, images, *extra, detached=True, expect=0, timeout=180, stdin=None, env_extra=None):
        """cryo restore [-d] --pidfile; returns (result, root pid from the pidfile)."""
        pidfile = self.path(self._unique("restore") + ".pid")
        args = ["restore", "-D", images, "--pidfile", pidfile] + (["-d"] if detached else []) + list(extra)
        result = self.cryo(*args, expect=expect, timeout=timeout, log_name="restore", stdin=stdin, env_extra=env_extra)
        pid = None
        text = read_text(pidfile)
        if text and text.strip().isdigit():
            pid = int(text.strip())
        return result, pid

    def cryo_background(self, *args):
        """Starts cryo without waiting; returns (Popen, stdout path, stderr path)."""
        return self.cryo_background_env(None, *args)

    def cryo_background_env(self, env_extra, *args):
        """cryo_background with variables added to the environment (None: none)."""
        check(os.access(self.cryo_path, os.X_OK), f"cryo binary {self.cryo_path} is not built")
        out_path = self.path(self._unique("cryo-bg") + ".out")
        err_path = out_path[:-4] + ".err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([self.cryo_path] + [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, env={**os.environ, **(env_extra or {})})
        _POPENS.append(proc)
        log(f"cryo {' '.join(str(a) for a in args)} & (pid {proc.pid})")
        return proc, out_path, err_path

    # -- workloads --

    def spawn(self, argv, name=None, setsid=True, cwd=None, env=None, stdin=None, stdout=None, stderr=None,
              preexec_fn=None):
        """Starts a process with stdin /dev/null and stdout/stderr in a file of the
        temp dir (or the given stdio); returns its pid. With setsid it leads its own
        session."""
        name = name or os.path.basename(argv[0])
        out_path = self.path(self._unique(name) + ".output")
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([str(a) for a in argv],
                                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                                    stdout=out if stdout is None else stdout,
                                    stderr=out if stderr is None else stderr,
                                    start_new_session=setsid, cwd=cwd, env=env, close_fds=True,
                                    preexec_fn=preexec_fn)
        _POPENS.append(proc)
        self.logs.append(out_path)
        shown = " ".join(str(a) if len(str(a)) <= 120 else repr(str(a)[:60]) + "..." for a in argv)
        log(f"started {shown} as {proc.pid}")
        self.last_popen = proc
        return proc.pid

    def start_python(self, program, name):
        """Runs a Python program with the arguments READY REPORT PROGRESS (paths in
        the temp dir) and waits for its READY; returns (pid, ready fields, report, progress)."""
        script = self.path(name + ".py")
        with open(script, "w") as f:
            f.write(program)
        ready, report, prog = self.path("ready"), self.path("report"), self.path("progress")
        pid = self.spawn([sys.executable, script, ready, report, prog], name=name)
        return pid, self.wait_ready(ready, pid), report, prog

    def wait_file(self, path, timeout=30, pid=None, what=None):
        """Waits for a file to exist and be non-empty; fails early when pid dies."""
        deadline = time.monotonic() + timeout
        while True:
            text = read_text(path)
            if text:
                return text
            if pid is not None and (not exists(pid) or state(pid) == "Z"):
                status = reap([pid], timeout=2).get(pid)
                raise TestFailure(f"pid {pid} ended ({exit_status_text(status) if status is not None else 'gone'}) "
                                  f"before writing {path}")
            if time.monotonic() > deadline:
                raise TestFailure(f"no {what or path} after {timeout} s")
            time.sleep(0.02)

    def wait_ready(self, path, pid, timeout=60):
        text = self.wait_file(path, timeout=timeout, pid=pid, what="READY")
        check(text.startswith("READY"), f"READY file holds {text!r}")
        return parse_ready(text)

    def trigger_and_report(self, pid, report, timeout=60, signo=signal.SIGUSR1):
        """Sends the trigger, waits for the report, reaps pid; fails unless "OK"."""
        log(f"trigger {pid}")
        os.kill(pid, signo)
        text = self.wait_file(report, timeout=timeout, pid=None, what=f"report of {pid}")
        statuses = reap([pid], timeout=timeout, what="workload after its report")
        check(text.startswith("OK"), f"workload {pid} reports: {text.strip()}")
        if pid in statuses:
            check(os.WIFEXITED(statuses[pid]) and os.WEXITSTATUS(statuses[pid]) == 0,
                  f"workload {pid} reported OK but ended with {exit_status_text(statuses[pid])}")
        return text

    def round_trip(self, pid, before, what="restored pid", compare=True):
        """Dumps the tree of pid (whose snapshot is `before`), waits until it is gone,
        restores it and checks it has the same pid (and, with compare, the same
        shape); returns the image dir."""
        images = self.path("images")
        self.dump(pid, images)
        self.wait_dumped(before)
        _, rpid = self.restore(images)
        check_eq(rpid, pid, what)
        if compare:
            self.soft(compare_snapshots, before, snapshot(pid), pid)
        return images

    def wait_dumped(self, tree, timeout=15):
        """After a dump without -R: every task of the tree must die by itself (cryo
        kills them) and be reaped, so that its PID is free for the restore."""
        root = min(tree, key=lambda p: 0 if tree[p]["ppid"] not in tree else 1)
        statuses = reap(list(tree), timeout=timeout, what="dumped tasks (cryo dump should have killed them)")
        if root in statuses:
            status = statuses[root]
            check(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                  f"dumped root {root} ended with {exit_status_text(status)}, want killed by SIGKILL")
        return statuses

    def reap_tree_of(self, root, timeout=15):
        """After a dump without -R of a tree whose shape we do not know (it changes all
        the time): root and everything below this test process must go away by itself."""
        reap([root], timeout=timeout, what="dumped root")
        deadline = time.monotonic() + timeout
        while True:
            left = [p for p in descendants(os.getpid()) if p not in self.keep_running]
            if not left:
                return
            reap(left, timeout=max(0.1, deadline - time.monotonic()),
                 what="tasks still running after the dump (they escaped the freeze?)")

    def cleanup(self, failed):
        left = kill_descendants()
        if failed:
            for path in self.logs:
                text = (read_text(path) or "").strip()
                if text:
                    print(f"--- {path} (tail) ---\n" + "\n".join(text.splitlines()[-30:]), flush=True)
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return left


def parse_ready(text):
    """'READY k=v k=v' -> {k: v} (ints where they are ints)."""
    out = {}
    for token in text.split()[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            continue
        try:
            out[key] = int(value, 0)
        except ValueError:
            out[key] = value
    return out


def progress(path):
    """The counters a workload publishes in its progress file."""
    text = read_text(path, "")
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        return []


def wait_progress(path, beyond, timeout=10, index=0):
    """Waits until counter `index` of a progress file exceeds `beyond`; returns it."""
    def advanced():
        values = progress(path)
        return values[index] if len(values) > index and values[index] > beyond else None
    return wait_until(advanced, timeout, what=f"counter {index} of {path} to pass {beyond}")


def _interrupted(signo, frame):
    raise KeyboardInterrupt()


def run(cases):
    """Runs the named cases (all by default); exits 0 when every one passed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", action="append", help="run only this case (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    parser.add_argument("--list", action="store_true")
    opts = parser.parse_args()
    if opts.list:
        print("\n".join(cases))
        return
    selected = opts.case or list(cases)
    unknown = [c for c in selected if c not in cases]
    if unknown:
        print(f"unknown case(s): {unknown}; have {list(cases)}", file=sys.stderr)
        sys.exit(2)
    become_subreaper()
    signal.signal(signal.SIGTERM, _interrupted)  # ctest's timeout: still clean up
    failures = []
    for name in selected:
        env = Env(name, keep=opts.keep)
        log(f"=== {name} (in {env.dir}; cryo {env.cryo_path})")
        failed = True
        try:
            cases[name](env)
            if env.problems:
                raise TestFailure(f"{len(env.problems)} problem(s):\n  " + "\n  ".join(env.problems))
            failed = False
        except TestFailure as e:
            log(f"FAIL {name}: {e}")
        except KeyboardInterrupt:
            log(f"INTERRUPTED {name}")
        except Exception:
            log(f"ERROR {name}:\n{traceback.format_exc()}")
        finally:
            left = env.cleanup(failed)
            if left:
                log(f"could not kill: {left}")
        if failed:
            failures.append(name)
        else:
            log(f"PASS {name}")
    if failures:
        log(f"{len(failures)} of {len(selected)} failed: {', '.join(failures)}")
        sys.exit(1)
