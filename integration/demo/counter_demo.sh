#!/usr/bin/env bash
# counter_demo.sh CRYO: a shell counter is checkpointed, disappears, comes back and
# counts on from where it stopped -- and once more from the same image.
#
#   make demo        (or: integration/demo/counter_demo.sh build/runtime/cryo)
#
# DEMO_PERIOD (default 2) is the counter's period in seconds; DEMO_TMP where the
# work dir goes. Exits non-zero if the counter did not come back as it should.
set -euo pipefail

CRYO=${1:?usage: counter_demo.sh path/to/cryo}
CRYO=$(readlink -f "$CRYO")
PERIOD=${DEMO_PERIOD:-2}

# A restored tree is reparented to the nearest child subreaper when `cryo restore -d`
# returns. bash cannot become one, so a small python3 parent does (the flag survives
# exec) and reaps whatever is reparented to it.
if [ -z "${CRYO_DEMO_REAPER:-}" ]; then
  exec python3 "$(dirname "$(readlink -f "$0")")/subreaper.py" "$0" "$@"
fi

[ -x "$CRYO" ] || { echo "counter_demo: $CRYO is not built" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "counter_demo: run as root" >&2; exit 1; }

work=$(mktemp -d "${DEMO_TMP:-/tmp}/cryo-demo.XXXXXX")
counter_pid=
cleanup() {
  if [ -n "$counter_pid" ] && [ -e "/proc/$counter_pid" ]; then kill_tree "$counter_pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
run() { printf '%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

log="$work/count.log"
last_count() { tail -n 1 "$log" | sed -n 's/^Count: //p'; }
lines() { wc -l < "$log"; }

# Prints the log's lines after line $2 (default: what it has now) as they come, until
# it has $1 lines.
follow() {
  local want=$1 shown=${2:-$(lines)} deadline=$((SECONDS + 30))
  while [ "$(lines)" -lt "$want" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the log stopped at $(lines) lines"
    sleep 0.1
    local now
    now=$(lines)
    if [ "$now" -gt "$shown" ]; then sed -n "$((shown + 1)),${now}p" "$log" | sed 's/^/    /'; shown=$now; fi
  done
}

kill_tree() {
  local pid=$1 kids
  kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
  kill -KILL "$pid" $kids 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while [ -e "/proc/$pid" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "pid $pid did not go away"
    sleep 0.05
  done
}

cat > "$work/counter.sh" <<'SCRIPT'
n=0
while :; do
  n=$((n+1))
  echo "Count: $n" >> "$1"
  sleep "$2"
done
SCRIPT

say "Start a counter: a bash loop that appends 'Count: N' to $log every ${PERIOD}s"
touch "$log"
# The counter gets only stdin/stdout/stderr: an fd this script inherited (a pipe from
# whatever started it) would tie the counter to a process outside its tree.
(
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  exec bash "$work/counter.sh" "$log" "$PERIOD" </dev/null >/dev/null 2>&1
) &
counter_pid=$!
disown "$counter_pid"  # no job notices; bash still reaps it once the dump kills it
echo "    counter pid $counter_pid"
follow 3 0

say "Checkpoint it (it is a shell job: same session as this script, hence --shell-job)"
run "$CRYO" dump -t "$counter_pid" -D "$work/images" --shell-job -o dump.log -v 4
deadline=$((SECONDS + 10))
while [ -e "/proc/$counter_pid" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "pid $counter_pid still exists after the dump"
  sleep 0.05
done
stopped_at=$(last_count)
echo "    pid $counter_pid is gone; the log stopped at Count: $stopped_at"
echo "    image: $(du -sh "$work/images" | cut -f1) in $work/images; stats: $(cat "$work/images/stats-dump.json" 2>/dev/null || echo none)"

say "Wait two periods: nothing is counting"
sleep "$(awk -v p="$PERIOD" 'BEGIN { print 2 * p + 0.5 }')"
[ "$(last_count)" = "$stopped_at" ] || fail "the log moved while the counter was checkpointed"
echo "    still Count: $stopped_at"

for round in 1 2; do
  say "Restore #$round from the same image (detached: cryo returns once it runs)"
  before=$(lines)
  echo "    the log has $before lines, the last one Count: $(last_count)"
  run "$CRYO" restore -D "$work/images" --shell-job -d --pidfile "$work/pid.$round" -o "restore.$round.log" -v 4
  restored=$(cat "$work/pid.$round")
  [ "$restored" = "$counter_pid" ] || fail "restored pid $restored, want $counter_pid"
  echo "    the counter is back as pid $restored ($(tr -d '\0' < /proc/"$restored"/comm))"
  follow $((before + 3)) "$before"
  first=$(sed -n "$((before + 1))p" "$log" | sed -n 's/^Count: //p')
  [ "$first" = "$((stopped_at + 1))" ] || fail "restore #$round went on with Count: $first, want $((stopped_at + 1))"
  echo "    it went on from Count: $first"
  say "Kill it"
  kill_tree "$counter_pid"
  echo "    pid $counter_pid is gone"
done

say "Demo OK: the counter stopped at $stopped_at and came back twice with $((stopped_at + 1)), pid $counter_pid both times"
