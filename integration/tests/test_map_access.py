#!/usr/bin/env python3
"""A shared file mapping keeps what it may become, not only what it is: a file opened
read-write and mapped MAP_SHARED with PROT_READ may be mprotect()ed to PROT_WRITE later
(VM_MAYWRITE), and its writes reach the file. After a restore the same mprotect must
still work, so the file is reopened read-write; one opened read-only stays read-only."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check_eq, run, snapshot  # noqa: E402

PROGRAM = r'''
import ctypes, errno, mmap, os, signal, sys, time
ready, report, _ = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1
work = os.path.dirname(ready)
triggered = []
signal.signal(signal.SIGUSR1, lambda *_: triggered.append(1))

def shared_view(name, flags):
    path = os.path.join(work, name)
    with open(path, "wb") as f:
        f.write(b"." * 4096)
    fd = os.open(path, flags)
    addr = libc.mmap(None, 4096, PROT_READ, MAP_SHARED, fd, 0)
    os.close(fd)  # only the mapping holds the file now
    return path, addr

rw_path, rw = shared_view("rw.bin", os.O_RDWR)
ro_path, ro = shared_view("ro.bin", os.O_RDONLY)
with open(ready, "w") as f:
    f.write(f"READY pid={os.getpid()}\n")
while not triggered:
    time.sleep(0.02)
problems = []
if libc.mprotect(rw, 4096, PROT_READ | PROT_WRITE) != 0:
    problems.append("mprotect(PROT_WRITE) of the read-write file's mapping: " + os.strerror(ctypes.get_errno()))
else:
    ctypes.memmove(rw, b"written after the restore", 25)
    libc.msync(ctypes.c_void_p(rw), ctypes.c_size_t(4096), 4)
    if not open(rw_path, "rb").read().startswith(b"written after the restore"):
        problems.append("the write through the mapping did not reach the file")
if libc.mprotect(ro, 4096, PROT_READ | PROT_WRITE) == 0:
    problems.append("the read-only file's shared mapping became writable")
elif ctypes.get_errno() != errno.EACCES:
    problems.append("mprotect of the read-only file's mapping: " + os.strerror(ctypes.get_errno()))
with open(report, "w") as f:
    f.write("OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")
'''


def case_mprotect_after_restore(env):
    pid, _, report, _ = env.start_python(PROGRAM, "map_access")
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"mprotect_after_restore": case_mprotect_after_restore})
