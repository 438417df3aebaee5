#!/usr/bin/env bash
# Builds the tests under a sanitizer, each in a build directory of its own, and runs them:
#   bash scripts/sanitize.sh asan    # AddressSanitizer + UndefinedBehaviorSanitizer, build-asan/
#   bash scripts/sanitize.sh tsan    # ThreadSanitizer, build-tsan/
# Like scripts/test.sh (which it runs): installs missing dependencies with
# scripts/install-deps.sh, builds with -j$(nproc), runs every test but the "long" ones. A
# sanitizer report fails its test: ASan and UBSan stop at the first error, TSan makes the
# process exit with status 66. Set ASAN_OPTIONS, UBSAN_OPTIONS or TSAN_OPTIONS to override
# the defaults below.
#
# TSan notes. Debian's Abseil is not built with TSan; engine code locks spool::Mutex
# (engine/util/mutex.h), which tells TSan what absl::Mutex does. A bare absl::Mutex shows up
# as false races, as does shared state inside other uninstrumented libraries (RocksDB).
# io_uring completions are written by the kernel, which TSan does not see; the submitting
# thread reaps them, so that is not reported. If TSan dies at start with "unexpected memory
# mapping" (kernels with high mmap randomization), run `sudo sysctl vm.mmap_rnd_bits=28`.
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
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-second_deadlock_stack=1}
SPOOL_BUILD_DIR="build-$1" exec bash scripts/test.sh "$option"
