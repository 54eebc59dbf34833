#!/usr/bin/env python3
"""Pages over the network: `cryo dump --page-server --address A --port P` sends pages.img
to `cryo page-server -D DIR --port P` (TCP, or TLS with certificates made here by
openssl); the dump's directory and the server's pages.img together restore the tree,
whose memory checks itself. A stream cut short, or garbage, is refused by the server,
which keeps nothing; the dump whose server goes away fails and leaves the tree running."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, log, read_text, reap, run, snapshot, state, wait_until  # noqa: E402


def start_lazymem(env, mib=64):
    name = env._unique("lazymem")
    ready, report = env.path(name + ".ready"), env.path(name + ".report")
    pid = env.spawn([env.workload("lazymem"), ready, report, "--mib", str(mib)])
    env.wait_ready(ready, pid)
    return pid, report


def start_server(env, directory, *extra):
    """cryo page-server on a free port of loopback; returns (Popen, port, stderr path)."""
    os.makedirs(directory, exist_ok=True)
    proc, out, err = env.cryo_background("page-server", "-D", directory, "--address", "127.0.0.1", "--port", "0",
                                         "-v", "4", *extra)
    def port_or_exit():
        check(proc.poll() is None, "the page server exited: " + (read_text(err, "") or "").strip())
        return (read_text(out, "") or "").strip() or None
    port = int(wait_until(port_or_exit, 20, what="the page server's port"))
    log(f"page server {proc.pid} listens on port {port}")
    return proc, port, err


def wait_server(proc, timeout=60):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def dump_restore_through(env, server_extra=(), dump_extra=()):
    pid, report = start_lazymem(env)
    before = snapshot(pid)
    server_dir, local = env.path("server"), env.path("local")
    server, port, server_err = start_server(env, server_dir, *server_extra)
    env.dump(pid, local, "--page-server", "--address", "127.0.0.1", "--port", port, *dump_extra)
    env.wait_dumped(before)
    check_eq(wait_server(server), 0, "page server's exit code (stderr: " + (read_text(server_err, "") or "") + ")")
    check(not os.path.exists(os.path.join(local, "pages.img")), "the dump kept pages.img itself")
    check(os.path.getsize(os.path.join(server_dir, "pages.img")) > 64 << 20, "the server holds no whole pages.img")
    # Joined for the restore: the server's pages.img beside the dump's files.
    shutil.copy(os.path.join(server_dir, "pages.img"), local)
    _, rpid = env.restore(local)
    check_eq(rpid, pid, "restored pid")
    env.trigger_and_report(pid, report)


def case_loopback(env):
    dump_restore_through(env)


def make_certs(env):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, and a
    second CA that signed neither."""
    d = env.path("tls")
    os.makedirs(d)

    def sh(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d, capture_output=True)

    for ca in ("ca", "otherca"):
        sh("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "1",
           "-subj", f"/CN=cryo test {ca}")
    for name, ca in (("server", "ca"), ("client", "ca"), ("stranger", "otherca")):
        ext = os.path.join(d, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        sh("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
           f"/CN={name}")
        sh("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
           "-out", f"{name}.pem", "-days", "1", "-extfile", ext)
    return d


def tls_args(d, name, ca="ca"):
    return ["--tls", "--tls-cacert", os.path.join(d, f"{ca}.pem"), "--tls-cert", os.path.join(d, f"{name}.pem"),
            "--tls-key", os.path.join(d, f"{name}.key")]


def case_tls(env):
    d = make_certs(env)
    # A client whose certificate another CA signed is turned away, the tree untouched.
    pid, _ = start_lazymem(env, mib=8)
    server, port, server_err = start_server(env, env.path("refusing"), *tls_args(d, "server"))
    result = env.dump(pid, env.path("stranger"), "-R", "--page-server", "--address", "127.0.0.1", "--port", port,
                      *tls_args(d, "stranger", ca="otherca"), expect=1)
    check("TLS" in result.stderr, f"the refused handshake is not named: {result.stderr.strip()}")
    check(wait_server(server) != 0, "the page server took a stranger's pages")
    check(not os.path.exists(env.path("refusing", "pages.img")), "the page server kept pages of a stranger")
    check(state(pid) not in (None, "Z", "T", "t"), "the tree stopped after the refused dump")
    os.kill(pid, signal.SIGKILL)
    reap([pid])
    dump_restore_through(env, server_extra=tls_args(d, "server"), dump_extra=tls_args(d, "client"))


class CuttingProxy:
    """Forwards one connection to the page server and cuts both ways after `limit`
    bytes from the dump, as a network that goes away would."""

    def __init__(self, port, limit):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.forwarded = 0
        self.thread = threading.Thread(target=self._run, args=(port, limit), daemon=True)
        self.thread.start()

    def _run(self, port, limit):
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", port))

        def back():
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
        threading.Thread(target=back, daemon=True).start()
        try:
            while self.forwarded < limit:
                data = client.recv(min(65536, limit - self.forwarded))
                if not data:
                    break
                upstream.sendall(data)
                self.forwarded += len(data)
        finally:
            for s in (upstream, client, self.listener):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def case_refused(env):
    # Garbage: not a page stream at all.
    server, port, server_err = start_server(env, env.path("garbage"))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(os.urandom(4096))
    check(wait_server(server) != 0, "the page server took garbage")
    check("not a cryo page stream" in (read_text(server_err, "") or ""),
          "the page server does not say what it refused: " + (read_text(server_err, "") or ""))
    check(not os.listdir(env.path("garbage")), "the page server left files after garbage")

    # A stream cut after 5 MiB: the server refuses it, the dump fails, the tree runs on.
    pid, report = start_lazymem(env)
    server, port, server_err = start_server(env, env.path("cut"))
    proxy = CuttingProxy(port, 5 << 20)
    result = env.dump(pid, env.path("local"), "--page-server", "--address", "127.0.0.1", "--port", proxy.port,
                      expect=1)
    check("page server" in result.stderr, f"the dump does not name the page server: {result.stderr.strip()}")
    check(wait_server(server) != 0, "the page server accepted a stream cut short")
    check("truncated" in (read_text(server_err, "") or ""),
          "the page server does not call the stream truncated: " + (read_text(server_err, "") or ""))
    check(not os.listdir(env.path("cut")), "the page server kept part of a cut stream")
    check(not os.path.exists(env.path("local", "inventory.img")), "the failed dump left an image")
    check(state(pid) not in (None, "Z", "T", "t"), "the tree is not running after the failed dump")
    # The tree is whole: it verifies its memory where it stands.
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"loopback": case_loopback, "tls": case_tls, "refused": case_refused})
