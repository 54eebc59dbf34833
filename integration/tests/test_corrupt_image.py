#!/usr/bin/env python3
"""A truncated or corrupted image is refused: exit code 1 (not a crash), a message
naming the broken file, no task left behind, the image not modified. `cryo inspect`
does not crash on it either. The pristine image still restores. `large`: the same for a
byte flipped in an image whose checksums are tested on every CPU."""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, descendants, exists, hash_dir, log, reap, run,  # noqa: E402
                     snapshot, wait_progress)


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def dumped_counter(env, *args):
    """A counter (with these options) dumped: (pid, its report file, its tree before, images)."""
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, *args])
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    before = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    return pid, report, before, images


def case_corrupt(env):
    pid, report, before, images = dumped_counter(env, "--mib", "8", "--child")
    files = sorted(os.listdir(images))
    log(f"image files: {files}")
    core = f"core-{pid}.img"
    mm = f"mm-{pid}.img"
    for name in ("inventory.img", "tree.img", "pages.img", core, mm):
        check(name in files, f"the image has no {name}")
    pages_size = os.path.getsize(os.path.join(images, "pages.img"))
    core_size = os.path.getsize(os.path.join(images, core))

    variants = [  # (name, file the message must name, mutation)
        ("pages.img truncated to half", "pages.img", lambda d: truncate(os.path.join(d, "pages.img"), pages_size // 2)),
        ("pages.img byte flipped", "pages.img", lambda d: flip(os.path.join(d, "pages.img"), 4096 + pages_size // 3)),
        (f"{core} byte flipped", core, lambda d: flip(os.path.join(d, core), core_size // 2)),
        (f"{core} truncated", core, lambda d: truncate(os.path.join(d, core), core_size - 5)),
        (f"{mm} missing", mm, lambda d: os.remove(os.path.join(d, mm))),
        ("inventory.img truncated", "inventory.img", lambda d: truncate(os.path.join(d, "inventory.img"), 10)),
        ("tree.img empty", "tree.img", lambda d: truncate(os.path.join(d, "tree.img"), 0)),
    ]
    problems = []
    for i, (what, names, mutate) in enumerate(variants):
        bad = env.path(f"bad-{i}")
        shutil.copytree(images, bad)
        mutate(bad)
        hashes = hash_dir(bad)
        mine = set(descendants(os.getpid()))
        result, _ = env.restore(bad, expect=None)
        new = set(descendants(os.getpid())) - mine
        try:
            reap(new, timeout=5, what="tasks left behind")
        except Exception as e:  # noqa: BLE001 - reported below
            problems.append(f"{what}: {e}")
        if result.returncode != 1:
            problems.append(f"{what}: restore exit code {result.returncode}, want 1")
        if names not in result.stderr:
            problems.append(f"{what}: the error does not name {names}: {result.stderr.strip()!r}")
        for p in before:
            if exists(p):
                problems.append(f"{what}: pid {p} exists after the refused restore")
        if hash_dir(bad) != hashes:
            problems.append(f"{what}: the refused restore modified the image")
        inspect = env.cryo("inspect", bad, expect=None)
        if inspect.returncode not in (0, 1):
            problems.append(f"{what}: cryo inspect exit code {inspect.returncode}")
        if inspect.returncode == 0 and "pages.img byte flipped" != what:
            problems.append(f"{what}: cryo inspect accepted the broken image")
        reap([p for p in before if exists(p)], timeout=5, kill=True)
        shutil.rmtree(bad)
    check(not problems, "\n  ".join(["corrupted images:"] + problems))

    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid from the pristine image")
    compare_snapshots(before, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


def case_large(env):
    """Enough pages that their checksums are tested on every CPU (16 MiB and more): a byte
    flipped in the last pages, or in the first, is found all the same, before any task."""
    pid, report, before, images = dumped_counter(env, "--mib", "48")
    pages = os.path.join(images, "pages.img")
    size = os.path.getsize(pages)
    check(size > 40 << 20, f"pages.img has {size} bytes, want the 48 MiB")
    for where in (size - 4096 - 100, 4096 + 100):
        bad = env.path(f"bad-{where}")
        shutil.copytree(images, bad)
        flip(os.path.join(bad, "pages.img"), where)
        mine = set(descendants(os.getpid()))
        result, _ = env.restore(bad, expect=None)
        reap(set(descendants(os.getpid())) - mine, timeout=5, what="tasks left behind")
        check_eq(result.returncode, 1, f"restore of the image with byte {where} of pages.img flipped")
        check("pages.img: checksum mismatch" in result.stderr, f"the error names the mismatch: {result.stderr.strip()!r}")
        check(not exists(pid), f"pid {pid} exists after the refused restore")
        shutil.rmtree(bad)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid from the pristine image")
    compare_snapshots(before, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"corrupt": case_corrupt, "large": case_large})
