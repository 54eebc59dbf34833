"""Checkpoints that travel: a busybox counter container (checkpoint_test's) checkpointed with
`--export FILE` (Podman's archive layout) or `--image-ref oci:DIR[:TAG]` / `oci-archive:FILE[:TAG]`
(an OCI image, one layer, checkpoint annotations), and restored with `--import FILE` /
`--image-ref REF`, also under another id: the counter must go on from where it was. skopeo (if
installed) must read the images cryo writes. `cryo inspect` shows an image's annotations, layers
and process tree. Hostile archives and images (a path climbing out with `..`, an absolute path, a
symlink leading out, a hard link, a device, a corrupt or truncated layer, a wrong manifest digest,
another architecture, a newer image format) are refused with the reason, before any container or
process is made, and nothing is written outside the private unpack directory. Through skopeo: a
docker-registry on loopback (docker://, --tls-verify=false; a push to a registry that is gone, or
that goes away in the middle of the layer's upload, keeps the local checkpoint whole) and a private
containers-storage: store. A container on an overlay rootfs that
adds, changes and deletes files there gets them back over a fresh overlay of the same base
(rootfs-diff.tar, deleted.files), not with --ignore-rootfs; hostile diffs stay inside the rootfs."""
import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile

from cryo_oci import check, main
from checkpoint_test import COUNTER, counter_bundle, count, gone, start, stopped_counter, wait_for

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def private_tmp(env):
    """cryo unpacks into $TMPDIR: one of the test's own, to see that nothing is left there."""
    tmp = os.path.join(env.tmp, "tmpdir")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    return tmp


def checkpoint(env, cid, *flags):
    p = env.run(["checkpoint", *flags, cid], check=False, timeout=120)
    check(p.returncode == 0, "checkpoint %s %s: %s" % (cid, " ".join(flags), p.stderr.strip()[-600:]))
    return p


def restore(env, bundle, cid, *flags):
    p = env.run(["restore", "-d", "--bundle", bundle, *flags, cid], check=False, timeout=120)
    check(p.returncode == 0, "restore %s %s: %s" % (cid, " ".join(flags), p.stderr.strip()[-600:]))
    return p


def running_counter(env, cid="c1"):
    bundle, data = counter_bundle(env, cid)
    start(env, bundle, cid)
    wait_for(lambda: count(data) >= 5, "the counter")
    return bundle, data


def rewind(data, value):
    """The count file as the checkpoint saw it, so a second restore can be told from the first run."""
    with open(os.path.join(data, "count"), "w") as f:
        f.write("%d\n" % value)


def counts_on(data, last, what):
    """The counter moves on from `last`, not from 0 (a loaded machine may let it count a few times
    before the test looks: a fresh start would say 1)."""
    first = wait_for(lambda: count(data) if count(data) != last else 0, what + ": the counter to move")
    check(last < first <= last + 10, "%s: the counter goes on from %d (next %d)" % (what, last, first))
    wait_for(lambda: count(data) > first + 3, what + ": the counter to keep counting")


def restore_and_count(env, bundle, data, cid, last, what, *flags):
    rewind(data, last)
    restore(env, bundle, cid, *flags)
    counts_on(data, last, what)
    check(env.state(cid)["status"] == "running", what + ": running")
    env.run(["delete", "--force", cid])
    check(gone(env, cid), what + ": deleted")


def magic(path, n=4):
    with open(path, "rb") as f:
        return f.read(n)


def test_export_import(env):
    tmp = private_tmp(env)
    bundle, data = running_counter(env)
    archive = os.path.join(env.tmp, "c1.tar.zst")
    checkpoint(env, "c1", "--export", archive)
    last = count(data)
    check(stopped_counter(data) and gone(env, "c1"), "checkpointed: the container is gone")
    check(magic(archive) == ZSTD_MAGIC, "--export compresses with zstd by default")
    listing = subprocess.run(["tar", "--zstd", "-tf", archive], capture_output=True, text=True).stdout.split()
    for name in ("checkpoint/inventory.img", "checkpoint/descriptors.json", "checkpoint/container.json",
                 "config.dump", "spec.dump"):
        check(name in listing, "the archive holds %s (Podman's layout)%s" % (name, "" if name in listing else ": %s" % listing))
    check(not glob.glob(".cryo-checkpoint-*") and not os.listdir(tmp), "no scratch image directory is left")
    restore_and_count(env, bundle, data, "c1", last, "restored from --import", "--import", archive)
    restore_and_count(env, bundle, data, "other", last, "restored under another id", "--import", archive)
    check(not os.listdir(tmp), "the private unpack directories are removed: %s" % os.listdir(tmp))


