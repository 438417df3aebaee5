#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test.
# Long torture runs carry the CTest label "long" and are left out here; see tests/crash/.
# Extra arguments go to scripts/build.sh (cmake's configure step), e.g. -DSPOOL_ASAN=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh "$@"
cd "${SPOOL_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "$(nproc)" -LE long
