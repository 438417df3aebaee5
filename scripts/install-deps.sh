#!/usr/bin/env bash
# Installs exactly the Debian packages spool needs that are missing. Idempotent and
# non-interactive; run as root (or with sudo) on Debian 12 (bookworm).
#   bash scripts/install-deps.sh           # build + test + bench dependencies
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config git ca-certificates
  # libraries
  librocksdb-dev liburing-dev libxxhash-dev libabsl-dev
  libbenchmark-dev libgtest-dev libgmock-dev
  # tests: real faults (FUSE, loop-mounted ext4, tmpfs) and real SMTP clients
  libfuse3-dev fuse3 e2fsprogs mount util-linux python3 swaks
  # smtp-source (spool-smtpd's load test); installed unconfigured, never started: see below
  postfix
  # spool-bench baselines and disk measurement
  fio
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
# Passed through env: sudo's env_reset would drop an exported DEBIAN_FRONTEND.
apt=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get)
if [[ " ${missing[*]} " == *" postfix "* ]]; then
  # Only its smtp-source tool is wanted: "No configuration" leaves no main.cf, so no mail
  # system is set up or started.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
fi
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
