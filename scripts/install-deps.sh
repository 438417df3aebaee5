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
  # the libraries of OpenSMTPD's smtpd, which the end-to-end tests of
  # spool-opensmtpd-queue run from .deps/ (see the end of this script)
  libdb5.3 libevent-2.1-7 libssl3 libpam0g libcrypt1 zlib1g
)

repo=$(cd "$(dirname "$0")/.." && pwd)

# OpenSMTPD for the tests of spool-opensmtpd-queue (docs/opensmtpd.md): its package is
# downloaded and unpacked into $SPOOL_DEPS_DIR/opensmtpd/root (default: .deps/ in the
# repository), never installed: installing opensmtpd would remove postfix (both are mail
# transport agents), and the tests run smtpd from there inside a private mount namespace.
fetch_opensmtpd() {
  local dir="${SPOOL_DEPS_DIR:-$repo/.deps}/opensmtpd"
  if [[ -x "$dir/root/usr/sbin/smtpd" ]]; then
    echo "install-deps: OpenSMTPD present in $dir"
    return
  fi
  mkdir -p "$dir"
  (cd "$dir" && rm -f opensmtpd_*.deb && apt-get download -qq opensmtpd) ||
    { apt-get update -qq && (cd "$dir" && apt-get download -qq opensmtpd); }
  rm -rf "$dir/root"
  dpkg-deb -x "$dir"/opensmtpd_*.deb "$dir/root"
  echo "install-deps: OpenSMTPD unpacked into $dir/root ($(basename "$dir"/opensmtpd_*.deb))"
}

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  fetch_opensmtpd
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
fetch_opensmtpd
