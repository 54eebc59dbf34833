#!/usr/bin/env python3
"""Command-line edge cases: what cryo must refuse cleanly (exit 1, a message, no harm
done) and a few odd but valid targets."""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import (check, check_eq, compare_snapshots, exists, log, progress, read_text, reap, run,  # noqa: E402
                     snapshot, state, wait_progress, wait_until)

PTRACE_TRACEME, PTRACE_CONT, PTRACE_DETACH = 0, 7, 17
libc = ctypes.CDLL(None, use_errno=True)


def start_counter(env, **kw):
    ready, report, prog = env.path("ready"), env.path("report"), env.path("progress")
    pid = env.spawn([env.workload("counter"), ready, report, prog, "--threads", "1"], **kw)
    return pid, ready, report, prog


def refused(env, *args, mention=None):
    result = env.cryo(*args, expect=1)
    check(result.stderr.strip(), f"`cryo {' '.join(map(str, args))}` failed without a message")
    if mention is not None:
        check(str(mention) in result.stderr, f"the message does not name {mention}: {result.stderr.strip()!r}")
    return result


def case_bad_arguments(env):
    refused(env, "dump", "-D", env.path("images"))  # no -t
    refused(env, "dump", "-t", "not-a-pid", "-D", env.path("images"), mention="not-a-pid")
    refused(env, "dump", "-t", "1", "-D", env.path("images"), "--no-such-option", mention="--no-such-option")
    refused(env, "restore", "-D", env.path("no-such-dir"), mention=env.path("no-such-dir"))
    empty = env.path("empty")
    os.mkdir(empty)
    refused(env, "restore", "-D", empty, mention="inventory")
    refused(env, "no-such-command", mention="no-such-command")


def case_missing_pid(env):
    pid = int(read_text("/proc/sys/kernel/pid_max")) - 1
    while exists(pid):
        pid -= 1
    refused(env, "dump", "-t", pid, "-D", env.path("images"), mention=pid)
    refused(env, "dump", "-t", 2, "-D", env.path("images2"), mention=2)  # kthreadd: a kernel thread


def case_zombie_root(env):
    pid = env.spawn(["true"])
    wait_until(lambda: state(pid) == "Z", 5, what="a zombie")
    refused(env, "dump", "-t", pid, "-D", env.path("images"), mention=pid)
    reap([pid])


def case_unwritable_images_dir(env):
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    blocker = env.path("a-file")
    open(blocker, "w").close()
    refused(env, "dump", "-t", pid, "-D", os.path.join(blocker, "images"))
    check(state(pid) not in (None, "T", "t", "Z"), f"pid {pid} is in state {state(pid)}")
    compare_snapshots(tree, snapshot(pid), pid)
    wait_progress(prog, progress(prog)[0] + 3)
    env.trigger_and_report(pid, report)


def case_own_ancestor(env):
    """cryo asked to dump a tree that contains cryo itself (its parent shell)."""
    script = env.path("self.sh")
    rc_file = env.path("rc")
    with open(script, "w") as f:
        f.write(f'"{env.cryo_path}" dump -t $$ -D "{env.path("images")}" 2>"{env.path("err")}"\n'
                f'echo $? > "{rc_file}"\nsleep 0.2\n')
    pid = env.spawn(["bash", script])
    env.wait_file(rc_file, timeout=30, what="the shell to get cryo's exit code (did cryo freeze itself?)")
    rc = int(read_text(rc_file).strip())
    log(f"cryo dump -t <its own parent> -> {rc}: {read_text(env.path('err'), '').strip()}")
    check_eq(rc, 1, "exit code of cryo dump of its own parent")
    reap([pid], timeout=10)


