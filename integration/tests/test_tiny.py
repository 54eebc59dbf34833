#!/usr/bin/env python3
"""A tiny process (sleep) costs a dump and a restore little beyond starting cryo:
neither loads OpenSSL or the C++ runtime as shared libraries (libssl and libcrypto
come with dlopen when TLS or a sha256 is needed), neither runs another program for a
tree without sockets (no network lock, no guard), and the dump faults in only the
page buffer it fills (not 8 MiB buffers whole). Counts, not times: a loaded machine
says nothing reliable about milliseconds (bench/bench.py measures those). The
restored sleep must still be the sleep it was."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import _POPENS, check, check_eq, log, read_text, run, snapshot, state  # noqa: E402

# Shared libraries a tiny dump or restore has no use for.
UNWANTED = ("libssl", "libcrypto", "libstdc++", "libarchive")
# A dump of sleep faults in ~500 pages here; populating a whole page buffer
# (2048 pages apiece) took it over 2700.
MAX_DUMP_FAULTS = 1500
# The ptrace resumptions (steps, syscall stops, continues) a restore of sleep
# makes: 29 here with its mmaps, munmaps and mprotects run in batches, 66 when
# each was a step of its own.
MAX_RESTORE_RESUMES = 45


def traced(env, name, strace_args, cryo_args):
    """Runs cryo under strace; returns (exit code, the trace's lines)."""
    out = env.path(name + ".strace")
    err = env.path(name + ".err")
    with open(err, "wb") as e:
        proc = subprocess.Popen(["strace", "-qq", *strace_args, "-o", out, env.cryo_path, *map(str, cryo_args)],
                                stdin=subprocess.DEVNULL, stdout=e, stderr=e)
        _POPENS.append(proc)
        rc = proc.wait(timeout=120)
    lines = (read_text(out) or "").splitlines()
    log(f"strace {' '.join(strace_args)} cryo {' '.join(map(str, cryo_args))} -> {rc}; {len(lines)} lines; "
        f"stderr {read_text(err, '').strip()[-300:]!r}")
    return rc, lines


def check_libraries(lines, what):
    opened = [line for line in lines if "openat(" in line and ".so" in line and "ENOENT" not in line]
    for lib in UNWANTED:
        bad = [line for line in opened if lib in line]
        check(not bad, f"{what} loads {lib}: {bad[:2]}")


def case_lean(env):
    pid = env.spawn(["sleep", "1000"])
    before = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    # -f: every program the dump runs shows as an execve.
    rc, lines = traced(env, "dump", ["-f", "-e", "trace=execve,openat"], ["dump", "-t", pid, "-D", images])
    check_eq(rc, 0, "exit code of the dump under strace")
    check_libraries(lines, "a dump of sleep")
    execs = [line for line in lines if "execve(" in line]
    check_eq(len(execs), 1, f"programs run by a dump of sleep (cryo itself only): {execs}")
    env.wait_dumped(before)
    # Not -f: cryo must trace the stubs itself.
    pidfile = env.path("restore.pid")
    rc, lines = traced(env, "restore", ["-e", "trace=openat"], ["restore", "-D", images, "-d", "--pidfile", pidfile])
    check_eq(rc, 0, "exit code of the restore under strace")
    check_libraries(lines, "a restore of sleep")
    check_eq(int(read_text(pidfile).strip()), pid, "restored pid")
    check_eq(read_text(f"/proc/{pid}/comm", "").strip(), "sleep", "comm of the restored process")
    check_eq(state(pid), "S", "state of the restored sleep")


def case_dump_faults(env):
    pid = env.spawn(["sleep", "1000"])
    before = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    proc = subprocess.Popen([env.cryo_path, "dump", "-t", str(pid), "-D", images], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _POPENS.append(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    log(f"dump of sleep: exit {proc.returncode}, {usage.ru_minflt} minor faults, max RSS {usage.ru_maxrss} KiB, "
        f"stderr {proc.stderr.read().decode(errors='replace').strip()[-300:]!r}")
    check_eq(proc.returncode, 0, "exit code of the dump")
    check(usage.ru_minflt < MAX_DUMP_FAULTS,
          f"a dump of sleep took {usage.ru_minflt} page faults (want < {MAX_DUMP_FAULTS}): page buffers populated whole?")
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")


def case_restore_round_trips(env):
    pid = env.spawn(["sleep", "1000"])
    before = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    env.dump(pid, images)
    env.wait_dumped(before)
    pidfile = env.path("restore.pid")
    rc, lines = traced(env, "restore", ["-e", "trace=ptrace"], ["restore", "-D", images, "-d", "--pidfile", pidfile])
    check_eq(rc, 0, "exit code of the restore under strace")
    resumes = [line for line in lines if any(r in line for r in ("PTRACE_SINGLESTEP", "PTRACE_SYSCALL", "PTRACE_CONT"))]
    log(f"a restore of sleep resumed its stub {len(resumes)} times")
    check(len(resumes) <= MAX_RESTORE_RESUMES,
          f"a restore of sleep resumed its stub {len(resumes)} times (want <= {MAX_RESTORE_RESUMES}): "
          "a round trip per remote syscall?")
    check_eq(int(read_text(pidfile).strip()), pid, "restored pid")
    check_eq(read_text(f"/proc/{pid}/comm", "").strip(), "sleep", "comm of the restored process")
    check_eq(state(pid), "S", "state of the restored sleep")


def case_lazy_descriptors(env):
    # Each .proto of cryo registered its descriptor from a static initializer
    # named dynamic_init_dummy_<file>, parsed at every start: none is left.
    out = subprocess.run(["nm", env.cryo_path], capture_output=True, text=True, timeout=120)
    check_eq(out.returncode, 0, f"nm {env.cryo_path}: {out.stderr.strip()[-300:]}")
    ours = [line.split()[-1] for line in out.stdout.splitlines()
            if "dynamic_init_dummy_" in line and "google_2fprotobuf" not in line]
    log(f"static descriptor registrations of cryo's own protos: {ours}")
    check(not ours, f"cryo registers its descriptors at every start: {ours}")


if __name__ == "__main__":
    run({"lean": case_lean, "dump_faults": case_dump_faults, "restore_round_trips": case_restore_round_trips,
         "lazy_descriptors": case_lazy_descriptors})
