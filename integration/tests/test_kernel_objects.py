#!/usr/bin/env python3
"""Kernel objects and kinds of memory that CRIU saves: fanotify groups, BPF maps, AIO
rings, MADV_GUARD_INSTALL guard regions, membarrier registrations, huge pages (hugetlb
memfds, MAP_HUGETLB mappings, SHM_HUGETLB segments),
private mappings of shared objects, a process without a vDSO. Each comes back working
(the workload checks from inside after the restore), or, for what cannot be saved as
it is (fanotify events not yet read, BPF programs, AIO requests in flight), the dump
is refused naming the pid and the fd or mapping, and the process runs on untouched."""
import contextlib
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (TestFailure, check, check_eq, compare_maps, compare_snapshots, fd_table, log, maps,  # noqa
                     read_text, run, snapshot, state, status_fields, tids, wait_until)


@contextlib.contextmanager
def tmpfs(path):
    """A small tmpfs of the test's own at path (fanotify mount marks must see no one else)."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "cryo-kobjects", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


@contextlib.contextmanager
def huge_pages(count):
    """At least `count` free 2 MiB huge pages; the old nr_hugepages is put back."""
    knob = "/proc/sys/vm/nr_hugepages"
    old = int(read_text(knob).strip())
    free = int(read_text("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").strip())
    if free < count:
        with open(knob, "w") as f:
            f.write(str(old + count - free))
    try:
        yield
    finally:
        with open(knob, "w") as f:
            f.write(str(old))


def start(env, kind, workdir=None):
    ready, report = env.path("ready"), env.path("report")
    argv = [env.workload("kobjects"), ready, report, kind] + ([workdir] if workdir else [])
    pid = env.spawn(argv)
    return pid, env.wait_ready(ready, pid), report


def fdinfo_lines(pid, fd, prefix):
    if fd < 0:
        return []
    return [line for line in read_text(f"/proc/{pid}/fdinfo/{fd}", "").splitlines() if line.startswith(prefix)]


def round_trip(env, kind, workdir=None, compare_layout=True, fdinfo_prefix=None):
    """Dump, restore, and the workload's own verdict; with fdinfo_prefix, the lines of
    the object fd's fdinfo that start with it must be the same after restore."""
    pid, info, report = start(env, kind, workdir)
    before = snapshot(pid)
    layout, fds = maps(pid), fd_table(pid)
    fdinfo = fdinfo_lines(pid, info["object_fd"], fdinfo_prefix) if fdinfo_prefix else []
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(before)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.soft(compare_snapshots, before, snapshot(pid), pid)
    if compare_layout:
        env.soft(compare_maps, layout, maps(pid), "layout")
    env.soft(check_eq, fd_table(pid), fds, "fd table")
    if fdinfo_prefix:
        check(fdinfo, f"no {fdinfo_prefix!r} lines in the fdinfo of fd {info['object_fd']}")
        env.soft(check_eq, fdinfo_lines(pid, info["object_fd"], fdinfo_prefix), fdinfo, "fdinfo of the object")
    env.trigger_and_report(pid, report)
    return info


def refused(env, kind, wants, workdir=None, where=None):
    """The dump fails with exit 1 naming the pid, the fd (or `where`, a function of the
    workload's READY fields) and each of `wants`; the process runs on exactly as it was."""
    pid, info, report = start(env, kind, workdir)
    before = snapshot(pid)
    layout, fds = maps(pid), fd_table(pid)
    images = env.path("images")
    result = env.dump(pid, images, expect=1)
    message = result.stderr.strip()
    for want in [f"pid {pid}", where(info) if where else f"fd {info['object_fd']}"] + wants:
        check(want in message, f"the refusal does not say {want!r}: {message!r}")
    check(not os.path.exists(os.path.join(images, "inventory.img")), "a refused dump left an inventory.img")
    check(state(pid) not in (None, "T", "t", "Z"), f"after the refusal pid {pid} is in state {state(pid)}")
    check_eq(status_fields(pid, keys=("TracerPid",)).get("TracerPid"), "0", "TracerPid after the refusal")
    compare_snapshots(before, snapshot(pid), pid)
    compare_maps(layout, maps(pid), "layout after the refusal")
    check_eq(fd_table(pid), fds, "fd table after the refusal")
    env.trigger_and_report(pid, report)


def case_membarrier(env):
    """Private expedited and sync-core membarrier registrations are made again."""
    info = round_trip(env, "membarrier")
    check(info["registrations"] != 0, "the workload registered nothing")


def case_no_vdso(env):
    """A process that unmapped its [vdso] and [vvar] comes back without them."""
    round_trip(env, "no_vdso")


def case_guard(env):
    """MADV_GUARD_INSTALL guard pages (in memory with data, and in memory never
    touched) still fault after restore, and the pages around them keep their data."""
    round_trip(env, "guard")


def case_sealed(env):
    """mseal()ed mappings (read-write and read-only, with data) are sealed again after
    restore: mprotect and munmap fail with EPERM as before; the one between them is not."""
    round_trip(env, "sealed")