def case_stopped_root(env):
    """A root stopped by SIGSTOP comes back stopped, and SIGCONT resumes it."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: state(pid) == "T", 5, what="the root to stop")
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(tree)
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(tree, snapshot(pid), pid)
    seen = progress(prog)
    time.sleep(0.3)
    check_eq(progress(prog), seen, "counter of the restored, stopped root")
    os.kill(pid, signal.SIGCONT)
    wait_progress(prog, seen[0] + 3)
    env.trigger_and_report(pid, report)


def case_traced_by_other(env):
    """A tree already traced by another debugger (this test) is refused, naming the
    tracer, untouched."""
    def traceme():
        libc.ptrace(PTRACE_TRACEME, 0, None, None)
    pid, ready, report, prog = start_counter(env, preexec_fn=traceme)
    _, status = os.waitpid(pid, 0)  # the SIGTRAP stop after exec
    check(os.WIFSTOPPED(status), f"no exec stop ({status:#x})")
    check_eq(libc.ptrace(PTRACE_CONT, pid, None, None), 0, "PTRACE_CONT")
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    result = refused(env, "dump", "-t", pid, "-D", env.path("images"), mention=pid)
    check(f"is traced by pid {os.getpid()} (" in result.stderr, f"the refusal does not name the tracer: {result.stderr.strip()!r}")
    compare_snapshots(tree, snapshot(pid), pid)
    check_eq(read_text(f"/proc/{pid}/status").split("TracerPid:")[1].split()[0], str(os.getpid()), "TracerPid")
    wait_progress(prog, progress(prog)[0] + 3)
    # Let it go: a signal stop has to be passed on while we trace it.
    os.kill(pid, signal.SIGUSR1)
    _, status = os.waitpid(pid, 0)
    if os.WIFSTOPPED(status):
        libc.ptrace(PTRACE_DETACH, pid, None, ctypes.c_void_p(os.WSTOPSIG(status)))
    env.wait_file(report, what="report")
    reap([pid])
    check(open(report).read().startswith("OK"), f"report: {open(report).read().strip()}")


def case_shell_job_image_needs_flag(env):
    """An image dumped with --shell-job is refused by a restore without it."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "--shell-job")
    env.wait_dumped(tree)
    refused(env, "restore", "-D", images, "-d", mention="shell-job")
    for p in tree:
        check(not exists(p), f"the refused restore left pid {p} behind")
    _, rpid = env.restore(images, "--shell-job")
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_redump_same_dir(env):
    """Periodic checkpoints into one directory: the second dump -R replaces the first,
    and the restore continues from the second."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images, "-R")
    first = progress(prog)[0]
    wait_progress(prog, first + 30)
    second = progress(prog)[0]
    env.dump(pid, images, "-R")
    os.kill(pid, signal.SIGKILL)
    reap(list(tree), what="the original")
    _, rpid = env.restore(images)
    check_eq(rpid, pid, "restored pid")
    at_kill = progress(prog)[0]

    def moved_on():
        values = progress(prog)
        return values[0] if values and values[0] != at_kill else None
    restored = wait_until(moved_on, 10, what="the restored counter to publish")
    log(f"first dump at {first}, second at >= {second}, restored counter {restored}")
    check(restored >= second, f"the restore went on from {restored}, before the second dump ({second})")
    env.trigger_and_report(pid, report)


def case_image_moved(env):
    """An image directory can be moved (or copied) elsewhere before the restore."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    images = env.path("images")
    env.dump(pid, images)
    env.wait_dumped(tree)
    moved = env.path("elsewhere", "images")
    os.mkdir(env.path("elsewhere"))
    shutil.copytree(images, moved)
    shutil.rmtree(images)
    _, rpid = env.restore(moved)
    check_eq(rpid, pid, "restored pid")
    compare_snapshots(tree, snapshot(pid), pid)
    env.trigger_and_report(pid, report)


def case_vfork_parent(env):
    """A parent blocked in vfork() (its child sleeps before exec) cannot be stopped by
    ptrace: the dump must not hang. Either it works, or it is refused naming the pid,
    and the tree is left as it was."""
    ready = env.path("ready")
    pid = env.spawn([env.workload("vforker"), ready])
    env.wait_ready(ready, pid)
    tree = snapshot(pid)
    check_eq(sorted(t["state"] for t in tree.values()), ["D", "S"], "states of the vfork parent and child")
    result = env.dump(pid, env.path("images"), expect=None, timeout=30)
    log(f"dump of a vfork parent: exit {result.returncode}")
    if result.returncode != 0:
        check_eq(result.returncode, 1, "exit code of the refused dump")
        check(str(pid) in result.stderr, f"the refusal does not name pid {pid}: {result.stderr.strip()!r}")
        compare_snapshots(tree, snapshot(pid), pid)


VERBS = ["dump", "pre-dump", "restore", "check", "inspect", "network-unlock", "create", "start", "run", "state",
         "kill", "delete", "list", "ps", "exec", "pause", "resume", "events", "features", "spec", "update"]


