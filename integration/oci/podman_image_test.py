"""Checkpoint images between Podman and cryo.

podman_to_cryo: Podman (cryo as its runtime and its criu) checkpoints a busybox container with
`podman container checkpoint --create-image`; cryo restores that image straight from Podman's
store (`--image-ref containers-storage:[vfs@ROOT+RUNROOT]NAME`) into a bundle made from the
image's own spec.dump over a fresh copy of the base rootfs. The file the container wrote comes back
through Podman's rootfs-diff.tar (the counter only counts while it sees it), and the counter goes
on from the checkpoint.

cryo_to_podman: a container cryo runs by itself (its config.json naming the Podman image its rootfs
is, in Podman's rootfsImage* annotations) is checkpointed by cryo into Podman's store
(`--image-ref containers-storage:...`); `podman container restore IMAGE`, with cryo as Podman's
default runtime under the name "cryo" (a test-private containers.conf), restores it as a Podman
container, and the counter goes on."""
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from cryo_oci import CRYO, check, main, reap
from checkpoint_image_test import Overlay
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


def cryo_named_runtime(pm):
    """Podman's default runtime is cryo, by that name: Podman restores a checkpoint image only when
    the image's runtime.name annotation is its default runtime's name."""
    wrapper = pm.base[pm.base.index("--runtime") + 1]
    with open(pm.environ["CONTAINERS_CONF"], "a") as f:
        f.write('[engine.runtimes]\ncryo = ["%s"]\n' % wrapper)
    pm.base[pm.base.index("--runtime") + 1] = "cryo"


def test_cryo_to_podman(env):
    if not shutil.which("podman") or not shutil.which("skopeo"):
        raise AssertionError("podman and skopeo are installed (make deps)")
    pm = checkpoint_podman(env)
    cryo_named_runtime(pm)
    root = os.path.join(env.tmp, "cryo-own-state")
    overlay = None
    try:
        image_id = pm("image", "inspect", "--format", "{{.Id}}", "localhost/cryo-busybox").stdout.strip()
        # An overlay of the image's files: /marker, which the counter needs, travels in rootfs-diff.tar
        # and Podman applies it over the rootfs it makes from its image.
        overlay = Overlay(env, "own")
        rootfs = overlay.merged
        bundle = os.path.join(env.tmp, "bundle-own")
        os.makedirs(bundle)
        subprocess.run([CRYO, "spec", "--bundle", bundle], check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        config["root"] = {"path": rootfs, "readonly": False}
        config["process"]["args"] = ["sh", "-c", COUNTER]
        config["process"]["terminal"] = False
        # The limits Podman's containers gets here (podman_test's containers.conf): Podman's restore
        # runs where the hard limits are those, and root here cannot raise one.
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000},
                                        {"type": "RLIMIT_NPROC", "hard": 4096, "soft": 4096}]
        # Podman's cgroupfs naming (PARENT/libpod-ID): config.dump's cgroupParent brings it back there.
        config["linux"]["cgroupsPath"] = PARENT + "/libpod-k9"
        p = "io.podman.annotations.checkpoint."
        config["annotations"] = {p + "rootfsImageID": image_id, p + "rootfsImageName": "localhost/cryo-busybox:latest",
                                 p + "rawImageName": "localhost/cryo-busybox"}
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        subprocess.run([CRYO, "--root", root, "run", "-d", "--bundle", bundle, "k9"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reap()
        wait_for(lambda: count_in(rootfs) >= 10, "the counter under cryo")
        store = "containers-storage:[vfs@%s/storage+%s/run]" % (env.tmp, env.tmp)
        p = run_cryo(root, "checkpoint", "--image-ref", store + "localhost/checkpoint-k9:v1", "k9")
        check(p.returncode == 0, "cryo checkpoint into Podman's store: " + p.stderr.strip()[-400:])
        last = count_in(rootfs)
        p = pm("container", "restore", "localhost/checkpoint-k9:v1", check=False, timeout=120)
        check(p.returncode == 0, "podman container restore of cryo's image: " + (p.stdout + p.stderr).strip()[-600:])
        def count():
            p = pm("exec", "k9", "cat", "/tmp/count", check=False)
            return int(p.stdout.strip()) if p.stdout.strip().isdigit() else 0
        first = wait_for(lambda: count(), "the counter in Podman")
        later = wait_for(lambda: count() if count() > first + 3 else 0, "the counter in Podman to count on")
        check(last <= first <= last + 30 and later > first, "the counter goes on from the checkpoint (%d at the checkpoint; %d, "
              "then %d)" % (last, first, later))
        status = pm("inspect", "--format", "{{.State.Status}}", "k9").stdout.strip()
        check(status == "running", "Podman sees it running: " + status)
        pm("rm", "--force", "k9")
    finally:
        run_cryo(root, "delete", "--force", "k9")
        pm.cleanup()
        if overlay:
            overlay.__exit__(None, None, None)


if __name__ == "__main__":
    main({"podman_to_cryo": test_podman_to_cryo, "cryo_to_podman": test_cryo_to_podman})