def blobs(layout):
    return {name: os.path.join(layout, "blobs", "sha256", name)
            for name in os.listdir(os.path.join(layout, "blobs", "sha256"))}


def read_layout(layout, tag):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    entry = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    check(len(entry) == 1, "index.json names the image %s: %s" % (tag, index))
    with open(os.path.join(layout, "blobs", "sha256", entry[0]["digest"][7:])) as f:
        return index, json.load(f)


def test_oci_layout(env):
    tmp = private_tmp(env)
    bundle, data = running_counter(env)
    layout = os.path.join(env.tmp, "layout")
    checkpoint(env, "c1", "--image-ref", "oci:%s:ckpt1" % layout, "--compress", "gzip")
    last = count(data)
    check(gone(env, "c1"), "checkpointed: the container is gone")
    with open(os.path.join(layout, "oci-layout")) as f:
        check(json.load(f)["imageLayoutVersion"] == "1.0.0", "oci-layout says 1.0.0")
    for name, path in blobs(layout).items():
        with open(path, "rb") as f:
            check(hashlib.sha256(f.read()).hexdigest() == name, "blob %s is content-addressed" % name[:12])
    _, manifest = read_layout(layout, "ckpt1")
    a = manifest["annotations"]
    expected = {"io.podman.annotations.checkpoint.name": "c1", "io.podman.annotations.checkpoint.runtime.name": "cryo",
                "io.podman.annotations.checkpoint.host.arch": "amd64", "org.criu.checkpoint.engine.name": "cryo",
                "org.criu.checkpoint.container.name": "c1", "io.kubernetes.cri-o.annotations.checkpoint.name": "c1"}
    for key, value in expected.items():
        check(a.get(key) == value, "annotation %s = %s (%s)" % (key, value, a.get(key)))
    for key in ("runtime.version", "host.kernel", "cgroups.version", "distribution.name", "distribution.version"):
        check(a.get("io.podman.annotations.checkpoint." + key), "annotation %s is set" % key)
    layers = manifest["layers"]
    check(len(layers) == 1 and layers[0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip",
          "one gzip layer: %s" % layers)
    layer_blob = blobs(layout)[layers[0]["digest"][7:]]
    check(magic(layer_blob, 2) == GZIP_MAGIC, "the layer is gzip")
    with open(os.path.join(layout, "blobs", "sha256", manifest["config"]["digest"][7:])) as f:
        config = json.load(f)
    with gzip.open(layer_blob) as f:
        diff_id = "sha256:" + hashlib.sha256(f.read()).hexdigest()
    check(config["architecture"] == "amd64" and config["os"] == "linux" and config["rootfs"]["diff_ids"] == [diff_id],
          "the config names the architecture and the uncompressed layer's digest: %s" % config)
    if shutil.which("skopeo"):
        p = subprocess.run(["skopeo", "inspect", "oci:%s:ckpt1" % layout], capture_output=True, text=True)
        ok = p.returncode == 0 and json.loads(p.stdout)["Layers"] == [layers[0]["digest"]]
        check(ok, "skopeo reads the image" + ("" if ok else ": " + (p.stdout + p.stderr)[-400:]))
    restore_and_count(env, bundle, data, "c1", last, "restored from oci:", "--image-ref", "oci:%s:ckpt1" % layout)
    # A second image in the same layout; both stay there, each found by its tag.
    start(env, bundle, "c1")
    wait_for(lambda: count(data) >= 3, "the counter again")
    checkpoint(env, "c1", "--image-ref", "oci:%s:ckpt2" % layout)
    last2 = count(data)
    read_layout(layout, "ckpt1")
    read_layout(layout, "ckpt2")
    p = env.run(["restore", "-d", "--bundle", bundle, "--image-ref", "oci:" + layout, "c1"], check=False, timeout=120)
    check(p.returncode != 0 and "several images" in p.stderr, "without a tag, a layout of two images is refused: %s"
          % p.stderr.strip())
    restore_and_count(env, bundle, data, "c2", last2, "the second image restored under another id",
                      "--image-ref", "oci:%s:ckpt2" % layout)
    check(not os.listdir(tmp), "the private unpack directories are removed")


def test_oci_archive(env):
    tmp = private_tmp(env)
    bundle, data = running_counter(env)
    archive = os.path.join(env.tmp, "ckpt.tar")
    checkpoint(env, "c1", "--image-ref", "oci-archive:%s:v1" % archive)
    last = count(data)
    with tarfile.open(archive) as t:
        names = t.getnames()
    check("oci-layout" in names and "index.json" in names, "oci-archive: the layout as a tar: %s" % names)
    layer = None
    with tarfile.open(archive) as t:
        index = json.load(t.extractfile("index.json"))
        manifest = json.load(t.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
        layer = manifest["layers"][0]
        check(layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd", "a zstd layer by default")
        check(t.extractfile("blobs/sha256/" + layer["digest"][7:]).read(4) == ZSTD_MAGIC, "the layer is zstd")
    if shutil.which("skopeo"):
        p = subprocess.run(["skopeo", "inspect", "oci-archive:%s:v1" % archive], capture_output=True, text=True)
        ok = p.returncode == 0 and json.loads(p.stdout)["Layers"] == [layer["digest"]]
        check(ok, "skopeo reads the oci-archive" + ("" if ok else ": " + (p.stdout + p.stderr)[-400:]))
    restore_and_count(env, bundle, data, "c1", last, "restored from oci-archive:",
                      "--image-ref", "oci-archive:%s:v1" % archive)
    restore_and_count(env, bundle, data, "moved", last, "restored from oci-archive: under another id",
                      "--image-ref", "oci-archive:" + archive)
    check(not os.listdir(tmp), "the private unpack directories are removed")


def test_inspect(env):
    private_tmp(env)
    bundle, data = running_counter(env)
    layout = os.path.join(env.tmp, "layout")
    archive = os.path.join(env.tmp, "c1.tar")
    checkpoint(env, "c1", "--leave-running", "--image-ref", "oci:%s:v1" % layout, "--export", archive,
               "--compress", "none")
    env.run(["delete", "--force", "c1"])
    p = env.run(["inspect", "oci:%s:v1" % layout], check=False)
    check(p.returncode == 0, "cryo inspect oci:DIR:TAG: %s" % p.stderr.strip())
    out = json.loads(p.stdout)
    check(out["annotations"]["io.podman.annotations.checkpoint.name"] == "c1", "inspect shows the annotations")
    check(len(out["layers"]) == 1 and out["layers"][0]["digest"].startswith("sha256:")
          and out["layers"][0]["mediaType"].endswith(".tar"), "inspect shows the layer: %s" % out["layers"])
    tasks = out["checkpoint"]["tree"]["tasks"]
    cmds = [t.get("comm", "") for t in tasks]
    check(len(tasks) >= 1 and "sh" in cmds, "inspect shows the process tree inside: %s" % cmds)
    check("spec.dump" in out["files"] and "config.dump" in out["files"], "inspect lists the files: %s" % out["files"])
    p = env.run(["inspect", archive], check=False)
    check(p.returncode == 0 and json.loads(p.stdout)["checkpoint"]["tree"]["tasks"], "cryo inspect FILE of --export")


# Hostile archives (--import): each adds one bad entry to a good checkpoint's files.
def good_members(archive, workdir):
    files = os.path.join(workdir, "files")
    os.makedirs(files)
    subprocess.run(["tar", "-xf", archive, "-C", files], check=True)
    return files


def hostile_archive(env, files, name, add):
    path = os.path.join(env.tmp, name + ".tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        add(t)  # first, so that nothing of the good checkpoint has been unpacked either way
        t.add(files, arcname=".")
    return path


def entry(name, kind=tarfile.REGTYPE, data=b"owned\n", linkname=""):
    def add(t):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        info.mode = 0o644
        if kind == tarfile.REGTYPE:
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        else:
            t.addfile(info)
    return add


def refused(env, bundle, cid, flags, reason, what, outside):
    p = env.run(["restore", "-d", "--bundle", bundle, *flags, cid], check=False, timeout=120)
    check(p.returncode != 0 and reason in p.stderr, "%s is refused (%s): %s" % (what, reason, p.stderr.strip()[-300:]))
    check(gone(env, cid), "%s: no container was made" % what)
    check(not os.listdir(outside), "%s: nothing was written outside: %s" % (what, os.listdir(outside)))


def test_hostile_archive(env):
    tmp = private_tmp(env)
    bundle, data = running_counter(env)
    archive = os.path.join(env.tmp, "good.tar")
    checkpoint(env, "c1", "--export", archive, "--compress", "none")
    files = good_members(archive, os.path.join(env.tmp, "good"))
    outside = os.path.join(env.tmp, "outside")
    os.makedirs(outside)
    # tmp/cryo-checkpoint-XXXXXX/files/ is where an archive unpacks: ../../../outside leads here.
    cases = [
        ("dotdot", entry("../../../outside/escaped"), "climbs out"),
        ("dotdot_deep", entry("checkpoint/../../../../outside/escaped"), "climbs out"),
        ("absolute", entry(os.path.join(outside, "absolute")), "absolute path"),
        ("symlink", lambda t: (entry("checkpoint/link", tarfile.SYMTYPE, linkname=outside)(t),
                               entry("checkpoint/link/through")(t)), "is a symlink"),
        ("hardlink", entry("checkpoint/hard", tarfile.LNKTYPE, linkname=os.path.join(outside, "x")), "hard link"),
        ("device", entry("checkpoint/null", tarfile.CHRTYPE), "device"),
        ("fifo", entry("checkpoint/fifo", tarfile.FIFOTYPE), "fifo"),
    ]
    for name, add, reason in cases:
        path = hostile_archive(env, files, name, add)
        refused(env, bundle, "c1", ["--import", path], reason, "archive with " + name, outside)
    truncated = os.path.join(env.tmp, "truncated.tar")
    with open(archive, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[:os.path.getsize(archive) // 2])
    refused(env, bundle, "c1", ["--import", truncated], "runcated", "a truncated archive", outside)
    empty = hostile_archive(env, os.path.join(files, "checkpoint"), "no_checkpoint", lambda t: None)
    refused(env, bundle, "c1", ["--import", empty], "holds no checkpoint", "an archive without checkpoint/", outside)
    check(not os.listdir(tmp), "every private unpack directory is removed: %s" % os.listdir(tmp))
    last = count(data)
    restore_and_count(env, bundle, data, "c1", last, "the good archive still restores", "--import", archive)


def rewrite_manifest(layout, edit):
    """Edits the manifest and, as a forger would, re-addresses it so only cryo's checks can catch it."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    old = index["manifests"][0]["digest"][7:]
    with open(os.path.join(layout, "blobs", "sha256", old)) as f:
        manifest = json.load(f)
    edit(manifest)
    text = json.dumps(manifest).encode()
    digest = hashlib.sha256(text).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(text)
    index["manifests"][0].update(digest="sha256:" + digest, size=len(text))
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    return manifest


def test_hostile_image(env):
    tmp = private_tmp(env)
    bundle, data = running_counter(env)
    good = os.path.join(env.tmp, "good")
    checkpoint(env, "c1", "--image-ref", "oci:" + good)
    outside = os.path.join(env.tmp, "outside")
    os.makedirs(outside)

    def variant(name, damage):
        layout = os.path.join(env.tmp, name)
        shutil.copytree(good, layout)
        damage(layout)
        return "oci:" + layout

    def layer_path(layout):
        _, manifest = read_layout_untagged(layout)
        return os.path.join(layout, "blobs", "sha256", manifest["layers"][0]["digest"][7:])

    def corrupt(layout):
        path = layer_path(layout)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xff]))

    def truncate(layout):
        path = layer_path(layout)
        os.truncate(path, os.path.getsize(path) // 2)

    def wrong_manifest_digest(layout):
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        index["manifests"][0]["digest"] = "sha256:" + "0" * 64
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump(index, f)

    def climbing_digest(layout):
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        index["manifests"][0]["digest"] = "sha256:../../../outside/x"
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump(index, f)

    def set_annotation(key, value):
        return lambda layout: rewrite_manifest(layout, lambda m: m["annotations"].__setitem__(key, value))

    def layer_size_lies(layout):
        rewrite_manifest(layout, lambda m: m["layers"][0].__setitem__("size", m["layers"][0]["size"] + 10))

    cases = [
        ("corrupt_layer", corrupt, "corrupt"),
        ("truncated_layer", truncate, "truncated"),
        ("wrong_manifest_digest", wrong_manifest_digest, "No such file"),
        ("climbing_digest", climbing_digest, "is not sha256"),
        ("layer_size", layer_size_lies, "truncated or replaced"),
        ("other_arch", set_annotation("io.podman.annotations.checkpoint.host.arch", "arm64"),
         "made on arm64, this host is amd64"),
        ("newer_format", set_annotation("org.cryo.checkpoint.format.version", "99"), "newer than this cryo reads"),
        ("not_checkpoint", lambda layout: rewrite_manifest(layout, lambda m: m.__setitem__("annotations", {})),
         "not a checkpoint image"),
    ]
    for name, damage, reason in cases:
        ref = variant(name, damage)
        refused(env, bundle, "c1", ["--image-ref", ref], reason, "an image with " + name, outside)
        p = env.run(["inspect", ref], check=False)
        check(p.returncode != 0 and reason in p.stderr, "inspect refuses %s too: %s" % (name, p.stderr.strip()[-200:]))
    newer_layout = variant("newer_layout", lambda layout: open(os.path.join(layout, "oci-layout"), "w").write(
        '{"imageLayoutVersion":"2.0.0"}'))
    refused(env, bundle, "c1", ["--image-ref", newer_layout], "image layout version", "a newer layout", outside)
    check(not os.listdir(tmp), "every private unpack directory is removed: %s" % os.listdir(tmp))
    last = count(data)
    restore_and_count(env, bundle, data, "c1", last, "the good image still restores", "--image-ref", "oci:" + good)


def read_layout_untagged(layout):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    with open(os.path.join(layout, "blobs", "sha256", index["manifests"][0]["digest"][7:])) as f:
        return index, json.load(f)


class Registry:
    """Debian's docker-registry (distribution 2.8) on a free loopback port, plain HTTP, its storage
    in the test's temp dir; killed and reaped on leaving."""

    def __init__(self, env):
        self.dir = os.path.join(env.tmp, "registry")
        os.makedirs(self.dir)

    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n"
                    "http:\n  addr: 127.0.0.1:%d\n" % (self.dir, self.port))
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: self.answers(), "the registry to listen")
        return self

    def answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def test_registry(env):
    tmp = private_tmp(env)
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        check(False, "skopeo and docker-registry are installed (make test-deps)")
        return
    bundle, data = running_counter(env)
    with Registry(env) as registry:
        ref = "docker://127.0.0.1:%d/checkpoints/c1:v1" % registry.port
        checkpoint(env, "c1", "--image-ref", ref, "--tls-verify=false")
        last = count(data)
        check(gone(env, "c1"), "pushed: the container is gone")
        p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref], capture_output=True, text=True)
        manifest = json.loads(p.stdout) if p.returncode == 0 else {}
        a = manifest.get("annotations", {})
        check(a.get("io.podman.annotations.checkpoint.name") == "c1"
              and a.get("io.podman.annotations.checkpoint.runtime.name") == "cryo",
              "the registry holds the manifest with its checkpoint annotations: %s" % (p.stdout + p.stderr)[-300:])
        p = env.run(["inspect", "--tls-verify=false", ref], check=False)
        check(p.returncode == 0 and json.loads(p.stdout)["checkpoint"]["tree"]["tasks"],
              "cryo inspect docker://: %s" % p.stderr.strip())
        p = env.run(["restore", "-d", "--bundle", bundle, "--image-ref", ref, "c1"], check=False, timeout=120)
        check(p.returncode != 0 and "skopeo" in p.stderr and gone(env, "c1"),
              "a plain-HTTP registry without --tls-verify=false is refused: %s" % p.stderr.strip()[-300:])
        restore_and_count(env, bundle, data, "c1", last, "restored from the registry",
                          "--image-ref", ref, "--tls-verify=false")
    p = env.run(["restore", "-d", "--bundle", bundle, "--image-ref", ref, "--tls-verify=false", "c1"], check=False,
                timeout=120)
    check(p.returncode != 0 and "skopeo copy" in p.stderr and gone(env, "c1"),
          "a registry that is gone: refused, nothing made: %s" % p.stderr.strip()[-300:])
    # A push that fails leaves the local checkpoint whole, and says where it is.
    rewind(data, last)
    start(env, bundle, "c1")
    wait_for(lambda: count(data) >= 3, "the counter again")
    local = os.path.join(env.tmp, "local")
    p = env.run(["checkpoint", "--image-path", local, "--image-ref", ref, "--tls-verify=false", "c1"], check=False,
                timeout=120)
    check(p.returncode != 0 and "kept in " + local in p.stderr, "a failed push names the kept image: %s"
          % p.stderr.strip()[-300:])
    last = count(data)
    restore_and_count(env, bundle, data, "c1", last, "the kept image restores", "--image-path", local)
    check(not os.listdir(tmp), "the scratch layouts are removed: %s" % os.listdir(tmp))


class CuttingProxy:
    """A TCP proxy in front of the registry that disappears (every connection and its listening
    socket closed) once `limit` bytes went towards the registry: a registry gone mid-push."""

    def __init__(self, port, limit):
        import threading
        self.target, self.limit, self.sent = port, limit, 0
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import threading
        while not self.cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, src, dst, counted):
        while True:
            try:
                data = src.recv(4096)
                if not data:
                    break
                if counted:
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent > self.limit
                    if over:
                        self.disappear()
                        return
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def disappear(self):
        self.cut.set()
        with self.lock:
            for sock in self.sockets + [self.listener]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def test_registry_gone_mid_push(env):
    """The registry goes away in the middle of the layer's upload: checkpoint fails naming the
    image directory it kept, and that directory restores the container whole."""
    tmp = private_tmp(env)
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        check(False, "skopeo and docker-registry are installed (make test-deps)")
        return
    # The counter holds ~400 KiB of random bytes (as hex text): a layer the cut falls inside.
    data = os.path.join(env.tmp, "data-c1")
    os.makedirs(data)
    bundle = env.bundle("c1", ["/bin/sh", "-c", "x=$(head -c 400000 /dev/urandom | od -An -tx1); " + COUNTER],
                        edit=lambda c: c["mounts"].append({"destination": "/data", "type": "bind", "source": data,
                                                           "options": ["rbind", "rw"]}))
    start(env, bundle, "c1")
    wait_for(lambda: count(data) >= 5, "the counter")
    local = os.path.join(env.tmp, "local")
    with Registry(env) as registry:
        proxy = CuttingProxy(registry.port, 64 << 10)
        ref = "docker://127.0.0.1:%d/checkpoints/c1:v1" % proxy.port
        p = env.run(["checkpoint", "--image-path", local, "--image-ref", ref, "--tls-verify=false", "c1"], check=False,
                    timeout=120)
        last = count(data)
        check(proxy.cut.is_set(), "the registry went away mid-push (%d bytes on their way)" % proxy.sent)
        check(p.returncode != 0 and "kept in " + local in p.stderr, "the failed push names the kept image: %s"
              % p.stderr.strip()[-300:])
        proxy.disappear()
    check(gone(env, "c1"), "the container is checkpointed (gone) all the same")
    restore_and_count(env, bundle, data, "c1", last, "the kept image restores whole", "--image-path", local)
    check(not os.listdir(tmp), "the scratch layouts are removed: %s" % os.listdir(tmp))


def test_containers_storage(env):
    tmp = private_tmp(env)
    if not shutil.which("skopeo"):
        check(False, "skopeo is installed (make test-deps)")
        return
    bundle, data = running_counter(env)
    # A private store (vfs, in the test's temp dir): Podman's own store is left alone.
    store = "containers-storage:[vfs@%s/storage+%s/storage-run]" % (env.tmp, env.tmp)
    checkpoint(env, "c1", "--image-ref", store + "localhost/checkpoint-c1:v1")
    last = count(data)
    restore_and_count(env, bundle, data, "c1", last, "restored from containers-storage:",
                      "--image-ref", store + "localhost/checkpoint-c1:v1")
    check(not os.listdir(tmp), "the scratch layouts are removed: %s" % os.listdir(tmp))


def test_refused_flags(env):
    private_tmp(env)
    bundle, data = running_counter(env)
    for flags, reason in ((["--export", "x.tar", "--compress", "lzma"], "unknown compression"),
                          (["--image-ref", "nope:x"], "unknown transport"),
                          (["--image-ref", "oci:"], "nothing after the transport"),
                          (["--image-ref", "oci:x", "--tls-verify", "maybe"], "true or false")):
        p = env.run(["checkpoint", *flags, "c1"], check=False)
        check(p.returncode != 0 and reason in p.stderr, "checkpoint %s refused: %s" % (flags, p.stderr.strip()))
        check(env.state("c1")["status"] == "running", "a refused flag leaves the container running")
    env.run(["delete", "--force", "c1"])
    del bundle, data
    # A dump that fails (its pre-dump action script, named by the bundle's org.criu.config,
    # fails) leaves no scratch image directory.
    data = os.path.join(env.tmp, "data-c2")
    os.makedirs(data)
    script = os.path.join(env.tmp, "fail-pre-dump.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = pre-dump ] && exit 3\nexit 0\n')
    os.chmod(script, 0o755)
    options = os.path.join(env.tmp, "fail.yaml")
    with open(options, "w") as f:
        f.write("action-script: %s\n" % script)

    def edit(config):
        config["mounts"].append({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]})
        config["annotations"] = {"org.criu.config": options}
    bundle = env.bundle("c2", ["/bin/sh", "-c", COUNTER], edit=edit)
    start(env, bundle, "c2")
    wait_for(lambda: count(data) >= 3, "the counter")
    p = env.run(["checkpoint", "--export", os.path.join(env.tmp, "x.tar"), "c2"], check=False, timeout=120)
    check(p.returncode != 0 and "pre-dump" in p.stderr,
          "a dump that fails fails the export: %s" % p.stderr.strip()[-200:])
    check(not glob.glob(".cryo-checkpoint-*") and not os.path.exists(os.path.join(env.tmp, "x.tar")),
          "it leaves no scratch image directory and no archive: %s" % glob.glob(".cryo-checkpoint-*"))
    check(env.state("c2")["status"] == "running", "the container runs on")
    env.run(["delete", "--force", "c2"])


# The container changes its rootfs, then checks every tick that the changes are there.
ROOTFS_CHANGES = (
    "mkdir -p /srv/new && echo added > /srv/new/added.txt && echo extra:x:5:5::/:/bin/sh >> /etc/passwd && "
    "rm /etc/group && rm -r /root && ln -s /srv/new/added.txt /etc/link && chmod 4711 /srv/new/added.txt; "
    "i=0; while true; do i=$((i+1)); s=ok; [ -e /etc/group ] && s=group-back; [ -e /root ] && s=root-back; "
    "[ \"$(cat /etc/link 2>/dev/null)\" = added ] || s=added-missing; grep -q ^extra: /etc/passwd || s=passwd-old; "
    "echo $s > /data/seen.tmp && mv /data/seen.tmp /data/seen; "
    "echo $i > /data/count.tmp && mv /data/count.tmp /data/count; sleep 0.1; done")


class Overlay:
    """An overlay of the test's busybox rootfs (its lower layer) with an upper layer of its own,
    mounted at ROOT/merged; unmounted on leaving."""

    def __init__(self, env, name):
        self.dir = os.path.join(env.tmp, "overlay-" + name)
        self.merged = os.path.join(self.dir, "merged")
        for d in ("upper", "work", "merged"):
            os.makedirs(os.path.join(self.dir, d))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s/upper,workdir=%s/work"
                        % (env.rootfs, self.dir, self.dir), self.merged], check=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run(["umount", "-l", self.merged], capture_output=True)


