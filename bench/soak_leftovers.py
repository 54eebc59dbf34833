"""What cryo may leave on the machine, for bench/soak.py: network-lock tables and rules, mounts,
cgroups, /run/cryo entries, temp dirs and processes of the cryo binary."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "integration", "lib"))
import harness  # noqa: E402

LOCK_TAG = re.compile(r"cryo-lock-(\d+)-\d+")


def command_lines(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return []


def lock_tables():
    return [line.split()[-1] for line in command_lines(["nft", "list", "tables"]) if "cryo-lock-" in line]


def lock_rules():
    return [f"{tool} {line}" for tool in ("iptables", "ip6tables")
            for line in command_lines([tool, "-w", "-S"]) if "cryo-lock-" in line]


def cgroups(root="/sys/fs/cgroup", depth=3):
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        level = dirpath[len(root):].count("/")
        found += [os.path.join(dirpath, d) for d in dirnames if "cryo" in d]
        if level >= depth - 1:
            dirnames[:] = []
    return found


def run_entries():
    found = []
    for dirpath, dirnames, filenames in os.walk("/run/cryo"):
        found += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return found


def temp_entries():
    """cryo-named entries of the temp dirs, but the test harness's and the benchmarks' own
    (the soak checks its own dirs itself)."""
    found = []
    for where in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            names = os.listdir(where)
        except OSError:
            continue
        found += [os.path.join(where, n) for n in names
                  if "cryo" in n and not n.startswith(("cryo-it-", "cryo-bench-", "cryo-soak-"))]
    return found


def cryo_processes(binary):
    """{pid: command line} of the processes running the cryo binary (its guards exec it again
    as "cryo guard ...")."""
    found = {}
    for pid in harness.all_pids():
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        cmdline = (harness.read_bytes(f"/proc/{pid}/cmdline") or b"").split(b"\0")
        if exe == binary or cmdline[0].decode(errors="replace") == binary:
            found[pid] = b" ".join(cmdline).decode(errors="replace").strip()
    return found


def machine_state():
    return {"mounts": [line for line in (harness.read_text("/proc/mounts") or "").splitlines() if "cryo" in line],
            "cgroups": cgroups(), "run_cryo": run_entries(), "temp": temp_entries()}


def ours(names, cryo_pids):
    """The lock tables or rules that one of cryo_pids made (the tag names its pid)."""
    return [n for n in names if (m := LOCK_TAG.search(n)) and int(m.group(1)) in cryo_pids]


def remove_locks(tables, rules):
    for table in tables:
        subprocess.run(["nft", "delete", "table", "inet", table], stderr=subprocess.DEVNULL)
    for rule in rules:
        tool, spec = rule.split(" ", 1)
        subprocess.run([tool, "-w", *re.sub(r"^-A ", "-D ", spec).split()], stderr=subprocess.DEVNULL)
