#!/usr/bin/env python3
"""Real servers from Debian, dumped while serving and restored: nginx (a master and
two workers sharing listening sockets, channels between them and shared memory)
and redis (threads, listeners on the same port over IPv4 and IPv6-only, state in
memory). After the restore they answer on the same ports and remember their state."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, log, reap, run, snapshot, wait_until  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(address, request, family=socket.AF_INET):
    """Sends request; reads the reply up to its first line's end (redis) or to the
    close of the connection (HTTP/1.0)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
        s.sendall(request)
        http = request.startswith(b"GET")
        data = b""
        while http or not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def answers(fn):
    try:
        fn()
        return True
    except OSError:
        return False


def round_trip(env, pid, *extra):
    before = snapshot(pid)
    log(f"tree: {sorted(before)}")
    images = env.path("images")
    env.dump(pid, images, *extra)
    env.wait_dumped(before)
    _, rpid = env.restore(images, *extra)
    check_eq(rpid, pid, "restored pid")
    return before


def stop(pid, signo):
    os.kill(pid, signo)
    status = reap([pid], timeout=30, what="the server after its stop signal").get(pid)
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          f"the restored server did not stop cleanly ({status})")


def case_nginx(env):
    port = free_port()
    conf = env.path("nginx.conf")
    with open(conf, "w") as f:
        f.write(f"daemon off; master_process on; worker_processes 2; pid {env.path('nginx.pid')};\n"
                f"error_log {env.path('nginx.err')}; events {{}}\n"
                f"http {{ access_log off; server {{ listen 127.0.0.1:{port}; location / {{ return 200 'hello'; }} }} }}\n")
    pid = env.spawn(["nginx", "-c", conf], name="nginx")
    get = lambda: ask(("127.0.0.1", port), b"GET / HTTP/1.0\r\n\r\n")  # noqa: E731
    wait_until(lambda: answers(get), 30, what="nginx to answer")
    check(get().startswith(b"HTTP/1.1 200"), "nginx does not answer 200")
    before = round_trip(env, pid)
    check_eq(len(before), 3, "nginx processes (master and two workers)")
    for _ in range(20):  # both workers take connections
        reply = get()
        check(reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello"), f"nginx answered {reply[:80]!r}")
    stop(pid, 3)  # SIGQUIT: graceful shutdown through the master's channels to its workers


def case_redis(env):
    port = free_port()
    pid = env.spawn(["redis-server", "--port", str(port), "--bind", "* -::*", "--save", "",
                     "--appendonly", "no", "--daemonize", "no", "--io-threads", "2"], name="redis")
    incr = lambda: ask(("127.0.0.1", port), b"INCR counter\r\n")  # noqa: E731
    wait_until(lambda: answers(incr), 30, what="redis to answer")
    check_eq(incr(), b":2\r\n", "INCR before the dump")
    round_trip(env, pid)
    check_eq(incr(), b":3\r\n", "INCR after the restore (IPv4)")
    check_eq(ask(("::1", port), b"INCR counter\r\n", socket.AF_INET6), b":4\r\n", "INCR after the restore (IPv6)")
    stop(pid, 15)


if __name__ == "__main__":
    run({"nginx": case_nginx, "redis": case_redis})