def overlay_bundle(env, cid, overlay, data):
    def edit(config):
        config["root"]["path"] = overlay.merged
        config["linux"]["cgroupsPath"] = "/cryo-test-%s-c1" % env.name  # the checkpoint's: a cgroup ns stays put
        config["mounts"].append({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]})
    return env.bundle(cid, ["/bin/sh", "-c", ROOTFS_CHANGES], edit=edit)


def seen(data):
    try:
        with open(os.path.join(data, "seen")) as f:
            return f.read().strip()
    except OSError:
        return ""


def test_rootfs_diff(env):
    tmp = private_tmp(env)
    os.makedirs(os.path.join(env.rootfs, "root", "sub"))
    with open(os.path.join(env.rootfs, "root", "sub", ".profile"), "w") as f:
        f.write("base\n")
    data = os.path.join(env.tmp, "data")
    os.makedirs(data)
    with Overlay(env, "a") as a, Overlay(env, "b") as b, Overlay(env, "c") as c:
        start(env, overlay_bundle(env, "c1", a, data), "c1")
        wait_for(lambda: count(data) >= 5 and seen(data) == "ok", "the container to change its rootfs")
        archive = os.path.join(env.tmp, "c1.tar")
        checkpoint(env, "c1", "--export", archive, "--compress", "none")
        last = count(data)
        with tarfile.open(archive) as t:
            names = t.getnames()
            check("rootfs-diff.tar" in names and "deleted.files" in names and "network.status" in names,
                  "the archive holds rootfs-diff.tar, deleted.files and network.status: %s"
                  % [n for n in names if not n.startswith("checkpoint/")])
            deleted = json.load(t.extractfile("deleted.files"))
            status = json.load(t.extractfile("network.status"))
            diff = tarfile.open(fileobj=io.BytesIO(t.extractfile("rootfs-diff.tar").read()))
        check(sorted(deleted) == ["/etc/group", "/root"], "deleted.files lists what was removed: %s" % deleted)
        check("cryo" in status and "interfaces" in status["cryo"], "network.status in Podman's shape: %s" % status)
        members = {m.name: m for m in diff.getmembers()}
        check("srv/new/added.txt" in members and "etc/passwd" in members and members.get("etc/link") is not None
              and members["etc/link"].issym() and members["etc/link"].linkname == "/srv/new/added.txt",
              "rootfs-diff.tar holds the added, changed and linked files: %s" % sorted(members))
        check(members["srv/new/added.txt"].mode & 0o7777 == 0o4711, "modes are kept (setuid)")
        check("bin/busybox" not in members and "etc/group" not in members, "rootfs-diff.tar holds only changes")
        for o in (b, c):
            check(os.path.exists(os.path.join(o.merged, "etc", "group")), "a fresh overlay has the base's /etc/group")
        # Into a fresh overlay of the same base: the process finds its changes there.
        rewind(data, last)
        os.unlink(os.path.join(data, "seen"))
        restore(env, overlay_bundle(env, "c2", b, data), "c2", "--import", archive)
        counts_on(data, last, "restored over a fresh overlay")
        check(seen(data) == "ok", "the restored process sees its rootfs changes: %s" % seen(data))
        with open(os.path.join(b.merged, "srv", "new", "added.txt")) as f:
            added = f.read()
        check(added == "added\n" and not os.path.exists(os.path.join(b.merged, "etc", "group"))
              and not os.path.exists(os.path.join(b.merged, "root"))
              and os.readlink(os.path.join(b.merged, "etc", "link")) == "/srv/new/added.txt",
              "the new rootfs holds the changes")
        env.run(["delete", "--force", "c2"])
        # --ignore-rootfs (Podman's flag): the rootfs stays the base's.
        rewind(data, last)
        restore(env, overlay_bundle(env, "c3", c, data), "c3", "--import", archive, "--ignore-rootfs")
        wait_for(lambda: seen(data) not in ("", "ok"), "the process to miss its changes")
        check(os.path.exists(os.path.join(c.merged, "etc", "group")), "--ignore-rootfs leaves the rootfs alone")
        env.run(["delete", "--force", "c3"])
        check(gone(env, "c2") and gone(env, "c3"), "deleted")
        # Hostile diffs: nothing leaves the rootfs.
        outside = os.path.join(env.tmp, "outside")
        os.makedirs(outside)
        files = good_members(archive, os.path.join(env.tmp, "good"))
        hostile_cases = [
            ("climbing_deleted", lambda: json.dump(["/../../../../" + outside.lstrip("/") + "/x"],
                                                    open(os.path.join(files, "deleted.files"), "w")),
             "climbs out"),
            ("symlink_out", lambda: write_diff(files, [entry("esc", tarfile.SYMTYPE, linkname=outside),
                                                      entry("esc/escaped")]), None),
            ("dotdot_diff", lambda: write_diff(files, [entry("../../../../" + outside.lstrip("/") + "/y")]),
             "rootfs-diff.tar entry"),
        ]
        with open(os.path.join(outside, "keep"), "w") as f:
            f.write("keep")
        for name, damage, reason in hostile_cases:
            damage()
            path = hostile_archive(env, files, name, lambda t: None)
            with Overlay(env, name) as o:
                p = env.run(["restore", "-d", "--bundle", overlay_bundle(env, name, o, data), "--import", path, name],
                            check=False, timeout=120)
                if reason:
                    check(p.returncode != 0 and reason in p.stderr and gone(env, name),
                          "%s is refused (%s): %s" % (name, reason, p.stderr.strip()[-300:]))
                else:
                    env.run(["delete", "--force", name], check=False)
            check(sorted(os.listdir(outside)) == ["keep"], "%s: nothing was written or removed outside the rootfs: %s"
                  % (name, os.listdir(outside)))
            files = good_members(archive, os.path.join(env.tmp, "good-" + name))
    check(not os.listdir(tmp), "the private unpack directories are removed: %s" % os.listdir(tmp))


def write_diff(files, adds):
    with tarfile.open(os.path.join(files, "rootfs-diff.tar"), "w", format=tarfile.PAX_FORMAT) as t:
        for add in adds:
            add(t)


if __name__ == "__main__":
    main({"export_import": test_export_import, "oci_layout": test_oci_layout, "oci_archive": test_oci_archive,
          "inspect": test_inspect, "hostile_archive": test_hostile_archive, "hostile_image": test_hostile_image,
          "registry": test_registry, "containers_storage": test_containers_storage,
          "refused_flags": test_refused_flags, "rootfs_diff": test_rootfs_diff,
          "registry_gone_mid_push": test_registry_gone_mid_push})
