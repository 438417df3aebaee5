#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and measures the current
# disk: spool against the raw device limit and the alternatives. Results go to stdout.
#   bash scripts/main.sh [DIR]      (DIR defaults to ./spool-bench-data on this disk)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
dir=${1:-$PWD/spool-bench-data}
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
if [[ -x build/tools/spool-bench ]]; then
  build/tools/spool-bench --dir "$dir" --compare
else
  echo "spool-bench is not built yet; running the I/O micro-benchmark instead" >&2
  SPOOL_BENCH_DIR="$dir" build/bench/spool_micro_bench --benchmark_min_time=0.5
fi
