#!/usr/bin/env bash
# Long crash torture runs: kill -9 cycles and simulated power-loss cycles, on the same
# spool across cycles, with every acknowledged message, state and removal checked after
# each recovery. Reproducible: the same seed gives the same schedule of workload and kills
# (kill instants depend on timing; the seed is printed for the record).
#
#   tests/crash/torture.sh [--cycles N] [--seed S] [--kill-only|--power-only] [--build DIR]
#
# Default: 100 cycles of each with seed 1. Exit status non-zero on the first failure.
set -euo pipefail
cycles=100
seed=1
what=both
build=${SPOOL_BUILD_DIR:-build}
while (($#)); do
  case "$1" in
    --cycles) cycles=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --kill-only) what=kill; shift ;;
    --power-only) what=power; shift ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "torture.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../.."
binary="$build/tests/crash_test"
[[ -x "$binary" ]] || { echo "torture.sh: $binary not built (run scripts/build.sh)" >&2; exit 2; }
start=$(date +%s)
if [[ $what != power ]]; then
  SPOOL_TORTURE_CYCLES=$cycles SPOOL_TEST_SEED=$seed "$binary" \
    --gtest_filter=CrashTest.KillNineAtRandomInstantsLosesNothingAcknowledged
fi
if [[ $what != kill ]]; then
  SPOOL_POWERLOSS_CYCLES=$cycles SPOOL_TEST_SEED=$seed "$binary" \
    --gtest_filter=CrashTest.PowerLossAtRandomInstantsLosesNothingAcknowledged
fi
echo "torture.sh: $cycles cycles ($what), seed $seed, $(( $(date +%s) - start )) s: passed"
