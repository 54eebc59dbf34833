"""The web-server demo's server: answers every GET with "Done after checkpoint!" after
DELAY seconds (HTTP/1.1, a thread per connection).

    web_server.py ADDRESS PORT DELAY READY [GO]

PORT 0 takes a free one. With GO it first waits for that file to exist (a test sets up
the server's network namespace meanwhile). Once listening it writes "READY port=N" to
READY."""
import http.server
import os
import sys
import time

address, port, delay, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
go = sys.argv[5] if len(sys.argv) > 5 else None
while go and not os.path.exists(go):
    time.sleep(0.02)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(delay)
        body = b"Done after checkpoint!\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer((address, port), Handler)
server.daemon_threads = True
with open(ready + ".tmp", "w") as f:
    f.write(f"READY port={server.server_address[1]}\n")
os.rename(ready + ".tmp", ready)
server.serve_forever()
