#!/usr/bin/env python3
"""A Python asyncio server, the shape of most modern Python services: an epoll
loop with its self-pipe socketpair, a signal handler behind set_wakeup_fd, a
periodic task, a thread handing work to the loop, and a TCP echo server with a
client connected. Dumped with --tcp-established and restored, it goes on: the
connected client is still answered, new clients are served, the ticks go on."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, progress, run, snapshot, wait_progress  # noqa: E402

PROGRAM = r'''
import asyncio, os, signal, sys, threading, time
ready, report, progress_path = sys.argv[1:4]

def publish(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

async def echo(reader, writer):
    while data := await reader.readline():
        writer.write(b"echo " + data)
        await writer.drain()
    writer.close()

async def main():
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, done.set)
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    handed = []
    def worker():  # hands work to the loop from another thread (the self-pipe)
        for i in range(1000000):
            loop.call_soon_threadsafe(handed.append, i)
            time.sleep(0.01)
    threading.Thread(target=worker, daemon=True).start()
    ticks = 0
    publish(ready, f"READY pid={os.getpid()} port={port}\n")
    while not done.is_set():
        ticks += 1
        publish(progress_path, f"{ticks} {len(handed)}\n")
        try:
            await asyncio.wait_for(done.wait(), 0.02)
        except asyncio.TimeoutError:
            pass
    before = len(handed)
    await asyncio.sleep(0.2)
    problems = [] if len(handed) > before else ["the thread no longer reaches the loop"]
    if handed != list(range(len(handed))):
        problems.append("work from the thread was lost or reordered")
    server.close()
    publish(report, "OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n")

asyncio.run(main())
'''


def ask(sock, text):
    sock.sendall(text.encode() + b"\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        check(chunk, f"the server closed the connection while answering {text!r}")
        got += chunk
    return got.decode()


def case_server(env):
    pid, info, report, prog = env.start_python(PROGRAM, "asyncio_server")
    port = int(info["port"])
    wait_progress(prog, 5)
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    check_eq(ask(client, "before"), "echo before\n", "answer before the dump")
    before = snapshot(pid)

    images = env.path("images")
    env.dump(pid, images, "--tcp-established")
    env.wait_dumped(before)
    at_dump = progress(prog)
    client.sendall(b"while dumped\n")  # held by the network lock, answered after restore

    _, rpid = env.restore(images, "--tcp-established")
    check_eq(rpid, pid, "restored pid")
    got = b""
    while got.count(b"\n") < 1:
        chunk = client.recv(4096)
        check(chunk, "the connected client was cut off after the restore")
        got += chunk
    check_eq(got.decode(), "echo while dumped\n", "answer to what was sent while dumped")
    check_eq(ask(client, "after"), "echo after\n", "answer after the restore")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as fresh:
        check_eq(ask(fresh, "new"), "echo new\n", "answer to a new client")
    wait_progress(prog, at_dump[0] + 5)
    wait_progress(prog, at_dump[1] + 5, index=1)
    client.close()
    env.trigger_and_report(pid, report)


if __name__ == "__main__":
    run({"server": case_server})