def case_criu_command_line(env):
    """A dump and a restore written as a CRIU 4.2 user's script writes them: long and short
    spellings, values attached and apart, a configuration file, options before the verb."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    images, work = env.path("images"), env.path("work")
    os.mkdir(images)
    os.mkdir(work)
    config = env.path("criu.conf")
    with open(config, "w") as f:
        f.write("# options a CRIU configuration file would hold\nghost-fiemap\nghost-limit 8M\n")
    dump = env.cryo("-vv", "dump", "-t", pid, "-D", images, "-W", work, "-o", "dump.log", "--config", config,
                    "--file-locks", "-l", "--manage-cgroups", "--timeout", "20", "--network-lock=skip",
                    "--track-mem", "--cpu-cap=none", "--display-stats",
                    "--no-default-config", "--log-pid", "--ext-unix-sk", "--tcp-established", "--no-tcp-established",
                    "-L", "/usr/lib/criu", "--auto-dedup", "--deprecated",
                    "--skip-mnt", "/proc", "--enable-fs", "tmpfs", "-M", "/data:data", "--empty-ns", "net",
                    "--weak-sysctls", "--address", "127.0.0.1", "--port", "27027")
    env.wait_dumped(tree)
    check("dump statistics" in dump.stdout and "tasks: 1" in dump.stdout, f"--display-stats: {dump.stdout!r}")
    dump_log = read_text(os.path.join(work, "dump.log"), "")
    check("info: dump of pid" in dump_log, "no dump.log in the work directory")
    check(not os.path.exists(os.path.join(images, "dump.log")), "-o went into the image directory despite -W")
    restore = env.cryo("-vv", "restore", "--images-dir=" + images, "--work-dir", work, "--pidfile", "restore.pid",
                       "-dj", "--no-shell-job", "--file-locks", "--manage-cgroups=full",
                       "--weak-sysctls", "--skip-file-rwx-check", "--file-validation=buildid", "--root", "/",
                       "--external", "mnt[]:", "--mntns-compat-mode", "--display-stats", "--network-lock", "nftables",
                       "--veth-pair", "eth0=veth0", "--lsm-mount-context", "ctx", "--cgroup-yard", "/sys/fs/cgroup",
                       "--timeout", "20", "--skip-in-flight", "--page-server")
    check("restore statistics" in restore.stdout, f"--display-stats: {restore.stdout!r}")
    rpid = int(read_text(os.path.join(work, "restore.pid")).strip())
    check_eq(rpid, pid, "restored pid (from the pidfile in the work directory)")
    check("info: restored" in restore.stderr, "-vv (level 4) without a log file: no information on stderr")
    compare_snapshots(tree, snapshot(pid), pid)
    wait_progress(prog, progress(prog)[0] + 3)
    env.trigger_and_report(pid, report)


def case_criu_refused(env):
    """Options cryo cannot honour fail at once, naming the option, and leave the tree alone."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    wait_progress(prog, 2)
    tree = snapshot(pid)
    images = env.path("images")
    os.mkdir(images)
    dump = ["dump", "-t", pid, "-D", images]
    for extra, option in [(["-s"], "--leave-stopped"),
                          (["--link-remap"], "--link-remap"), (["--external", "file[12:345]"], "--external"),
                          (["--cpu-cap"], "--cpu-cap"), (["--cpu-cap=fpu"], "--cpu-cap"), (["--stream"], "--stream"),
                          (["-x1234"], "--ext-unix-sk"),
                          (["--cgroup-props", "x"], "--cgroup-props"),
                          (["--force-irmap"], "--force-irmap"), (["--allow-uprobes"], "--allow-uprobes"),
                          (["--ms"], "--ms")]:
        result = refused(env, *dump, *extra, mention=option)
        check("not supported" in result.stderr, f"the refusal does not say why: {result.stderr.strip()!r}")
    # A parent image that is not there, before anything is frozen or written.
    refused(env, "pre-dump", "-t", pid, "-D", images, "--prev-images-dir", "../none", mention="--prev-images-dir")
    refused(env, *dump, "--prev-images-dir=../none", mention="--prev-images-dir")
    restore = ["restore", "-D", images]
    for extra, option in [(["-d", "-S"], "--restore-sibling"),
                          (["--lsm-profile", "apparmor:unconfined"], "--lsm-profile"),
                          (["--auto-dedup"], "--auto-dedup"), (["--exec-cmd"], "--exec-cmd"),
                          (["--leave-stopped"], "--leave-stopped")]:
        refused(env, *restore, *extra, mention=option)
    refused(env, *dump, "--ghost-limit", "lots", mention="--ghost-limit")
    refused(env, *dump, "--network-lock", "ebtables", mention="--network-lock")
    refused(env, "restore", "-D", images, "--manage-cgroups", "none", mention="--manage-cgroups=none")
    refused(env, "check", "--feature", "mnt_id", mention="mnt_id")
    refused(env, "check", "--feature", "no_such_feature", mention="no_such_feature")
    check_eq(sorted(os.listdir(images)), [], "what the refused commands left in the image directory")
    compare_snapshots(tree, snapshot(pid), pid)
    wait_progress(prog, progress(prog)[0] + 3)
    env.trigger_and_report(pid, report)


