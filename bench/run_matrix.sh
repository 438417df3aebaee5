#!/usr/bin/env bash
# Runs spool-bench over a matrix of engines x workloads and prints one JSON line per run
# (the fields of docs/benchmarks.md, "The JSON line"). Feed the output to bench/plot.py.
#
#   bash bench/run_matrix.sh DIR [sweep|table] > results.jsonl
#
#   sweep  (default) ingest 4 KiB at 1, 4, 16, 64 producers, and ingest at 64 producers
#          with 1, 4, 16, 64 KiB messages: throughput and p99 against producers and size.
#   table  the table of docs/benchmarks.md: ingest 4 KiB x 64, ingest 64 KiB x 64,
#          latency 4 KiB x 1, mixed x 64, ingest of email sizes x 64; every engine;
#          REPS repetitions (bench/plot.py --table prints the medians).
#
# Environment: SPOOL_BENCH (binary, default build/tools/spool-bench), ENGINES (default
# "raw log spool rocksdb files"), SECONDS_PER_RUN (default 3 for sweep, 8 for table),
# REPS (default 1 for sweep, 3 for table), EXTRA (more spool-bench arguments).
# Runs of one repetition are interleaved across engines, so that a noisy minute on a
# shared machine hurts every engine alike.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
dir=$1
mode=${2:-sweep}
bench=${SPOOL_BENCH:-build/tools/spool-bench}
engines=${ENGINES:-raw log spool rocksdb files}
extra=${EXTRA:-}
if [[ ! -x "$bench" ]]; then
  echo "run_matrix: $bench not built (bash scripts/build.sh)" >&2
  exit 1
fi

run() {
  # shellcheck disable=SC2086  # EXTRA is a list of arguments
  "$bench" --dir "$dir" --json --seconds "$seconds" "$@" $extra ||
    echo "run_matrix: failed: $bench --dir $dir $*" >&2
}

case "$mode" in
  sweep)
    seconds=${SECONDS_PER_RUN:-3}
    reps=${REPS:-1}
    for ((rep = 1; rep <= reps; rep++)); do
      for p in 1 4 16 64; do
        for e in $engines; do run --engine "$e" --workload ingest --size 4096 --producers "$p"; done
      done
      for s in 1024 4096 16384 65536; do
        [[ $s == 4096 ]] && continue  # measured above
        for e in $engines; do run --engine "$e" --workload ingest --size "$s" --producers 64; done
      done
    done
    ;;
  table)
    seconds=${SECONDS_PER_RUN:-8}
    reps=${REPS:-3}
    for ((rep = 1; rep <= reps; rep++)); do
      for e in $engines; do run --engine "$e" --workload ingest --size 4096 --producers 64; done
      for e in $engines; do run --engine "$e" --workload ingest --size 65536 --producers 64; done
      for e in $engines; do run --engine "$e" --workload latency --size 4096; done
      for e in $engines; do run --engine "$e" --workload mixed --producers 64; done
      # The reference for mixed (the goal in docs/benchmarks.md: mixed >= 70% of ingest).
      for e in $engines; do run --engine "$e" --workload ingest --size-dist email --producers 64; done
    done
    ;;
  *)
    echo "run_matrix: mode is sweep or table, not '$mode'" >&2
    exit 2
    ;;
esac
