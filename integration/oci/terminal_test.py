"""process.terminal and exec -t through a console socket: the pty master comes to us."""
import os
import socket
import threading

from cryo_oci import check, main, run_on_pty


class ConsoleSocket:
    """Listens like conmon/containerd do and collects what the pty master prints."""

    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.output = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.server.accept()
        self.server.settimeout(20)
        msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        conn.close()
        self.name = msg.decode(errors="replace")
        master = fds[0]
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the slave side is closed
                break
            if not data:
                break
            self.output += data
        os.close(master)

    def wait(self):
        self.thread.join(20)
        self.server.close()
        return self.output.decode(errors="replace")


def test_terminal(env):
    sock = ConsoleSocket(os.path.join(env.tmp, "console.sock"))
    bundle = env.bundle("tty", ["sh", "-c", "tty; stty size; echo hello-tty"], terminal=True,
                        edit=lambda c: c["process"].update(consoleSize={"height": 30, "width": 100}))
    env.run(["create", "--bundle", bundle, "--console-socket", sock.path, "tty"])
    env.run(["start", "tty"])
    out = sock.wait()
    check("/dev/pts/0" in out and "hello-tty" in out, "the container's stdio is the pty: " + repr(out))
    check("30 100" in out, "consoleSize sets the window size")
    check(sock.name.startswith("/dev/pts/"), "the console socket message names the pty: " + sock.name)
    env.wait_status("tty", "stopped")
    env.run(["delete", "tty"])
    bundle = env.bundle("notty", ["true"], terminal=True)
    p = env.run(["create", "--bundle", bundle, "notty"], check=False)
    check(p.returncode != 0 and "console-socket" in p.stderr, "terminal without --console-socket fails clearly")


def test_exec_tty(env):
    bundle = env.bundle("ex", ["sleep", "100"])
    env.run(["run", "-d", "--bundle", bundle, "ex"])
    sock = ConsoleSocket(os.path.join(env.tmp, "exec.sock"))
    p = env.run(["exec", "-t", "--console-socket", sock.path, "ex", "sh", "-c", "tty; echo exec-tty"])
    out = sock.wait()
    check(p.returncode == 0 and "/dev/pts/" in out and "exec-tty" in out, "exec -t gets a pty: " + repr(out))
    p = env.run(["exec", "ex", "sh", "-c", "tty"], check=False)
    check("not a tty" in p.stdout + p.stderr, "exec without -t has no tty")
    env.run(["delete", "--force", "ex"])


def cryo_on_pty(env, args, send):
    """Runs cryo with a pty as its stdio and returns (exit code, what it printed)."""
    return run_on_pty([os.environ.get("CRYO", "cryo"), "--root", env.root] + args, send, timeout=20)


def test_interactive(env):
    bundle = env.bundle("it", ["sh"], terminal=True)
    code, out = cryo_on_pty(env, ["run", "--bundle", bundle, "it"], "echo typed-$((1+2)); tty; exit 4\n")
    check(code == 4 and "typed-3" in out and "/dev/pts/0" in out, "run with a terminal and no console socket "
          "proxies our terminal: %d %r" % (code, out))
    bundle = env.bundle("it2", ["sleep", "100"])
    env.run(["run", "-d", "--bundle", bundle, "it2"])
    code, out = cryo_on_pty(env, ["exec", "-t", "it2", "sh"], "tty; exit 6\n")
    check(code == 6 and "/dev/pts/" in out, "exec -t without a console socket: %d %r" % (code, out))
    env.run(["delete", "--force", "it2"])


if __name__ == "__main__":
    main({"terminal": test_terminal, "exec_tty": test_exec_tty, "interactive": test_interactive})
