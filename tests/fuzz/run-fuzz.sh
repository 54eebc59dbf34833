#!/usr/bin/env bash
# Fuzzes cryo's image loader (tests/fuzz/): builds the libFuzzer targets with
# clang in a tree of their own, makes seeds from real dumps of small
# processes, and runs every target on them.
#
#   tests/fuzz/run-fuzz.sh CRYO SECONDS [TREE]
#
#   CRYO     a built cryo binary: the seeds are dumps it makes
#   SECONDS  how long each target runs
#   TREE     the clang tree (default: CRYO's build tree with "-fuzz" appended)
#
# Each target's corpus grows in TREE/fuzz/corpus/TARGET from run to run. A
# finding (crash, leak, undefined behaviour, a run over 10 s) is saved in
# TREE/fuzz/findings, printed with the command that replays it, and makes the
# exit status 1. Exit status 77: skipped (not root, or no clang).
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 CRYO SECONDS [TREE]" >&2
  exit 2
fi
cryo=$(realpath "$1")
seconds=$2
src=$(realpath "$(dirname "$0")/../..")
tree=${3:-$(dirname "$(dirname "$cryo")")-fuzz}

if [ "$(id -u)" -ne 0 ]; then
  echo "run-fuzz: skipped: the seeds are dumps, which need root" >&2
  exit 77
fi
if ! command -v clang++-14 >/dev/null; then
  echo "run-fuzz: skipped: clang++-14 is missing (make test and make fuzz install it)" >&2
  exit 77
fi

# One run at a time per tree (two ctest runs of one build share it).
mkdir -p "$tree"
exec 9>"$tree/.run-fuzz.lock"
flock 9

# ---- the clang tree ----
# -O1 with line tables only: ASan's usual trade of speed for build time.
if [ ! -f "$tree/CMakeCache.txt" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$src" -B "$tree" -DCRYO_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" >/dev/null
fi
cmake --build "$tree" --target fuzz_targets -j "$(nproc)" >"$tree/fuzz-build.log" 2>&1 || {
  tail -n 50 "$tree/fuzz-build.log" >&2
  echo "run-fuzz: the fuzz targets do not build (log: $tree/fuzz-build.log)" >&2
  exit 1
}
bin=$tree/tests/fuzz

# ---- seeds: real dumps, remade on every run ----
work=$tree/fuzz
seeds=$work/seeds
rm -rf "$seeds" "$work/dumps"
mkdir -p "$seeds" "$work/dumps" "$work/corpus" "$work/findings"

started=()
cleanup() {
  for pid in "${started[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Runs a command in a session of its own, stdio on /dev/null and no other
# inherited fd (a pipe to a process outside the tree would refuse the dump).
start() {
  (
    for fd in /proc/self/fd/*; do
      n=${fd##*/}
      if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" </dev/null >/dev/null 2>&1
  ) &
  started+=("$!")
}

# seed NAME READY_FILE: dumps the last started process once READY_FILE exists.
seed() {
  local name=$1 ready=$2 pid=${started[-1]} dump=$work/dumps/$1
  for _ in $(seq 100); do [ -e "$ready" ] && break; sleep 0.05; done
  sleep 0.2  # and what it started has exec'd
  if ! "$cryo" dump -t "$pid" -D "$dump" --leave-running 2>"$dump.log"; then
    cat "$dump.log" >&2
    echo "run-fuzz: the seed dump '$name' failed" >&2
    exit 1
  fi
  kill -KILL -- "-$pid"
  wait "$pid" 2>/dev/null || true
  "$bin/fuzz_make_seeds" "$dump" "$seeds" "$name"
}

# A lone process.
start sh -c "touch $work/dumps/ready-sleep; exec sleep 1000"
seed sleep "$work/dumps/ready-sleep"
# A tree of three with a pipe between two of them.
start sh -c "sleep 1000 | cat & touch $work/dumps/ready-pipeline; wait"
seed pipeline "$work/dumps/ready-pipeline"
# Two threads, an epoll over a pipe and an eventfd, a pidfd, a shared memfd,
# sockets (a unix pair, a TCP listener, a bound UDP socket), a signal handler
# and an interval timer.
start python3 -c "
import mmap, os, select, signal, socket, threading, time
epoll = select.epoll()
r, w = os.pipe()
epoll.register(r, select.EPOLLIN)
ev = os.eventfd(1)
epoll.register(ev, select.EPOLLIN | select.EPOLLET)
pidfd = os.pidfd_open(os.getpid())
memfd = os.memfd_create('seed')
os.ftruncate(memfd, 8192)
shared = mmap.mmap(memfd, 8192)
shared[:4] = b'seed'
pair = socket.socketpair()
pair[0].send(b'unread')
listener = socket.create_server(('127.0.0.1', 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(('127.0.0.1', 0))
signal.signal(signal.SIGUSR1, lambda *_: None)
signal.setitimer(signal.ITIMER_REAL, 1000, 1000)
threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
open('$work/dumps/ready-objects', 'w').close()
time.sleep(1000)
"
seed objects "$work/dumps/ready-objects"

# ---- the runs ----
symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
[ -x "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH=$symbolizer
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# run TARGET MAX_LEN [libFuzzer options...]
failed=()
run() {
  local target=$1 max_len=$2
  shift 2
  local corpus=$work/corpus/$target stamp=$work/findings/.start-$target
  mkdir -p "$corpus"
  touch "$stamp"
  echo "run-fuzz: $target for ${seconds}s"
  if ! "$bin/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
      -print_final_stats=1 -artifact_prefix="$work/findings/$target-" "$@" "$corpus" "$seeds/$target"; then
    echo "=================================================================="
    echo "run-fuzz: FINDING in $target: the loader crashed, leaked, hung or hit undefined behaviour"
    find "$work/findings" -name "$target-*" -newer "$stamp" | while read -r f; do
      echo "  replay: $bin/fuzz_$target $f"
    done
    echo "=================================================================="
    failed+=("$target")
    return
  fi
  # Each run adds inputs (and reduced copies of old ones). Once the corpus
  # has doubled since it was last minimized, keep only the inputs that add
  # coverage, so that replaying it does not eat the seconds of make test.
  local count last
  count=$(find "$corpus" -type f | wc -l)
  last=$(cat "$corpus.minimized" 2>/dev/null || echo 1000)
  if [ "$count" -gt $((2 * last)) ]; then
    rm -rf "$corpus.merged"
    mkdir "$corpus.merged"
    if "$bin/fuzz_$target" -merge=1 -max_len="$max_len" "$corpus.merged" "$corpus" >"$work/merge-$target.log" 2>&1; then
      rm -rf "$corpus"
      mv "$corpus.merged" "$corpus"
      find "$corpus" -type f | wc -l >"$corpus.minimized"
    else
      echo "run-fuzz: could not minimize the corpus of $target (log: $work/merge-$target.log)" >&2
    fi
  fi
}

run decode 32768
# Entropic scheduling (the default) spends most of its time on its own
# bookkeeping with this target's many features: 35 runs/s against 800.
run image_dir 65536 -entropic=0 -dict="$src/tests/fuzz/image_dir.dict"

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
echo "run-fuzz: no finding"
