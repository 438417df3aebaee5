#!/bin/bash
# The live queue's targets (docs/operations.md), measured on one disk in one run:
#   delete  - `spool-ctl delete` of N queued messages through the control socket of a
#             running spool-smtpd, while smtp-source sends: the accept rate during the
#             delete against the unloaded rate (target: >= 50%).
#   fsck    - spool-fsck of a >= 1.5 GB spool with the page cache dropped, against fio's
#             O_DIRECT sequential read of the same segment files (target: >= 70%).
#
# usage: bench/live_ops.sh BUILD_DIR WORK_DIR [delete|fsck|all]
#   BUILD_DIR  the build tree (BUILD_DIR/tools/spool-smtpd, spool-ctl, spool-fsck)
#   WORK_DIR   a directory on the disk to measure (emptied first)
# Environment: DELETE_MESSAGES (100000), FSCK_MESSAGES (15000), FSCK_SIZE (102400),
# PORT (2527). Needs root (drop_caches), smtp-source (postfix) and fio.
set -euo pipefail
build=$1
work=$2
what=${3:-all}
tools=$build/tools
port=${PORT:-2527}
delete_messages=${DELETE_MESSAGES:-100000}
fsck_messages=${FSCK_MESSAGES:-15000}
fsck_size=${FSCK_SIZE:-102400}
smtpd_pid=

cleanup() { [[ -n $smtpd_pid ]] && kill "$smtpd_pid" 2>/dev/null && wait "$smtpd_pid" || true; }
trap cleanup EXIT

start_smtpd() {
  "$tools/spool-smtpd" --spool "$1" --listen "127.0.0.1:$port" >"$work/smtpd.log" 2>&1 &
  smtpd_pid=$!
  for _ in $(seq 100); do [[ -S $1/control.sock ]] && return; sleep 0.1; done
  echo "spool-smtpd did not start: $(cat "$work/smtpd.log")" >&2
  exit 1
}
stop_smtpd() { kill "$smtpd_pid"; wait "$smtpd_pid" || true; smtpd_pid=; }

# Messages per second accepted by spool-smtpd for smtp-source's $1 messages of 4 KiB.
accept_rate() {
  local start end
  start=$(date +%s.%N)
  smtp-source -s 50 -m "$1" -l 4096 "127.0.0.1:$port"
  end=$(date +%s.%N)
  echo "$1 / ($end - $start)" | bc -l
}

bench_delete() {
  local spool=$work/delete
  rm -rf "$spool"
  start_smtpd "$spool"
  echo "filling $delete_messages messages of 4 KiB ..."
  smtp-source -s 50 -m "$delete_messages" -l 4096 "127.0.0.1:$port"
  local unloaded loaded t0 t1 delete_pid
  unloaded=$(accept_rate 10000)
  t0=$(date +%s.%N)
  # --all matches what is there when the request arrives: the filled messages only.
  "$tools/spool-ctl" --spool "$spool" delete --all &
  delete_pid=$!
  loaded=$(accept_rate 10000)
  wait "$delete_pid"
  t1=$(date +%s.%N)
  printf 'delete: %d messages in %.1f s; accepting %.0f msgs/s unloaded, %.0f msgs/s during the delete (%.0f%%)\n' \
    "$delete_messages" "$(echo "$t1 - $t0" | bc -l)" "$unloaded" "$loaded" \
    "$(echo "100 * $loaded / $unloaded" | bc -l)"
  "$tools/spool-ctl" --spool "$spool" stats | head -1
  stop_smtpd
}

bench_fsck() {
  local spool=$work/fsck
  rm -rf "$spool"
  start_smtpd "$spool"
  echo "filling $fsck_messages messages of $fsck_size bytes ..."
  smtp-source -s 50 -m "$fsck_messages" -l "$fsck_size" "127.0.0.1:$port"
  stop_smtpd
  local files bytes
  files=$(ls "$spool"/log/seg-* | paste -sd:)
  bytes=$(du -cb "$spool"/log/seg-* | tail -1 | cut -f1)
  for run in 1 2 3; do
    sync && echo 3 >/proc/sys/vm/drop_caches
    "$tools/spool-fsck" --spool "$spool" --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print("spool-fsck: %.0f MB/s (%d bytes in %.2f s, exit %d)" % (j["MB_per_s"], j["bytes_scanned"], j["seconds"], j["exit_code"]))'
    sync && echo 3 >/proc/sys/vm/drop_caches
    fio --name=seqread --rw=read --bs=1M --direct=1 --iodepth=4 --ioengine=io_uring \
      --filename="$files" --size="$bytes" --output-format=json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print("fio O_DIRECT:  %.0f MB/s" % (j["jobs"][0]["read"]["bw_bytes"] / 1e6))'
  done
}

mkdir -p "$work"
case $what in
  delete) bench_delete ;;
  fsck) bench_fsck ;;
  all) bench_delete; bench_fsck ;;
  *) echo "usage: $0 BUILD_DIR WORK_DIR [delete|fsck|all]" >&2; exit 2 ;;
esac
