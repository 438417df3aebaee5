#!/usr/bin/env bash
# The install test: `cmake --install` of a build tree into a temporary prefix, then
#   1. the layout: libraries, public headers only, the four tools, CMake package, spool.pc;
#   2. consumer/ (C++ and C, shared and static) built with find_package(spool) and run;
#   3. consumer/example.c built with `pkg-config --cflags --libs spool` and run.
# Each program opens a spool in a temporary directory, enqueues, reads back and removes.
#
# install_test.sh --build DIR --source CONSUMER_DIR [--cmake CMAKE] [--cc CC] [--cxx CXX]
#                 [--flags "COMPILE AND LINK FLAGS"]   (the sanitizer flags of the build)
set -euo pipefail

build="" source="" cmake=cmake cc=cc cxx=c++ flags=""
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --cmake) cmake=$2; shift 2 ;;
    --cc) cc=$2; shift 2 ;;
    --cxx) cxx=$2; shift 2 ;;
    --flags) flags=$2; shift 2 ;;
    *) echo "install_test: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$build" && -n "$source" ]] || { echo "install_test: --build and --source are required" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/spool-install-test-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "cmake --install failed (is the whole tree built?)"; }

step "installed layout"
libdir=$(dirname "$(find "$prefix" -name libspool.a | head -n1)")
[[ -f "$libdir/libspool.a" ]] || fail "no libspool.a"
[[ -e "$libdir/libspool.so" ]] || fail "no libspool.so"
[[ -f "$libdir/pkgconfig/spool.pc" ]] || fail "no spool.pc"
[[ -f "$libdir/cmake/spool/spoolConfig.cmake" ]] || fail "no spoolConfig.cmake"
[[ -f "$libdir/cmake/spool/spoolConfigVersion.cmake" ]] || fail "no spoolConfigVersion.cmake"
for h in spool.h c.h status.h smtp_reply.h message_id.h logging.h metrics.h; do
  [[ -f "$prefix/include/spool/$h" ]] || fail "public header spool/$h not installed"
done
# Exactly engine/include/spool/*.h: no private header (codec.h, internal.h, io/, log/...).
expected=$(cd "$(dirname "$0")/../../engine/include/spool" && find . -maxdepth 1 -name "*.h" | sort)
actual=$(cd "$prefix/include/spool" && find . -type f | sort)
[[ "$expected" == "$actual" ]] || fail "installed headers differ from engine/include/spool/*.h:
$(diff <(echo "$expected") <(echo "$actual"))"
[[ "$(ls "$prefix/include")" == "spool" ]] || fail "something besides spool/ under include/"
for tool in spool-bench spool-ctl spool-fsck spool-smtpd; do
  [[ -x "$prefix/bin/$tool" ]] || fail "tool $tool not installed"
done

step "find_package(spool): build consumer/"
"$cmake" -S "$source" -B "$work/consumer" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  > "$work/consumer-configure.log" 2>&1 ||
  { cat "$work/consumer-configure.log" >&2; fail "configuring consumer/ failed"; }
"$cmake" --build "$work/consumer" -j1 > "$work/consumer-build.log" 2>&1 ||
  { cat "$work/consumer-build.log" >&2; fail "building consumer/ failed"; }

run() {  # run NAME PROGRAM: runs PROGRAM on a fresh spool directory, expects "ok"
  local name=$1 program=$2 out
  out=$("$program" "$work/spool-$name" 2>&1) || fail "$name exited $?: $out"
  [[ "$out" == *"queued as "* && "$out" == *$'\n'ok ]] || fail "$name printed: $out"
  echo "$name: ok"
}
# The libraries `program` loads. Captured whole, then searched: with pipefail, `ldd | grep -q`
# fails whenever grep exits at its match before ldd has written everything (SIGPIPE), as
# with the longer list of a sanitizer build.
libs_of() { ldd "$1" || fail "ldd $1 failed"; }
# The shared variants must load the installed libspool.so, the static ones none.
for name in example_cxx example_c; do
  libs=$(libs_of "$work/consumer/$name")
  [[ "$libs" == *"$libdir/libspool.so"* ]] ||
    fail "$name does not load $libdir/libspool.so: $(grep spool <<<"$libs")"
done
for name in example_cxx_static example_c_static; do
  libs=$(libs_of "$work/consumer/$name")
  [[ "$libs" != *libspool* ]] || fail "$name loads a libspool.so: $(grep spool <<<"$libs")"
done
for name in example_cxx example_cxx_static example_c example_c_static; do
  run "$name" "$work/consumer/$name"
done

step "pkg-config spool: build consumer/example.c"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pc_flags=$(pkg-config --cflags --libs spool) || fail "pkg-config --cflags --libs spool failed"
[[ "$pc_flags" == *"-I$prefix/include"* || "$pc_flags" == *"-I$libdir/pkgconfig/../../include"* ]] ||
  fail "pkg-config flags do not name the prefix: $pc_flags"
static_libs=$(pkg-config --static --libs spool)
for lib in -lspool -lrocksdb -luring -lxxhash -lstdc++; do
  [[ " $static_libs " == *" $lib "* ]] || fail "pkg-config --static --libs spool lacks $lib: $static_libs"
done
# shellcheck disable=SC2086  # flags are word lists
"$cc" -std=c11 -Wall -Wextra -Werror $flags "$source/example.c" -o "$work/example_c_pkgconfig" \
  $pc_flags "-Wl,-rpath,$libdir" > "$work/pc-build.log" 2>&1 ||
  { cat "$work/pc-build.log" >&2; fail "building example.c with pkg-config failed"; }
libs=$(libs_of "$work/example_c_pkgconfig")
[[ "$libs" == *"$libdir/libspool.so"* ]] ||
  fail "example_c_pkgconfig does not load the installed libspool.so: $(grep spool <<<"$libs")"
run example_c_pkgconfig "$work/example_c_pkgconfig"

echo "install_test: passed"
