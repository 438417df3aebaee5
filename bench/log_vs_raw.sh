#!/usr/bin/env bash
# The segment log against the disk (docs/benchmarks.md, "The segment log against the
# disk"): ingest of 4 KiB records from 64 producers, interleaved repetitions of
#   raw      the disk: batches of 64 x 4 KiB, 4 in flight (the log's window)
#   raw-1    the same with 1 batch in flight: exactly the 64 x 4 KiB = 256 KiB that 64
#            synchronous producers can have unacknowledged (the Little's-law bound for them)
#   log      64 synchronous producers (one record in flight each)
#   log-d4   64 producers keeping 4 records in flight each (asynchronous appends): the same
#            1 MiB in flight as raw
#   log-4x64 the same 256 records in flight from 4 producer threads (64 each), as event
#            loops serving many sessions do: a thread wakes once for many completions
# and prints the median MB/s of each with the ratios. Noise on a shared VM is large
# (raw alone varied 0.85-1.55 GB/s within minutes): only ratios of interleaved runs mean much.
#
#   bash bench/log_vs_raw.sh DIR          (REPS=5 SECONDS_PER_RUN=5 by default, ~5 min)
#
# Environment: SPOOL_BENCH (default build/tools/spool-bench), REPS, SECONDS_PER_RUN,
# KEEP=FILE (keep the JSON lines).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
dir=$1
bench=${SPOOL_BENCH:-build/tools/spool-bench}
reps=${REPS:-5}
seconds=${SECONDS_PER_RUN:-5}
out=${KEEP:-$(mktemp)}
: >"$out"
if [[ ! -x "$bench" ]]; then
  echo "log_vs_raw: $bench not built (bash scripts/build.sh)" >&2
  exit 1
fi
run() {
  local name=$1
  shift
  # Later arguments win: a run may set its own --producers.
  "$bench" --dir "$dir" --size 4096 --producers 64 --seconds "$seconds" --json "$@" |
    sed "s/^/$name /" >>"$out"
}
for ((i = 1; i <= reps; i++)); do
  run raw --engine raw
  run raw-1 --engine raw --raw-inflight 1
  run log --engine log
  run log-d4 --engine log --depth 4
  run log-4x64 --engine log --depth 64 --producers 4
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, js = line.split(" ", 1)
    runs.setdefault(name, []).append(json.loads(js))
med = {k: statistics.median(r["MB_per_s"] for r in v) for k, v in runs.items()}
print("| run | MB/s (median) | all runs | msgs/s | p50 us | CPU us/msg | CPU stolen | of raw | of raw-1 |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
for k in ("raw", "raw-1", "log", "log-d4", "log-4x64"):
    v = runs[k]
    print(f"| {k} | {med[k]:.0f} | {' '.join('%.0f' % r['MB_per_s'] for r in v)} "
          f"| {statistics.median(r['msgs_per_s'] for r in v):.0f} "
          f"| {statistics.median(r['p50_us'] for r in v):.0f} "
          f"| {statistics.median(r['cpu_us_per_msg'] for r in v):.1f} "
          f"| {statistics.median(r.get('steal_pct', -1) for r in v):.1f}% "
          f"| {100 * med[k] / med['raw']:.0f}% | {100 * med[k] / med['raw-1']:.0f}% |")
# Paired ratios: each repetition's log run against the raw run next to it.
for k in ("log", "log-d4", "log-4x64"):
    pairs = [100 * a["MB_per_s"] / b["MB_per_s"] for a, b in zip(runs[k], runs["raw"])]
    print(f"{k} / raw, paired by repetition: median {statistics.median(pairs):.0f}% "
          f"({' '.join('%.0f%%' % p for p in pairs)})")
PY
