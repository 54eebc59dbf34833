#!/usr/bin/env python3
"""Migration through a registry: the downtime of moving a container from one cryo root ("host A")
to another ("host B") through Debian's docker-registry on loopback, and the size of its checkpoint
image, next to what a plain `skopeo copy` of the same image (push and pull) takes.

    python3 bench/migration.py build/runtime/cryo        (root; BENCH_MIGRATION_MIB=32,256)

The container is python3 holding N MiB (half random bytes, half zeros: part of a real heap
compresses, part does not) and a counter. Downtime is from `cryo checkpoint --image-ref docker://`
starting (the freeze comes first) to `cryo restore --image-ref oci:` returning on B with the
container running: checkpoint + push, skopeo pull, restore. The baseline copies the very image
again, registry to another tag and back, with skopeo alone: what moving those bytes costs without
cryo. The network part of the migration (the address moving) is integration/oci/migration_test.py's;
here both roots share the machine's network namespace and the container has an empty one."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "integration", "oci"))

SIZES = [int(s) for s in os.environ.get("BENCH_MIGRATION_MIB", "32,256").split(",") if s]

HOLDER = r'''
import os, sys, time
n = int(sys.argv[1]) << 20
held = bytearray(os.urandom(n // 2)) + bytearray(n - n // 2)
open("/data/ready", "w").close()
i = 0
while True:
    i += 1
    with open("/data/count.tmp", "w") as f:
        f.write("%d\n" % i)
    os.rename("/data/count.tmp", "/data/count")
    time.sleep(0.1)
'''


def timed(argv, **kw):
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.strip()[-400:]))
    return took


def count(data):
    try:
        with open(os.path.join(data, "count")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def wait_for(predicate, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def one(cryo, env, registry, plain_registry, mib):
    import migration_test
    app, data = os.path.join(env.tmp, "app-%d" % mib), os.path.join(env.tmp, "data-%d" % mib)
    os.makedirs(app)
    os.makedirs(data)
    with open(os.path.join(app, "server.py"), "w") as f:
        f.write(HOLDER)
    name = "mig%d" % mib

    def edit(config):
        config["mounts"] += [
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
            {"destination": "/app", "type": "bind", "source": app, "options": ["rbind", "ro"]},
            {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}]
        config["linux"]["cgroupsPath"] = "/cryo-bench-migration"
        config["process"]["env"] = ["PATH=/usr/bin:/bin"]
    bundle = env.bundle(name, ["/usr/bin/python3", "/app/server.py", str(mib)], edit=edit)
    root_a, root_b = os.path.join(env.tmp, "state-a"), os.path.join(env.tmp, "state-b")
    subprocess.run([cryo, "--root", root_a, "run", "-d", "--bundle", bundle, name], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists(os.path.join(data, "ready")) and count(data) > 2, "the container")
    ref = "docker://127.0.0.1:%d/bench/%s:v1" % (registry.port, name)
    layout = os.path.join(env.tmp, "b-%d" % mib)
    try:
        t_ckpt = timed([cryo, "--root", root_a, "checkpoint", "--image-ref", ref, "--tls-verify=false", name])
        last = count(data)
        t_pull = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref, "oci:%s:v1" % layout])
        t_restore = timed([cryo, "--root", root_b, "restore", "-d", "--bundle", bundle, "--image-ref",
                           "oci:%s:v1" % layout, name], stdin=subprocess.DEVNULL)
        wait_for(lambda: count(data) > last, "the counter on B", 30)
    finally:
        for root in (root_a, root_b):
            subprocess.run([cryo, "--root", root, "delete", "--force", name], capture_output=True)
    blobs = os.path.join(layout, "blobs", "sha256")
    size = sum(os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs))
    # The same bytes with skopeo alone: pushed to another registry (skopeo would mount blobs the
    # first one holds already, and nothing would travel), pulled again.
    other = os.path.join(env.tmp, "copy-%d" % mib)
    plain = "docker://127.0.0.1:%d/bench/%s:v1" % (plain_registry.port, name)
    t_push_plain = timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:v1" % layout,
                          plain])
    t_pull_plain = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", plain, "oci:%s:v1" % other])
    return {"mib": mib, "image_mib": size / 2**20, "checkpoint_push": t_ckpt, "pull": t_pull, "restore": t_restore,
            "downtime": t_ckpt + t_pull + t_restore, "skopeo_push": t_push_plain, "skopeo_pull": t_pull_plain}


def main():
    if len(sys.argv) != 2 or os.geteuid() != 0:
        sys.exit("usage (root): migration.py path/to/cryo")
    cryo = os.path.abspath(sys.argv[1])
    os.environ["CRYO"] = cryo
    import cryo_oci
    from checkpoint_image_test import Registry
    cryo_oci.become_subreaper()
    env = cryo_oci.Env("bench-migration")
    for link in ("lib", "lib64"):
        os.symlink("usr/" + link, os.path.join(env.rootfs, link))
    for d in ("app", "data"):
        os.makedirs(os.path.join(env.rootfs, d))
    os.environ["TMPDIR"] = env.tmp
    rows = []
    try:
        plain_env = type("PlainEnv", (), {"tmp": os.path.join(env.tmp, "plain")})()
        with Registry(env) as registry, Registry(plain_env) as plain_registry:
            for mib in SIZES:
                rows.append(one(cryo, env, registry, plain_registry, mib))
                cryo_oci.reap()
    finally:
        env.ids = []
        env.cleanup()
        for base in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", base, "cryo-bench-migration")
            if os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
    print("%8s %10s %12s %8s %9s %10s | %12s %12s" % ("held", "image", "ckpt+push", "pull", "restore",
                                                       "DOWNTIME", "skopeo push", "skopeo pull"))
    for r in rows:
        print("%5d MiB %6.1f MiB %10.2f s %6.2f s %7.2f s %8.2f s | %10.2f s %10.2f s"
              % (r["mib"], r["image_mib"], r["checkpoint_push"], r["pull"], r["restore"], r["downtime"],
                 r["skopeo_push"], r["skopeo_pull"]))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