def case_dispatch(env):
    """Syscall user dispatch (as Wine uses it) is on again after restore: a syscall made
    with the selector set to block raises SIGSYS."""
    round_trip(env, "dispatch")


def case_dispatch_blocked(env):
    """A thread whose dispatch blocks syscalls as the tree is frozen (cryo's own would
    raise SIGSYS in it) is refused, naming it; the process runs on as it was."""
    refused(env, "dispatch_blocked", ["syscall user dispatch blocks syscalls"],
            where=lambda info: f"tid {info['tid']}")


def case_secret_fd(env):
    """memfd_secret memory, whose pages no other process can read, is refused: its fd..."""
    refused(env, "secret_fd", ["memfd_secret memory is not supported"])


def case_secret_map(env):
    """... or, the fd closed, its mapping."""
    refused(env, "secret_map", ["memfd_secret memory is not supported"],
            where=lambda info: f"mapping {info['secret']}-")


def case_fanotify(env):
    """A fanotify group: its flags (nonblocking, O_RDWR event fds), an inode mark, a
    mount mark and an ignored mask all work after restore."""
    with tmpfs(env.path("mnt")) as mnt:
        round_trip(env, "fanotify", mnt, fdinfo_prefix="fanotify")


def case_fanotify_queued(env):
    """A fanotify group with an event not yet read is refused."""
    with tmpfs(env.path("mnt")) as mnt:
        refused(env, "fanotify_queued", ["fanotify", "not yet read"], mnt)


def case_bpf_map(env):
    """BPF array, hash, per-cpu array and LRU hash maps come back with their type, sizes,
    flags, name and contents; a frozen map stays frozen."""
    round_trip(env, "bpf_map")


def case_bpf_prog(env):
    """A loaded BPF program is refused by name."""
    refused(env, "bpf_prog", ["BPF program", "cryo_prog"])


def case_hugetlb_memfd(env):
    """A memfd of huge pages keeps its data in huge pages, shared with its mapping."""
    with huge_pages(4):
        round_trip(env, "hugetlb_memfd")


def case_hugetlb_anon(env):
    """Anonymous huge pages (MAP_HUGETLB), private and shared, keep their data, their
    2 MiB pages and their name; a huge page never touched stays empty."""
    with huge_pages(4):
        round_trip(env, "hugetlb_anon")


def case_sysv_huge(env):
    """A System V segment of huge pages (SHM_HUGETLB), attached and removed, in the host's
    IPC namespace: data, size and 2 MiB pages come back."""
    with huge_pages(2):
        round_trip(env, "sysv_huge")


def case_sysv_huge_ns(env):
    """The same in an IPC namespace of the tree's own, with a second segment of huge pages
    made by key and detached: both come back with their data, in huge pages."""
    # Twice what the segments use: the dumped tree's IPC namespace, and its huge pages, go
    # some time after its last process (the kernel frees a namespace from a work queue).
    with huge_pages(6):
        ready, report = env.path("ready"), env.path("report")
        pid = env.spawn(["unshare", "--ipc", env.workload("kobjects"), ready, report, "sysv_huge", "ns"],
                        name="kobjects")
        info = env.wait_ready(ready, pid)
        check(info["loose"] >= 0, "no detached segment was made")
        before = snapshot(pid)
        images = env.path("images")
        env.dump(pid, images)
        env.wait_dumped(before)
        _, rpid = env.restore(images)
        check_eq(rpid, pid, "restored pid")
        env.trigger_and_report(pid, report)


