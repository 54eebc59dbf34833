"""Checkpoint images between Podman and cryo.

podman_to_cryo: Podman (cryo as its runtime and its criu) checkpoints a busybox container with
`podman container checkpoint --create-image`; cryo restores that image straight from Podman's
store (`--image-ref containers-storage:[vfs@ROOT+RUNROOT]NAME`) into a bundle made from the
image's own spec.dump over a fresh copy of the base rootfs. The file the container wrote comes back
through Podman's rootfs-diff.tar (the counter only counts while it sees it), and the counter goes
on from the checkpoint."""
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from cryo_oci import CRYO, check, main, reap
from checkpoint_test import wait_for
from podman_checkpoint_test import checkpoint_podman
from podman_test import PARENT

# Counts only while /marker, which it wrote itself, is there.
COUNTER = ("echo written > /marker; i=0; while true; do if [ -e /marker ]; then i=$((i+1)); "
           "echo $i > /tmp/count.tmp && mv /tmp/count.tmp /tmp/count; fi; sleep 0.1; done")


def count_in(rootfs):
    try:
        with open(os.path.join(rootfs, "tmp", "count")) as f:
            text = f.read().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def layer_files(env, ref):
    """The files of a checkpoint image's one layer (config.dump, spec.dump...), unpacked."""
    layout = os.path.join(env.tmp, "peek")
    subprocess.run(["skopeo", "copy", "--quiet", ref, "oci:%s:peek" % layout], check=True, capture_output=True)
    with open(os.path.join(layout, "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"][7:]
    with open(os.path.join(layout, "blobs", "sha256", manifest_digest)) as f:
        manifest = json.load(f)
    out = os.path.join(env.tmp, "peek-files")
    os.makedirs(out)
    with tarfile.open(os.path.join(layout, "blobs", "sha256", manifest["layers"][0]["digest"][7:])) as t:
        t.extractall(out, filter="data")
    return manifest, out


def run_cryo(root, *args, timeout=120):
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run([CRYO, "--root", root, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                           timeout=timeout)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    reap()
    return p


def test_podman_to_cryo(env):
    if not shutil.which("podman") or not shutil.which("skopeo"):
        raise AssertionError("podman and skopeo are installed (make deps)")
    pm = checkpoint_podman(env)
    root = os.path.join(env.tmp, "cryo-own-state")
    try:
        pm("run", "-d", "--name", "k1", "--network", "none", "--cgroup-parent", PARENT, "localhost/cryo-busybox",
           "sh", "-c", COUNTER)
        wait_for(lambda: pm("exec", "k1", "cat", "/tmp/count", check=False).stdout.strip().isdigit()
                 and int(pm("exec", "k1", "cat", "/tmp/count").stdout) >= 10, "the counter in Podman")
        p = pm("container", "checkpoint", "--create-image", "localhost/checkpoint-k1:v1", "k1", check=False, timeout=120)
        check(p.returncode == 0, "podman container checkpoint --create-image: " + p.stderr.strip()[-400:])
        store = "containers-storage:[vfs@%s/storage+%s/run]" % (env.tmp, env.tmp)
        ref = store + "localhost/checkpoint-k1:v1"
        manifest, files = layer_files(env, ref)
        a = manifest.get("annotations", {})
        check(a.get("io.podman.annotations.checkpoint.name") == "k1", "Podman's image: its annotations: %s" % a)
        check(os.path.exists(os.path.join(files, "rootfs-diff.tar")), "Podman packed the rootfs changes: %s"
              % os.listdir(files))
        with open(os.path.join(files, "spec.dump")) as f:
            spec = json.load(f)
        # The bundle: the image's spec.dump over a fresh copy of the base rootfs.
        rootfs = os.path.join(env.tmp, "restored-rootfs")
        shutil.copytree(env.rootfs, rootfs, symlinks=True)
        bundle = os.path.join(env.tmp, "bundle-from-podman")
        os.makedirs(bundle)
        spec["root"] = {"path": rootfs, "readonly": False}
        spec.pop("hooks", None)  # Podman's hooks are Podman's business
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        p = run_cryo(root, "restore", "-d", "--bundle", bundle, "--image-ref", ref, "k1")
        check(p.returncode == 0, "cryo restores Podman's checkpoint image from its store: " + p.stderr.strip()[-500:])
        with open(os.path.join(rootfs, "marker")) if os.path.exists(os.path.join(rootfs, "marker")) else \
                open(os.devnull) as f:
            check(f.read().strip() == "written", "the file the container wrote came back (Podman's rootfs-diff.tar)")
        first = wait_for(lambda: count_in(rootfs), "the restored counter")
        later = wait_for(lambda: count_in(rootfs) if count_in(rootfs) > first + 3 else 0, "the counter to count on")
        check(first >= 10 and later > first, "the counter goes on from the checkpoint (%d, then %d)" % (first, later))
        p = run_cryo(root, "state", "k1")
        check(p.returncode == 0 and json.loads(p.stdout)["status"] == "running", "cryo: running")
        check(run_cryo(root, "delete", "--force", "k1").returncode == 0, "cryo delete")
    finally:
        run_cryo(root, "delete", "--force", "k1")
        pm.cleanup()


if __name__ == "__main__":
    main({"podman_to_cryo": test_podman_to_cryo})
