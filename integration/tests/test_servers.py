#!/usr/bin/env python3
"""Real servers from Debian, dumped while serving and restored: nginx (a master and
two workers sharing listening sockets, channels between them and shared memory),
redis (threads, listeners on the same port over IPv4 and IPv6-only, state in
memory), Node.js (libuv's epoll loop, its thread pool and V8's threads, timers),
memcached (worker threads woken through pipes), a Java HTTP server (a JVM with
its JIT, GC and pool threads and a heap of data) and a Go HTTP server (goroutines
on a few threads, each with its alternate signal stack, and the netpoller). After the restore they answer
on the same ports and remember their state."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from harness import check, check_eq, free_port, log, reap, run, snapshot, wait_until  # noqa: E402



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


def stop(pid, signo, dies_of_it=False, clean_exit=0):
    """Stops the restored server; it must exit with clean_exit (or, with no handler,
    die of the signal)."""
    os.kill(pid, signo)
    status = reap([pid], timeout=30, what="the server after its stop signal").get(pid)
    clean = status is not None and (
        (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signo) if dies_of_it
        else (os.WIFEXITED(status) and os.WEXITSTATUS(status) == clean_exit))
    check(clean, f"the restored server did not stop as it should ({status})")


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


NODE_SERVER = r"""
const http = require('http');
let hits = 0, ticks = 0;
setInterval(() => { ticks++; }, 10);
http.createServer((req, res) => {
  hits++;
  const seen = ticks;
  setTimeout(() => res.end(`hits ${hits} ticking ${ticks > seen}\n`), 50);
}).listen(Number(process.argv[2]), '127.0.0.1');
"""


def case_node(env):
    port = free_port()
    script = env.path("server.js")
    with open(script, "w") as f:
        f.write(NODE_SERVER)
    pid = env.spawn(["node", script, str(port)], name="node")
    get = lambda: ask(("127.0.0.1", port), b"GET / HTTP/1.0\r\n\r\n")  # noqa: E731
    wait_until(lambda: answers(get), 30, what="node to answer")
    check(get().endswith(b"hits 2 ticking true\n"), "node's second answer")
    round_trip(env, pid)
    reply = get()
    check(reply.endswith(b"hits 3 ticking true\n"), f"node after the restore answered {reply[-40:]!r}")
    stop(pid, 15, dies_of_it=True)


def case_memcached(env):
    port = free_port()
    pid = env.spawn(["memcached", "-u", "nobody", "-p", str(port), "-l", "127.0.0.1", "-t", "4", "-U", "0"],
                    name="memcached")
    cmd = lambda text: ask(("127.0.0.1", port), text)  # noqa: E731
    wait_until(lambda: answers(lambda: cmd(b"version\r\n")), 30, what="memcached to answer")
    check_eq(cmd(b"set key 0 0 5\r\nvalue\r\n"), b"STORED\r\n", "set before the dump")
    check_eq(cmd(b"incr hits 1\r\n"), b"NOT_FOUND\r\n", "incr of a missing key")
    round_trip(env, pid)
    check_eq(cmd(b"get key\r\n").split(b"\r\n")[:2], [b"VALUE key 0 5", b"value"], "get after the restore")
    for _ in range(8):  # connections go round the worker threads
        check_eq(cmd(b"version\r\n")[:8], b"VERSION ", "memcached after the restore")
    stop(pid, 15)


def counting_server_round_trip(env, pid, port, what, want_sum, startup=30):
    """A server that answers "hits N sum S ticking true" (its request count, a sum
    over its heap, and whether its background work goes on): it answers twice,
    is dumped and restored, and answers the third time as it should."""
    get = lambda: ask(("127.0.0.1", port), b"GET / HTTP/1.0\r\n\r\n")  # noqa: E731
    wait_until(lambda: answers(get), startup, what=f"{what} to answer")
    check(get().endswith(f"hits 2 sum {want_sum} ticking true\n".encode()), f"{what}'s second answer")
    before = round_trip(env, pid)
    log(f"{what} has {len(before[pid]['tids'])} threads")
    reply = get()
    check(reply.endswith(f"hits 3 sum {want_sum} ticking true\n".encode()),
          f"{what} after the restore answered {reply[-60:]!r}")


JAVA_SERVER = r"""
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.util.concurrent.atomic.AtomicLong;

