"""seccomp, capabilities, read-only rootfs, masked/readonly paths, user namespaces."""
import os

from cryo_oci import check, main


def run_out(env, cid, script, edit=None):
    bundle = env.bundle(cid, ["sh", "-c", script], edit=edit)
    p = env.run(["run", "--bundle", bundle, cid], check=False)
    return p


def test_seccomp_errno(env):
    def edit(c):
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["no_such_syscall_name"], "action": "SCMP_ACT_ERRNO"},
                # Only mode 0700 is refused.
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}]},
            ]}
    p = run_out(env, "sc", "mkdir /tmp/d; echo mkdir=$?; chmod 700 /tmp; echo h5=$?; chmod 1777 /tmp; echo h6=$?", edit)
    check("mkdir=1" in p.stdout and "Permission denied" in p.stderr, "seccomp errnoRet 13 refuses mkdir: " + p.stdout + p.stderr)
    check("h5=1" in p.stdout and "h6=0" in p.stdout, "seccomp argument condition (len == 5): " + p.stdout)
    def kill_edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                                 "syscalls": [{"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    p = run_out(env, "sckill", "sync; echo status=$?", kill_edit)
    check("status=159" in p.stdout, "SCMP_ACT_KILL_PROCESS kills with SIGSYS (flags accepted): " + p.stdout)
    bad = env.bundle("scbad", ["true"], edit=lambda c: c["linux"].update(
        seccomp={"defaultAction": "SCMP_ACT_NOPE"}))
    p = env.run(["create", "--bundle", bad, "scbad"], check=False)
    check(p.returncode != 0 and "SCMP_ACT_NOPE" in p.stderr, "unknown seccomp action fails clearly")


def test_capabilities(env):
    keep = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]

    def edit(c):
        c["process"]["capabilities"] = {k: keep for k in ("bounding", "effective", "permitted")}
    p = run_out(env, "caps", "grep -E '^Cap(Eff|Bnd)' /proc/self/status; chown 65534 /tmp; echo chown=$?", edit)
    mask = (1 << 5) | (1 << 10)
    check("CapEff:\t%016x" % mask in p.stdout and "CapBnd:\t%016x" % mask in p.stdout,
          "only the listed capabilities remain: " + p.stdout)
    check("chown=1" in p.stdout, "CAP_CHOWN is gone: chown fails")

    def edit_user(c):
        c["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5]}
        c["process"]["capabilities"] = {k: keep for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    p = run_out(env, "user", "id; grep -E '^CapEff' /proc/self/status", edit_user)
    check("uid=65534" in p.stdout and "gid=65534" in p.stdout and "5" in p.stdout.split("groups=")[-1],
          "process.user uid/gid/additionalGids: " + p.stdout)
    check("CapEff:\t%016x" % mask in p.stdout, "ambient capabilities survive the switch to a user: " + p.stdout)

    # runc's default spec: ambient capabilities that are not inheritable are skipped, not an error.
    def edit_default(c):
        defaults = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        c["process"]["capabilities"] = {k: defaults for k in ("bounding", "effective", "permitted", "ambient")}
    p = run_out(env, "ambient", "grep -E '^Cap(Eff|Amb)' /proc/self/status", edit_default)
    check(p.returncode == 0 and "CapEff:\t%016x" % ((1 << 29) | mask) in p.stdout and "CapAmb:\t%016x" % 0 in p.stdout,
          "ambient capabilities that are not inheritable are not raised: %s%s" % (p.stdout, p.stderr))

    def edit_unknown(c):
        c["process"]["capabilities"] = {k: keep + ["CAP_TEST"] for k in ("bounding", "effective", "permitted")}
    p = run_out(env, "capunknown", "grep -E '^CapEff' /proc/self/status", edit_unknown)
    check(p.returncode == 0 and "CapEff:\t%016x" % mask in p.stdout and "CAP_TEST" in p.stderr,
          "an unknown capability is ignored with a warning: %s%s" % (p.stdout, p.stderr))


def test_process_details(env):
    def edit(c):
        c["process"]["user"]["umask"] = 0o077
        c["process"]["noNewPrivileges"] = True
        c["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
                                  "uid": 0, "gid": 0}]
    p = run_out(env, "proc", "touch /tmp/f; stat -c %a /tmp/f; grep NoNewPrivs /proc/self/status; "
                             "stat -c '%t:%T %a' /dev/mynull; echo data > /dev/mynull && echo writable", edit)
    out = p.stdout.split("\n")
    check(out[0] == "600", "process.user.umask: " + p.stdout)
    check(out[1].split() == ["NoNewPrivs:", "1"], "noNewPrivileges")
    check(out[2] == "1:3 640" and "writable" in p.stdout, "linux.devices makes the node and the cgroup allows it: "
          + p.stdout + p.stderr)


def test_readonly_and_masked(env):
    def edit(c):
        c["root"]["readonly"] = True
        c["mounts"].append({"destination": "/data", "type": "bind", "source": env.tmp, "options": ["rbind", "ro"]})
    p = run_out(env, "ro", "touch /x; echo root=$?; touch /data/y; echo data=$?; touch /dev/shm/z; echo shm=$?;"
                " wc -c < /proc/timer_list; echo masked=$?; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid;"
                " echo sys=$?", edit)
    out = p.stdout
    check("root=1" in out, "read-only root refuses writes: " + out)
    check("data=1" in out, "ro bind mount refuses writes")
    check("shm=0" in out, "tmpfs mounts stay writable")
    check(out.split("\n")[3].strip() == "0" and "masked=0" in out, "maskedPaths: /proc/timer_list reads empty: " + out)
    check("sys=1" in out, "readonlyPaths: /proc/sys is read-only")


def test_symlink_mount_target(env):
    host_file = os.path.join(env.tmp, "hostfile")
    with open(host_file, "w") as f:
        f.write("host-content\n")
    source = os.path.join(env.tmp, "source")
    with open(source, "w") as f:
        f.write("bound-content\n")
    os.symlink(host_file, os.path.join(env.rootfs, "etc", "evil"))

    def edit(c):
        c["mounts"].append({"destination": "/etc/evil", "type": "bind", "source": source, "options": ["bind"]})
    p = run_out(env, "evil", "cat /etc/evil", edit)
    check(p.stdout.strip() == "bound-content", "a symlinked mount target resolves inside the rootfs: " + p.stdout + p.stderr)
    check(open(host_file).read() == "host-content\n", "the host file is untouched")


def test_tmpcopyup(env):
    os.makedirs(os.path.join(env.rootfs, "etc", "sub"))
    os.symlink("passwd", os.path.join(env.rootfs, "etc", "link"))

    def edit(c):
        c["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                            "options": ["rw", "nosuid", "nodev", "tmpcopyup"]})
    p = run_out(env, "copyup", "grep -c root /etc/link; ls -d /etc/sub; echo new >> /etc/passwd; "
                               "grep /etc /proc/mounts | cut -d' ' -f3", edit)
    check(p.stdout.split() == ["1", "/etc/sub", "tmpfs"], "tmpcopyup fills the tmpfs from the image: " + p.stdout + p.stderr)
    check("new" not in open(os.path.join(env.rootfs, "etc", "passwd")).read(), "writes stay in the tmpfs")


def test_user_namespace(env):
    # env.tmp (the bundle's and the rootfs's parent) stays 0700 root: host uid 100000 cannot search it, so the
    # rootfs must be reached from the host's side (runc 1.1 fails here with "permission denied").
    check(os.stat(env.tmp).st_mode & 0o777 == 0o700, "the rootfs's parent is private to host root")
    os.chown(env.rootfs, 100000, 100000)
    for dirpath, dirnames, filenames in os.walk(env.rootfs):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), 100000, 100000)

    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"].pop("resources", None)
    p = run_out(env, "userns", "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/mine; ls -ln /tmp/mine", edit)
    out = p.stdout
    check(p.returncode == 0, "a user-namespace container runs: " + p.stderr)
    check(out.split("\n")[0].split() == ["0", "100000", "65536"], "uid_map is the configured mapping: " + out)
    check(os.stat(os.path.join(env.rootfs, "tmp/mine")).st_uid == 100000, "container root writes as host uid 100000")
    bundle = env.bundle("userns2", ["sleep", "100"], edit=edit)
    env.run(["run", "-d", "--bundle", bundle, "userns2"])
    p = env.run(["exec", "userns2", "sh", "-c", "id -u; cat /proc/self/uid_map; touch /tmp/exec-file"])
    check(p.stdout.split()[:3] == ["0", "0", "100000"], "exec joins the user namespace: " + p.stdout)
    check(os.stat(os.path.join(env.rootfs, "tmp/exec-file")).st_uid == 100000, "exec writes as host uid 100000")
    env.run(["delete", "--force", "userns2"])


if __name__ == "__main__":
    main({"seccomp": test_seccomp_errno, "capabilities": test_capabilities, "readonly": test_readonly_and_masked,
          "userns": test_user_namespace, "symlink": test_symlink_mount_target,
          "process": test_process_details, "tmpcopyup": test_tmpcopyup})
