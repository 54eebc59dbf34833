"""The client of bench/soak.py: numbered requests over one TCP connection, every answer checked."""
import select
import socket
import threading
import time


def payload(seq):
    """0 to 12 copies of the number in hex: answers are checked for its length."""
    return (b"%x" % seq) * (seq % 13)


class Client(threading.Thread):
    """Sends "Q SEQ PAYLOAD" lines at `rate` a second, at most `window` unanswered, and checks
    every answer: each request answered once, in order, with its payload's length and the
    server's "ok". A connection that breaks is counted and made again (what it had in
    flight is lost)."""

    def __init__(self, port, rate, window, drain_timeout):
        super().__init__(name="soak-client", daemon=True)
        self.port, self.rate, self.window, self.drain_timeout = port, rate, window, drain_timeout
        self.cycle = 0  # set by the benchmark: problems are attributed to it
        self.sent = self.answered = 0
        self.duplicated = self.out_of_order = self.errored = 0
        self.resets = []
        self.problems = []  # the first few, with their cycle
        self.seen = bytearray()  # seen[seq]: answered already
        self.expect = 0  # the oldest request on this connection not answered yet
        self.last_answer = time.monotonic()
        self.pause_max = 0.0  # longest gap between two answers since take_pause()
        self.stopping = threading.Event()
        self.sock = self._connect()

    def _connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def problem(self, text):
        if len(self.problems) < 20:
            self.problems.append({"cycle": self.cycle, "problem": text})

    def take_pause(self):
        pause, self.pause_max = self.pause_max, 0.0
        return pause

    def unanswered(self):
        return self.sent - self.answered

    def run(self):
        out, inbuf = b"", b""
        interval = 1.0 / self.rate
        next_send = time.monotonic()
        drain_until = None
        while True:
            now = time.monotonic()
            if self.stopping.is_set() and drain_until is None:
                drain_until = now + self.drain_timeout
            if drain_until is not None and (self.unanswered() == 0 or now > drain_until or self.sock is None):
                return
            if self.sock is None:
                time.sleep(0.2)
                try:
                    self.sock, self.expect = self._connect(), self.sent
                except OSError as e:
                    self.problem(f"reconnecting: {e}")
                continue
            if drain_until is None and now >= next_send and self.unanswered() < self.window:
                seq = self.sent
                self.sent += 1
                out += b"Q %d %s\n" % (seq, payload(seq))
                next_send = max(next_send + interval, now - interval)
            try:
                if out:
                    try:
                        out = out[self.sock.send(out):]
                    except BlockingIOError:
                        pass
                waiting = drain_until is not None or self.unanswered() >= self.window
                timeout = 0.05 if waiting else max(0.0, next_send - time.monotonic())
                readable, _, _ = select.select([self.sock], [self.sock] if out else [], [], timeout)
                if not readable:
                    continue
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionResetError("the server closed the connection")
            except OSError as e:
                self.resets.append({"cycle": self.cycle, "error": str(e), "unanswered": self.unanswered()})
                self.problem(f"connection broke: {e} ({self.unanswered()} requests unanswered)")
                self.sock.close()
                self.sock, out, inbuf = None, b"", b""
                continue
            inbuf += data
            *lines, inbuf = inbuf.split(b"\n")
            for line in lines:
                self.answer(line)

    def answer(self, line):
        now = time.monotonic()
        self.pause_max = max(self.pause_max, now - self.last_answer)
        self.last_answer = now
        parts = line.split()
        try:
            seq, length, status = int(parts[1]), int(parts[2]), parts[3].decode()
            if parts[0] != b"A" or len(parts) != 4:
                raise ValueError
        except (IndexError, ValueError):
            self.errored += 1
            self.problem(f"malformed answer {line[:80]!r}")
            return
        if not 0 <= seq < self.sent:
            self.errored += 1
            self.problem(f"answer to request {seq}, never sent")
            return
        if len(self.seen) <= seq:
            self.seen.extend(bytes(max(seq + 1 - len(self.seen), 65536)))
        if self.seen[seq]:
            self.duplicated += 1
            self.problem(f"request {seq} answered twice")
            return
        self.seen[seq] = 1
        self.answered += 1
        if seq != self.expect:
            self.out_of_order += 1
            self.problem(f"request {seq} answered while {self.expect} waited")
        self.expect = max(self.expect, seq + 1)
        if length != len(payload(seq)) or status != "ok":
            self.errored += 1
            self.problem(f"request {seq}: answer {line[:80]!r}, want length {len(payload(seq))} and ok")