public class Server {
  public static void main(String[] args) throws Exception {
    AtomicLong ticks = new AtomicLong(), hits = new AtomicLong();
    long[] data = new long[1 << 22];  // 32 MiB of heap
    for (int i = 0; i < data.length; i++) data[i] = i * 31L;
    Thread ticker = new Thread(() -> {
      while (true) {
        ticks.incrementAndGet();
        try { Thread.sleep(5); } catch (InterruptedException e) { return; }
      }
    });
    ticker.setDaemon(true);
    ticker.start();
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 0);
    server.createContext("/", exchange -> {
      long sum = 0;
      for (long v : data) sum += v;
      long seen = ticks.get();
      try { Thread.sleep(30); } catch (InterruptedException e) { }
      byte[] body = ("hits " + hits.incrementAndGet() + " sum " + sum + " ticking " + (ticks.get() > seen) + "\n").getBytes();
      exchange.sendResponseHeaders(200, body.length);
      exchange.getResponseBody().write(body);
      exchange.close();
    });
    server.start();
  }
}
"""


def case_java(env):
    port = free_port()
    source = env.path("Server.java")
    with open(source, "w") as f:
        f.write(JAVA_SERVER)
    # The JVM maps its performance counters from /tmp/hsperfdata_USER/PID (a shared file
    # mapping the dump carries) and leaves the directory behind: removed when it was new.
    perf_dir = "/tmp/hsperfdata_" + pwd.getpwuid(os.getuid()).pw_name
    perf_dir_was_there = os.path.exists(perf_dir)
    pid = env.spawn(["java", "-Xmx256m", source, str(port)], name="java")
    counting_server_round_trip(env, pid, port, "the JVM", sum(i * 31 for i in range(1 << 22)), startup=60)
    stop(pid, 15, clean_exit=143)
    if not perf_dir_was_there:
        shutil.rmtree(perf_dir, ignore_errors=True)


GO_SERVER = """package main

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	var ticks, hits int64
	data := make([]int64, 1<<22)
	for i := range data {
		data[i] = int64(i) * 7
	}
	for w := 0; w < 4; w++ {
		go func() {
			for {
				atomic.AddInt64(&ticks, 1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var sum int64
		for _, v := range data {
			sum += v
		}
		seen := atomic.LoadInt64(&ticks)
		time.Sleep(20 * time.Millisecond)
		fmt.Fprintf(w, "hits %d sum %d ticking %v\\n", atomic.AddInt64(&hits, 1), sum, atomic.LoadInt64(&ticks) > seen)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		panic(err)
	}
}
"""


def build_go_server(env):
    src = env.path("gosrv")
    os.mkdir(src)
    with open(os.path.join(src, "main.go"), "w") as f:
        f.write(GO_SERVER)
    with open(os.path.join(src, "go.mod"), "w") as f:
        f.write("module gosrv\ngo 1.19\n")
    build_env = dict(os.environ, HOME=src, GOCACHE=os.path.join(src, "cache"), GOPATH=os.path.join(src, "gopath"),
                     GOFLAGS="-mod=mod", CGO_ENABLED="0")
    subprocess.run(["go", "build", "-o", "server", "."], cwd=src, env=build_env, check=True, timeout=300)
    return os.path.join(src, "server")


def case_go(env):
    port = free_port()
    pid = env.spawn([build_go_server(env), str(port)], name="go")
    counting_server_round_trip(env, pid, port, "the Go server", sum(i * 7 for i in range(1 << 22)))
    stop(pid, 15, dies_of_it=True)


def case_go_killed(env):
    """`cryo dump -R` of the Go server killed at each of its steps (every syscall cryo
    runs in a thread included; most Go threads sit on goroutine stacks, whose rescue
    frames are lent by the main thread): after each the server answers, counting on."""
    port = free_port()
    pid = env.spawn([build_go_server(env), str(port)], name="go")
    get = lambda: ask(("127.0.0.1", port), b"GET / HTTP/1.0\r\n\r\n")  # noqa: E731
    wait_until(lambda: answers(get), 30, what="the Go server to answer")
    want_sum = sum(i * 7 for i in range(1 << 22))
    hits = 1
    for step in range(1, 200):
        result = env.cryo("dump", "-t", pid, "-D", env.path(f"images-{step}"), "-R", expect=None,
                          env_extra={"CRYO_FAILPOINT": f"@{step}"})
        hits += 1
        reply = get()
        check(reply.endswith(f"hits {hits} sum {want_sum} ticking true\n".encode()),
              f"after cryo was killed at step {step}: the Go server answered {reply[-60:]!r}")
        if result.returncode == 0:
            break
        check_eq(result.returncode, -signal.SIGKILL, f"exit code of cryo with the failpoint @{step}")
    log(f"the Go server answered after each of {step - 1} kills")
    check(step > 10, f"only {step} steps")
    stop(pid, 15, dies_of_it=True)


if __name__ == "__main__":
    run({"nginx": case_nginx, "redis": case_redis, "node": case_node, "memcached": case_memcached, "java": case_java,
         "go": case_go, "go_killed": case_go_killed})
