#!/usr/bin/env bash
# webserver_demo.sh CRYO: a Python web server is checkpointed in the middle of a
# 10-second request, with its TCP connection; it comes back and the waiting curl
# gets its whole answer, never noticing.
#
#   make demo        (or: integration/demo/webserver_demo.sh build/runtime/cryo)
set -euo pipefail

CRYO=${1:?usage: webserver_demo.sh path/to/cryo}
CRYO=$(readlink -f "$CRYO")

# A restored server is reparented to the nearest child subreaper when
# `cryo restore -d` returns: a small python3 parent becomes one and reaps.
if [ -z "${CRYO_DEMO_REAPER:-}" ]; then
  exec python3 "$(dirname "$(readlink -f "$0")")/subreaper.py" "$0" "$@"
fi

[ -x "$CRYO" ] || { echo "webserver_demo: $CRYO is not built" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "webserver_demo: run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/cryo-webdemo.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/server.py" <<'PY'
import http.server, sys, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(10)
        body = b"Done after checkpoint!\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY

say "A web server whose answer takes 10 seconds, on 127.0.0.1:$port"
# (descriptors this script may have inherited are not passed on to the server)
setsid python3 -c 'import os, sys; os.closerange(3, 1 << 16); os.execvp(sys.argv[1], sys.argv[1:])' \
  python3 "$work/server.py" "$port" </dev/null >"$work/server.log" 2>&1 &
server_pid=$!
disown "$server_pid"
python3 -c "
import socket, time
for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', $port)).close()
        break
    except OSError:
        time.sleep(0.1)
"

say "curl asks for a page (and waits)"
start=$SECONDS
curl -sS -w 'HTTP %{http_code}\n' "http://127.0.0.1:$port/" >"$work/curl.out" 2>&1 &
curl_pid=$!
sleep 2

say "cryo dump --tcp-established: the server (pid $server_pid) stops in the middle of the request"
printf '%s$ cryo dump -t %s -D %s --tcp-established%s\n' "$bold" "$server_pid" "$work/img" "$plain"
"$CRYO" dump -t "$server_pid" -D "$work/img" --tcp-established
sleep 0.5
[ -e "/proc/$server_pid" ] && [ "$(awk '{print $3}' "/proc/$server_pid/stat")" != Z ] && fail "the server still runs"
echo "    the server is gone; curl still waits (its packets are held by the network lock)"
sleep 2

say "cryo restore --tcp-established: the server comes back with its connection"
printf '%s$ cryo restore -D %s --tcp-established -d%s\n' "$bold" "$work/img" "$plain"
"$CRYO" restore -D "$work/img" --tcp-established -d
echo "    restored pid $server_pid"

wait "$curl_pid" || fail "curl failed: $(cat "$work/curl.out")"
say "curl's answer, after $((SECONDS - start)) seconds:"
sed 's/^/    /' "$work/curl.out"
grep -q "Done after checkpoint!" "$work/curl.out" && grep -q "HTTP 200" "$work/curl.out" || fail "wrong answer"
say "The web-server demo worked."
