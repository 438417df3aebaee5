#!/usr/bin/env bash
# spool-bench end to end (usage: spool_bench_smoke.sh SPOOL_BENCH): each engine runs for a
# moment and prints one JSON line with the fields of docs/benchmarks.md and counts that
# agree with each other; --depth drives the asynchronous appends of log and spool; bad
# arguments exit 2 with a one-line error. Timings are printed, never asserted.
set -euo pipefail
bench=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

check_json() {  # check_json LABEL JSON [DEPTH]
  python3 - "$1" "$2" "${3:-1}" <<'PY'
import json, sys
label, line, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.loads(line)
spec = ["engine", "workload", "size", "producers", "msgs_per_s", "MB_per_s", "p50_us",
        "p99_us", "p999_us", "fsyncs_per_s", "bytes_per_fsync", "cpu_us_per_msg"]
missing = [k for k in spec + ["depth", "steal_pct", "msgs"] if k not in d]
assert not missing, f"{label}: missing {missing}"
assert d["msgs"] > 0 and d["msgs_per_s"] > 0, f"{label}: nothing acknowledged: {d}"
assert d["depth"] == depth, f"{label}: depth {d['depth']} != {depth}"
# MB/s is the acknowledged payload: msgs x size for fixed sizes.
if d["size"] > 0:
    mb = d["msgs_per_s"] * d["size"] / 1e6
    assert abs(mb - d["MB_per_s"]) <= 0.01 * mb + 0.01, f"{label}: MB/s {d['MB_per_s']} vs {mb}"
assert d["p50_us"] <= d["p99_us"] <= d["p999_us"], f"{label}: percentiles out of order"
print(f"ok {label}: {d['msgs_per_s']:.0f} msgs/s, {d['MB_per_s']:.1f} MB/s, "
      f"p50 {d['p50_us']} us, {d['cpu_us_per_msg']:.1f} cpu us/msg")
PY
}

run() {  # run LABEL DEPTH ARGS...
  local label=$1 depth=$2
  shift 2
  local out
  out=$("$bench" --dir "$dir/b" --seconds 0.5 --warmup 0.2 --producers 8 --json "$@") ||
    fail "$label: exit $?"
  [[ $(wc -l <<<"$out") == 1 ]] || fail "$label: expected one JSON line, got: $out"
  check_json "$label" "$out" "$depth"
}

for engine in raw log spool rocksdb files; do
  run "$engine" 1 --engine "$engine" --consumers 0
done
run "log --depth 4" 4 --engine log --depth 4
run "spool --depth 4 with removers" 4 --engine spool --depth 4 --consumers 2
run "raw --raw-inflight 1" 1 --engine raw --raw-inflight 1
run "log buffered" 1 --engine log --buffered-io
# The bench leaves nothing behind in DIR.
leftover=$(find "$dir/b" -mindepth 1 | head -5)
[[ -z "$leftover" ]] || fail "files left in the bench directory: $leftover"

usage() {  # usage EXPECTED_MESSAGE ARGS...: exit 2 and the message on stderr
  local want=$1
  shift
  local err rc=0
  err=$("$bench" "$@" 2>&1 >/dev/null) || rc=$?
  [[ $rc == 2 ]] || fail "spool-bench $*: exit $rc, expected 2"
  [[ $err == *"$want"* ]] || fail "spool-bench $*: '$err' does not say '$want'"
  [[ $(wc -l <<<"$err") -le 2 ]] || fail "spool-bench $*: more than a short error: $err"
  echo "ok usage: $*"
}
usage "--dir DIR is required" --engine log
usage "--depth needs a positive number" --dir "$dir/b" --depth 0
usage "--depth is 1 to 1024" --dir "$dir/b" --depth 2000
usage "needs an asynchronous engine" --dir "$dir/b" --engine rocksdb --depth 2
usage "does not go with --compare" --dir "$dir/b" --compare --depth 2
usage "--raw-inflight is 1 to 64" --dir "$dir/b" --engine raw --raw-inflight 65
usage "unknown engine" --dir "$dir/b" --engine nope
usage "unknown option '--frobnicate'" --dir "$dir/b" --frobnicate
usage "unexpected argument 'extra'" --dir "$dir/b" extra
echo "spool-bench smoke: all passed"
