#!/usr/bin/env bash
# Benchmarks: ./bench/run.sh path/to/cryo  (what `make bench` runs; needs root).
# Dump and restore throughput for 64 MiB, 512 MiB and 2 GiB processes, with images on
# tmpfs and on disk, next to memcpy and file-write baselines measured in the same run;
# end-to-end latency of dump and restore for a tiny process; freeze times.
# BENCH_SIZES (MiB, comma separated), BENCH_TINY_RUNS and BENCH_BASELINE_RUNS override the defaults.
set -euo pipefail
CRYO=$(readlink -f "${1:?usage: bench/run.sh path/to/cryo}")
cd "$(dirname "$0")/.."
exec python3 bench/bench.py "$CRYO"
