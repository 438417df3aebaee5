#!/usr/bin/env bash
# Configures and builds spool into ${SPOOL_BUILD_DIR:-build} (Release with debug info).
# Extra arguments go to cmake's configure step, e.g. -DSPOOL_ASAN=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SPOOL_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOOL_WERROR=ON "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
