#!/usr/bin/env bash
# Builds the tests under a sanitizer, each in a build directory of its own, and runs them:
#   bash scripts/sanitize.sh asan    # AddressSanitizer + UndefinedBehaviorSanitizer, build-asan/
#   bash scripts/sanitize.sh tsan    # ThreadSanitizer, build-tsan/
# Like scripts/test.sh: installs missing dependencies with scripts/install-deps.sh, builds
# everything (the install test installs the whole tree), runs every test but the "long"
# ones. SPOOL_JOBS sets the parallelism of the build and of ctest (default: the number of
# cores; on a shared machine use SPOOL_JOBS=1). A sanitizer report fails its test: ASan and
# UBSan stop at the first error, TSan makes the process exit with status 66. Set
# ASAN_OPTIONS, UBSAN_OPTIONS or TSAN_OPTIONS to override the defaults below.
#
# Every suite runs instrumented, the programs the tests start too: spool-smtpd and
# spool-ctl (e2e), spool-fsck (fsck), the consumers the install test builds against the
# installed libspool with the same -fsanitize flags (capi), faults_helper and the FUSE
# fault filesystem faultfs (faults; a separate process whose ASan report unmounts it, so
# that the FUSE tests fail). The options below are exported so that these child processes
# get them as well, TSan's with the RocksDB suppressions that the test binaries get.
#
# TSan notes. Debian's Abseil is not built with TSan; engine code locks spool::Mutex
# (engine/util/mutex.h), which tells TSan what absl::Mutex does. A bare absl::Mutex shows up
# as false races, as does shared state inside other uninstrumented libraries (RocksDB):
# tests/tsan.supp suppresses RocksDB's, for every process (tests registered by spool_test
# name the same file). io_uring completions are written by the kernel, which TSan does not
# see; the submitting thread reaps them, so that is not reported. If TSan dies at start
# with "unexpected memory mapping" (kernels with high mmap randomization), run
# `sudo sysctl vm.mmap_rnd_bits=28`.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  asan) option=-DSPOOL_ASAN=ON ;;
  tsan) option=-DSPOOL_TSAN=ON ;;
  *)
    echo "usage: bash scripts/sanitize.sh asan|tsan" >&2
    exit 2
    ;;
esac
build_dir="build-$1"
jobs=${SPOOL_JOBS:-$(nproc)}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp}
bash scripts/install-deps.sh
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOOL_WERROR=ON "$option" >/dev/null
cmake --build "$build_dir" -j "$jobs"
cd "$build_dir"
ctest --output-on-failure --timeout 600 -j "$jobs" -LE long
