"""OCI hooks: order, where they run, the state they get on stdin, failures and timeouts."""
import json
import os
import time

from cryo_oci import check, main

HOST_HOOK = """#!/bin/sh
state=$(cat | tr -d '\\n')
echo "$1 $state" >> %s
"""


def test_hooks_order(env):
    log = os.path.join(env.tmp, "hooks.log")
    host = os.path.join(env.tmp, "hook.sh")
    with open(host, "w") as f:
        f.write(HOST_HOOK % log)
    os.chmod(host, 0o755)
    # startContainer runs inside the container: its script and log live in the rootfs.
    with open(os.path.join(env.rootfs, "hook.sh"), "w") as f:
        f.write(HOST_HOOK.replace("#!/bin/sh", "#!/bin/sh") % "/hooks.log")
    os.chmod(os.path.join(env.rootfs, "hook.sh"), 0o755)

    def hook(name, path=host):
        return [{"path": path, "args": ["hook.sh", name], "env": ["PATH=/bin:/usr/bin"], "timeout": 10}]

    def edit(c):
        c["hooks"] = {"prestart": hook("prestart"), "createRuntime": hook("createRuntime"),
                      "createContainer": hook("createContainer"),
                      "startContainer": hook("startContainer", "/hook.sh"),
                      "poststart": hook("poststart"), "poststop": hook("poststop")}
    bundle = env.bundle("hk", ["sleep", "100"], edit=edit)
    env.run(["create", "--bundle", bundle, "hk"])
    pid = env.state("hk")["pid"]
    names = [line.split(" ", 1)[0] for line in open(log).read().splitlines()]
    check(names == ["prestart", "createRuntime", "createContainer"], "create runs the create hooks in order: %s" % names)
    env.run(["start", "hk"])
    inside = os.path.join(env.rootfs, "hooks.log")
    for _ in range(100):
        if os.path.exists(inside):
            break
        time.sleep(0.05)
    check(os.path.exists(inside) and open(inside).read().startswith("startContainer {"),
          "startContainer runs inside the container")
    env.run(["delete", "--force", "hk"])
    lines = open(log).read().splitlines()
    names = [line.split(" ", 1)[0] for line in lines]
    check(names == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"], "hook order: %s" % names)
    states = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in lines}
    check(states["createRuntime"]["status"] == "creating" and states["createRuntime"]["pid"] == pid,
          "createRuntime gets state creating with the init pid")
    check(states["poststart"]["status"] == "running", "poststart gets state running")
    check(states["poststop"]["status"] == "stopped" and states["poststop"]["id"] == "hk", "poststop gets state stopped")
    check(states["prestart"]["bundle"] == os.path.realpath(bundle), "hooks get the bundle path")


def test_hook_failures(env):
    bundle = env.bundle("fail", ["true"], edit=lambda c: c.update(
        hooks={"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}))
    p = env.run(["create", "--bundle", bundle, "fail"], check=False)
    check(p.returncode != 0 and "createRuntime" in p.stderr and "status 3" in p.stderr,
          "a failing createRuntime hook fails create: " + p.stderr.strip())
    check(env.run(["state", "fail"], check=False).returncode != 0, "a failed create leaves no container")
    bundle = env.bundle("slow", ["true"], edit=lambda c: c.update(
        hooks={"prestart": [{"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1}]}))
    start = time.time()
    p = env.run(["create", "--bundle", bundle, "slow"], check=False)
    check(p.returncode != 0 and "timed out" in p.stderr and time.time() - start < 8,
          "a hook past its timeout is killed and fails create: " + p.stderr.strip())


if __name__ == "__main__":
    main({"order": test_hooks_order, "failures": test_hook_failures})
