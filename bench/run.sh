#!/usr/bin/env bash
# Benchmarks: ./bench/run.sh path/to/cryo  (what `make bench` runs; needs root).
# Dump and restore throughput for 64 MiB, 512 MiB and 2 GiB processes, with images on
# tmpfs and on disk, next to memcpy and file-write baselines measured in the same run;
# end-to-end latency of dump and restore for a tiny process; freeze times.
# BENCH_SIZES (MiB, comma separated), BENCH_RUNS, BENCH_TINY_RUNS, BENCH_BASELINE_RUNS, BENCH_TREE
# (N x MIB, e.g. 4x256; empty: no tree) and BENCH_TREE_RUNS override the
# defaults. Prints a table and writes it as JSON (bench/results/, or --json / BENCH_JSON); --compare OLD.json
# sets the run beside an earlier one.
set -euo pipefail
CRYO=$(readlink -f "${1:?usage: bench/run.sh path/to/cryo [--compare OLD.json] [--json OUT.json]}")
shift
exec python3 "$(dirname "$(readlink -f "$0")")/bench.py" "$CRYO" "$@"
