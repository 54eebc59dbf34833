"""subreaper.py SCRIPT ARGS...: runs `bash SCRIPT ARGS...` as the child of a process that
is a child subreaper, so that a tree `cryo restore -d` leaves behind is reparented to it
and reaped (bash cannot become one itself). Exits with the script's status."""
import ctypes
import os
import sys

if ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("cannot become a child subreaper")
os.environ["CRYO_DEMO_REAPER"] = "1"
child = os.fork()
if child == 0:
    os.execvp("bash", ["bash"] + sys.argv[1:])
while True:
    pid, status = os.wait()
    if pid == child:
        sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
