"""The server bench/soak.py checkpoints over and over (standard library only).

  python3 soak_server.py PORTFILE

Listens on 127.0.0.1 (a free port, written to PORTFILE once it listens) and serves one
connection at a time. A request is the line "Q SEQ PAYLOAD"; the answer is
"A SEQ LEN STATUS", LEN the payload's length and STATUS "ok", or "gap:EXPECTED" when SEQ
is not one more than the last request's on this connection (the server's own view of a
lost or repeated request). Single-threaded, so that a dump catches it in a plain read or
write.
"""
import os
import socket
import sys


def serve(conn):
    expect = None
    reader = conn.makefile("rb")
    for line in reader:
        parts = line.split(b" ", 2)
        try:
            seq = int(parts[1])
            length = len(parts[2].rstrip(b"\n")) if len(parts) > 2 else 0
        except (IndexError, ValueError):
            conn.sendall(b"A -1 0 bad-request\n")
            continue
        status = b"ok" if expect is None or seq == expect else b"gap:%d" % expect
        expect = seq + 1
        conn.sendall(b"A %d %d %s\n" % (seq, length, status))


def main():
    port_file = sys.argv[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{listener.getsockname()[1]}\n")
    os.rename(port_file + ".tmp", port_file)
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn)
        except OSError:
            pass  # the client went away: wait for the next one
        finally:
            conn.close()


if __name__ == "__main__":
    main()