def case_verbs_help(env):
    """Every verb answers --help and -h with its usage and exit 0; --version names the image format."""
    for verb in VERBS:
        for flag in ("--help", "-h"):
            result = env.cryo(verb, flag)
            check(result.stdout.startswith("usage: cryo " + verb), f"cryo {verb} {flag}: {result.stdout[:200]!r}")
    check("--lazy-pages" in env.cryo("dump", "--help").stdout, "dump --help does not list CRIU's options")
    check("--tcp-close" in env.cryo("restore", "-t", "1", "--help").stdout, "restore --help after other options")
    for args in (["--version"], ["-V"], ["dump", "--version"]):
        out = env.cryo(*args).stdout
        check("cryo version" in out and "image format version" in out, f"cryo {' '.join(args)}: {out!r}")
    listed = env.cryo("check", "--feature", "list").stdout.split()
    check("get_rseq_conf" in listed, f"check --feature list: {listed}")
    env.cryo("check", "--feature", "get_rseq_conf")
    env.cryo("check", "--all", "--extra", "--experimental", "-v0")


def case_make_demo(env):
    """`make demo` installs what the build and the demos need, not what only the tests need
    (a newcomer must not wait for OpenJDK, PostgreSQL, Go... before a 30-second demo);
    `make test` installs all of it. Read from `make -n` (nothing runs)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def installs(target):
        done = subprocess.run(["make", "-n", "-C", repo, target, f"BUILD={env.path('build')}"],
                              capture_output=True, text=True, timeout=60)
        check(done.returncode == 0, f"make -n {target} -> {done.returncode}: {done.stderr[-1000:]}")
        lines = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("./scripts/install-deps")]
        check_eq(len(lines), 1, f"install-deps lines of make -n {target}")
        return set(lines[0])

    demo, test = installs("demo"), installs("test")
    check(demo <= test, f"make demo installs what make test does not: {sorted(demo - test)}")
    for needed in ("cmake", "g++", "protobuf-compiler", "python3", "curl", "podman", "busybox-static", "nftables"):
        check(needed in demo, f"make demo does not install {needed}, which the build or a demo needs")
    test_only = ("postgresql", "openjdk", "golang", "nodejs", "redis", "nginx", "memcached", "containerd", "clang",
                 "skopeo", "tmux", "strace")
    heavy = sorted(p for p in demo if p.startswith(test_only))
    check_eq(heavy, [], "packages make demo installs that only the tests need")
    check(any(p.startswith("openjdk") for p in test), f"make test no longer installs the tests' servers: {sorted(test)}")
    for script in sorted(os.listdir(os.path.join(repo, "integration", "demo"))):
        text = read_text(os.path.join(repo, "integration", "demo", script))
        for installer in ("apt-get", "apt ", "install-deps", "pip install"):
            check(installer not in text, f"integration/demo/{script} installs packages itself ({installer.strip()})")


def case_make_install(env):
    """`make install` with PREFIX and DESTDIR: the binary runs from there, `criu` beside it (a
    symlink) answers as CRIU, and its manual holds the usage of every command (it is written
    from their --help); the configuration file is in DESTDIR's /etc/cryo, changes nothing,
    and another install keeps the user's."""
    build = os.path.dirname(os.path.dirname(os.path.realpath(env.cryo_path)))
    check(os.path.exists(os.path.join(build, "CMakeCache.txt")), f"{build} is not the build tree of {env.cryo_path}")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    root = env.path("root")
    done = subprocess.run(["make", "-C", repo, "install", f"BUILD={build}", "PREFIX=/opt/cryo", f"DESTDIR={root}"],
                          capture_output=True, text=True, timeout=300)
    check(done.returncode == 0, f"make install -> {done.returncode}: {done.stderr[-2000:]}")
    installed = os.path.join(root, "opt/cryo/bin/cryo")
    version = subprocess.run([installed, "--version"], capture_output=True, text=True, timeout=30)
    check(version.returncode == 0 and "image format version" in version.stdout, f"installed cryo --version: {version!r}")
    criu = os.path.join(root, "opt/cryo/bin/criu")  # cryo as runc's and Podman's CRIU
    check(os.path.islink(criu) and os.readlink(criu) == "cryo", f"{criu} is not a symlink to cryo")
    version = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=30)
    check(version.stdout.startswith("Version: 3."), f"installed criu --version: {version.stdout!r}")
    page = os.path.join(root, "opt/cryo/share/man/man1/cryo.1")
    check(os.path.exists(os.path.join(root, "opt/cryo/share/doc/cryo/README.md")), "the README is not installed")
    text = read_text(page)
    check(text.startswith(".TH CRYO 1"), f"{page} is not a manual page: {text[:100]!r}")
    if shutil.which("nroff"):  # groff-base, on most machines: the page must render
        rendered = subprocess.run(["nroff", "-man", page], capture_output=True, text=True, timeout=60)
        check(rendered.returncode == 0 and not rendered.stderr, f"nroff -man {page}: {rendered.stderr[-1000:]}")
        text = rendered.stdout
    for verb in VERBS:
        check(f"usage: cryo {verb}" in text, f"the manual lacks the usage of {verb}")
    check("--tcp-established" in text, "the manual lacks dump's options")
    # The configuration file, where cryo reads it: all commented out, so it changes nothing.
    config = os.path.join(root, "etc/cryo/cryo.yaml")
    check(os.path.exists(config), "the configuration file is not installed")
    failed = subprocess.run([installed, "dump", "-t", "999999999", "-D", env.path("none")], capture_output=True,
                            text=True, timeout=30, env=dict(os.environ, CRYO_CONFIG=config))
    check(failed.returncode != 0 and "999999999" in failed.stderr and "cryo.yaml" not in failed.stderr,
          f"cryo with the installed configuration file: {failed.stderr.strip()!r}")
    # Installed again: the user's configuration file stays as it is.
    with open(config, "a") as f:
        f.write("dump:\n  leave-running: true\n")
    mine = read_text(config)
    again = subprocess.run(["make", "-C", repo, "install", f"BUILD={build}", "PREFIX=/opt/cryo", f"DESTDIR={root}"],
                           capture_output=True, text=True, timeout=300)
    check(again.returncode == 0, f"make install, again -> {again.returncode}: {again.stderr[-2000:]}")
    check_eq(read_text(config), mine, "the configuration file after another make install")
    outside = [p for p in ("/opt/cryo",) if os.path.exists(p)]
    check_eq(outside, [], "what the install put outside DESTDIR")