def case_private_shm(env):
    """A memfd and a /dev/shm file mapped MAP_PRIVATE: privately written pages keep
    their data, the others still show the file."""
    try:
        round_trip(env, "private_shm")
    finally:
        for name in os.listdir("/dev/shm"):
            if name.startswith("cryo-kobjects-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join("/dev/shm", name))


def case_private_anon(env):
    """MAP_PRIVATE views of shared anonymous objects (made through /proc/self/map_files):
    pages written in a view keep its data (zeros too), the others show the object, whose
    later writes (by the process, or by a child that maps it shared) show through them;
    an object only a view maps comes back with it; the views are private after restore."""
    round_trip(env, "private_anon")


def case_private_huge(env):
    """The same with a shared object of huge pages: the view's written huge page is its own,
    the other shows the object and its later writes; the view is still of huge pages."""
    with huge_pages(6):
        round_trip(env, "private_huge")


def case_aio(env):
    """Two AIO contexts keep their ids (the rings' addresses) and the completions not yet
    reaped (in the second, reaped from user space, they wrap around the ring's end), and
    take new requests after restore; a child forked after io_setup has neither."""
    work = env.path("work")
    os.mkdir(work)
    round_trip(env, "aio", work)


def case_aio_inflight(env):
    """An AIO context with a poll request in flight is refused, naming the pid, the context
    and the number in flight; the process runs on, its completions not reaped still there."""
    work = env.path("work")
    os.mkdir(work)
    pid, info, report = start(env, "aio_inflight", work)
    before = snapshot(pid)
    layout = maps(pid)
    result = env.dump(pid, env.path("images"), expect=1)
    message = result.stderr.strip()
    for want in (f"pid {pid}", "AIO", f"{info['aio_ctx']:x}", "1 request is in flight"):
        check(want in message, f"the refusal does not say {want!r}: {message!r}")
    compare_snapshots(before, snapshot(pid), pid)
    compare_maps(layout, maps(pid), "layout after the refusal")
    check_eq(status_fields(pid, keys=("TracerPid",)).get("TracerPid"), "0", "TracerPid after the refusal")
    env.trigger_and_report(pid, report)


CRYO_TAG = 0x6372796f2d61696f  # io_event.data of cryo's own AIO requests ("cryo-aio")


def ring(pid, ctx):
    """An AIO ring seen from outside: (nr, head, tail, the completions not reaped)."""
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(ctx)
        _, nr, head, tail = struct.unpack("4I", mem.read(16))
        events = []
        for i in range((tail - head) % nr if nr else 0):
            mem.seek(ctx + 32 + ((head + i) % nr) * 32)
            events.append(mem.read(32).hex())
    return nr, head, tail, events


def aio_state(pid, contexts):
    """What a dump killed while it counts AIO requests must leave as it was: the rings,
    the fds, the layout, and for each thread its CPUs, its signal mask, no tracer, no stop,
    not parked (in pause())."""
    threads = {}
    for tid in tids(pid):
        fields = status_fields(pid, tid, keys=("State", "TracerPid", "SigBlk"))
        syscall = (read_text(f"/proc/{pid}/task/{tid}/syscall") or "").split(" ")[0]
        threads[tid] = (sorted(os.sched_getaffinity(tid)), fields.get("SigBlk"), fields.get("TracerPid"),
                        fields.get("State", "")[:1] in ("T", "t"), syscall == "34")
    return {"rings": {hex(ctx): ring(pid, ctx) for ctx in contexts}, "fds": fd_table(pid), "maps": maps(pid),
            "threads": threads}


def state_diff(before, now):
    lines = []
    for key in before:
        if before[key] != now[key]:
            lines.append(f"{key}: before {before[key]}\n    now {now[key]}")
    for r in now["rings"].values():
        if any(int.from_bytes(bytes.fromhex(e)[:8], "little") == CRYO_TAG for e in r[3]):
            lines.append("a ring holds completions of cryo's")
    return lines


def case_aio_killed(env):
    """cryo dump killed (SIGKILL) at every step while it counts AIO requests in flight (its
    failpoints and each of its remote syscalls): the guard puts the process back exactly as
    it was (rings, completions not reaped, fds, layout, every thread's CPUs and signal mask,
    no thread parked), and a thread of it watching its rings all along never sees them
    change; it then finds exactly its own completions, and so does its restored copy."""
    work = env.path("work")
    os.mkdir(work)
    pid, info, report = start(env, "aio_watch", work)
    contexts = [info["aio_ctx"], info["aio_ctx2"]]
    before = aio_state(pid, contexts)
    check(len(before["threads"]) == 2, f"the workload has threads {sorted(before['threads'])}")
    images = env.path("killed")
    os.makedirs(images)
    step, kills = 0, []
    while True:
        step += 1
        # Without -R: its copy while the tree runs has steps of its own to kill.
        name, _ = env.dump_killed_at(pid, images, step)
        if name == "aio.counted":
            break
        kills.append(name)
        try:
            wait_until(lambda: aio_state(pid, contexts) == before, 10, what=f"the process as before a kill at {name}")
        except TestFailure:
            raise TestFailure(f"cryo dump killed at step {step} ({name}) left pid {pid} changed:\n  " +
                              "\n  ".join(state_diff(before, aio_state(pid, contexts))))
    counting = kills[kills.index("aio.guarded"):] if "aio.guarded" in kills else []
    log(f"dump killed at {len(kills)} steps, {len(counting)} of them in the count: {' '.join(counting)}")
    check(len(counting) > 10 and "aio.parked" in counting and "aio.count" in counting and
          "remote.syscall" in counting, f"the kills missed the count: {kills}")
    # The process dumps (-R: it runs on), then checks from inside that io_getevents gives
    # exactly its own completions and that a new request completes alone (the kernel's
    # tail is where it was); the image restores, and the restored process checks the same.
    images = env.path("images")
    env.dump(pid, images, "-R")
    env.trigger_and_report(pid, report)
    os.unlink(report)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"membarrier": case_membarrier, "no_vdso": case_no_vdso, "guard": case_guard, "sealed": case_sealed,
         "secret_fd": case_secret_fd, "secret_map": case_secret_map, "dispatch": case_dispatch,
         "dispatch_blocked": case_dispatch_blocked,
         "fanotify": case_fanotify, "fanotify_queued": case_fanotify_queued, "bpf_map": case_bpf_map, "bpf_prog": case_bpf_prog,
         "hugetlb_memfd": case_hugetlb_memfd, "hugetlb_anon": case_hugetlb_anon, "sysv_huge": case_sysv_huge,
         "sysv_huge_ns": case_sysv_huge_ns, "private_shm": case_private_shm, "private_anon": case_private_anon, "private_huge": case_private_huge, "aio": case_aio,
         "aio_inflight": case_aio_inflight, "aio_killed": case_aio_killed})
