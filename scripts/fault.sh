#!/usr/bin/env bash
# The fault-injection suite (tests/fault, docs/reliability.md): the daemon
# built with failpoints (iovad-failinj) and its driver (iovad-fault) in a
# release and an ASan/UBSan configuration, then `ctest -L fault` in each,
# bounded in time. Prints one summary line per configuration and a total:
# the failures injected per site, crashes, hangs and errors (all must be 0).
#
#   scripts/fault.sh            both configurations
#   scripts/fault.sh release    one only (or asan)
#
# Environment:
#   FAULT_RELEASE_DIR, FAULT_ASAN_DIR  build directories (default build/release
#                      and build/asan, the ones scripts/test.sh uses); a missing
#                      one is configured as scripts/build.sh would, and only the
#                      suite's targets are built
#   FAULT_TIMEOUT      seconds for the runs of one configuration (default 150)
#   FAULT_JOBS         tests run at once (default: the CPUs, at most 4)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
timeout_s=${FAULT_TIMEOUT:-150}
jobs=${FAULT_JOBS:-$(nproc)}
[ "$jobs" -gt 4 ] && jobs=4

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
sum_alloc=0 sum_submit=0 sum_jwrite=0 sum_jsync=0 sum_crash=0 sum_hang=0 sum_err=0

build() { # $1 = release|asan, $2 = build directory
	local args
	# shellcheck disable=SC2054 # the comma belongs to -fsanitize=address,undefined
	case "$1" in
	release) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOVAD_ENABLE_WERROR=ON) ;;
	asan) args=(-DCMAKE_BUILD_TYPE=Debug -DIOVAD_ENABLE_WERROR=ON -DIOVAD_SANITIZE=address,undefined) ;;
	esac
	# Until the top level adds tests/fault itself, tests/fault/hook.cmake does.
	if ! grep -q "tests/fault" "$root/CMakeLists.txt"; then
		args+=("-DCMAKE_PROJECT_INCLUDE=$root/tests/fault/hook.cmake")
	fi
	if [ ! -f "$2/CMakeCache.txt" ] || ! grep -q "tests/fault" "$root/CMakeLists.txt"; then
		cmake -S "$root" -B "$2" "${args[@]}" >/dev/null || return 1
	fi
	cmake --build "$2" -j "$(nproc)" --target iovad-fault iovad-failinj >"$2/fault-build.log" 2>&1 ||
		{ tail -30 "$2/fault-build.log"; return 1; }
}

run() { # $1 = release|asan, $2 = build directory
	local cfg=$1 dir=$2 log rc t0 n line vals
	echo "== fault: $cfg: build ($dir)"
	if ! build "$cfg" "$dir"; then
		echo "== fault: $cfg: BUILD FAILED"
		failed=$((failed + 1))
		return
	fi
	n=$(ctest --test-dir "$dir" -N -L fault | sed -n 's/^Total Tests: //p')
	if [ "${n:-0}" -eq 0 ]; then
		echo "== fault: $cfg: no tests labelled fault in $dir"
		failed=$((failed + 1))
		return
	fi
	echo "== fault: $cfg: $n tests, at most ${timeout_s} s"
	log="$dir/fault-ctest.log"
	t0=$(date +%s)
	timeout --kill-after=10 "$timeout_s" \
		ctest --test-dir "$dir" -L fault -V -j "$jobs" --timeout 300 >"$log" 2>&1
	rc=$?
	# The driver's last line per test: "N: fault: TEST: io=..., injected alloc=A
	# uring_submit=U journal_write=W journal_sync=S; ...; crashes C, hangs H, errors E: PASS"
	while read -r line; do
		echo "   ${line#*: }"
		vals=$(echo "$line" | sed -E 's/.*injected alloc=([0-9]+) uring_submit=([0-9]+) journal_write=([0-9]+) journal_sync=([0-9]+);.* crashes ([0-9]+), hangs ([0-9]+), errors ([0-9]+).*/\1 \2 \3 \4 \5 \6 \7/')
		# shellcheck disable=SC2086
		set -- $vals
		sum_alloc=$((sum_alloc + $1)) sum_submit=$((sum_submit + $2))
		sum_jwrite=$((sum_jwrite + $3)) sum_jsync=$((sum_jsync + $4))
		sum_crash=$((sum_crash + $5)) sum_hang=$((sum_hang + $6)) sum_err=$((sum_err + $7))
	done < <(grep -E '^[0-9]+: fault: [a-z_]+: io=.* (PASS|FAIL)$' "$log")
	if [ "$rc" -eq 0 ]; then
		echo "== fault: $cfg: $n tests passed in $(($(date +%s) - t0)) s"
		return
	fi
	[ "$rc" -eq 124 ] && echo "== fault: $cfg: TIMED OUT after ${timeout_s} s"
	# What failed, from ctest's record, with the failed tests' own output.
	grep -E '^[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception|\*\*\*)' "$log"
	grep -oE 'Test +#[0-9]+: [a-z_]+ .*(Failed|Timeout|Exception)' "$log" |
		sed -E 's/Test +#([0-9]+):.*/\1/' | while read -r t; do
		echo "---- test #$t ----"
		grep -E "^$t: " "$log" | grep -vE "^$t: +#[0-9]+ " | tail -40
	done
	echo "== fault: $cfg: FAILED (ctest exit $rc; the whole log: $log)"
	failed=$((failed + 1))
}

case "$what" in
all) run release "${FAULT_RELEASE_DIR:-$root/build/release}"
	run asan "${FAULT_ASAN_DIR:-$root/build/asan}" ;;
release) run release "${FAULT_RELEASE_DIR:-$root/build/release}" ;;
asan) run asan "${FAULT_ASAN_DIR:-$root/build/asan}" ;;
*) echo "usage: $0 [all|release|asan]" >&2; exit 2 ;;
esac

echo "fault: injected alloc=$sum_alloc uring_submit=$sum_submit journal_write=$sum_jwrite" \
	"journal_sync=$sum_jsync; crashes $sum_crash, hangs $sum_hang, errors $sum_err;" \
	"$([ "$failed" -eq 0 ] && echo PASS || echo "FAIL ($failed configurations)")"
[ "$failed" -eq 0 ] && [ "$sum_crash" -eq 0 ]