def case_yaml_config(env):
    """cryo.yaml ($CRYO_CONFIG here, so that no other test sees it) gives a dump its
    defaults: its dump section's leave-running keeps the tree running; a mistake in it
    fails the dump naming the file, line and key, and the tree runs on."""
    pid, ready, report, prog = start_counter(env)
    env.wait_ready(ready, pid)
    config = env.path("cryo.yaml")
    with open(config, "w") as f:
        f.write("# defaults for the test\nrestore:\n  restore-detached: true\ndump:\n  leave-running: true\n")
    images = env.path("images")
    os.makedirs(images)
    env.cryo("dump", "-t", pid, "-D", images, env_extra={"CRYO_CONFIG": config})
    check(os.path.exists(os.path.join(images, "inventory.img")), "no image after the dump")
    wait_progress(prog, progress(prog)[0] + 5)
    with open(config, "w") as f:
        f.write("dump:\n  leave-running: true\n  tcp-establish: true\n")
    result = env.cryo("dump", "-t", pid, "-D", env.path("images2"), expect=1, env_extra={"CRYO_CONFIG": config})
    check(f"{config}:3: unknown option 'tcp-establish'" in result.stderr,
          f"the error does not name the file, line and key: {result.stderr.strip()!r}")
    # --no-default-config skips it: this dump kills the tree as usual.
    before = snapshot(pid)
    env.cryo("dump", "-t", pid, "-D", env.path("images3"), "--no-default-config", env_extra={"CRYO_CONFIG": config})
    env.wait_dumped(before)
    _, rpid = env.restore(env.path("images3"))
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"make_install": case_make_install, "make_demo": case_make_demo, "shell_job_image_needs_flag": case_shell_job_image_needs_flag, "redump_same_dir": case_redump_same_dir,
         "image_moved": case_image_moved, "vfork_parent": case_vfork_parent, "bad_arguments": case_bad_arguments, "missing_pid": case_missing_pid, "zombie_root": case_zombie_root,
         "unwritable_images_dir": case_unwritable_images_dir, "own_ancestor": case_own_ancestor,
         "stopped_root": case_stopped_root, "traced_by_other": case_traced_by_other,
         "criu_command_line": case_criu_command_line, "criu_refused": case_criu_refused,
         "verbs_help": case_verbs_help, "yaml_config": case_yaml_config})
