#!/usr/bin/env bash
# The README's test command: install dependencies, build, and pass every test.
#
#   scripts/test.sh            all of it: release + ASan/UBSan builds, ctest in
#                              both (unit and integration, the latter on both
#                              I/O backends), the unit tests again under
#                              valgrind, a bounded libFuzzer run, and the
#                              systemd units checked offline, and the rxe
#                              checks on soft-RoCE in a qemu guest (tests/rxe:
#                              the verbs facts, the daemon's verbs module, and
#                              the daemon with an rxe-backed device) on two guest
#                              kernels (Debian 12's 6.1, and a 6.18 whose rxe
#                              advertises ODP, fetched once), a short
#                              soak (1000 clients), the daemon killed with SIGKILL at
#                              random points under a state journal (restart) and
#                              a bounded AFL++ run
#                              against the daemon's socket
#   scripts/test.sh release    one part only (also: asan, valgrind, fuzz, units, rxe,
#                              soak, restart, afl)
#
# IOVAD_TEST_SEED=N reproduces a randomized differential test run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
passed=0
failed=0

"$root/scripts/deps.sh" || exit 1

run_ctest() { # $1 = configuration
	local dir="$root/build/$1" n
	echo "== $1: build"
	if ! "$root/scripts/build.sh" "$1"; then
		echo "== $1: BUILD FAILED"
		failed=$((failed + 1))
		return
	fi
	n=$(ctest --test-dir "$dir" -N | sed -n 's/^Total Tests: //p')
	echo "== $1: ctest ($n tests)"
	if ctest --test-dir "$dir" --output-on-failure --timeout 900; then
		passed=$((passed + n))
	else
		# Count what failed from ctest's own record.
		local f
		f=$(grep -c . "$dir/Testing/Temporary/LastTestsFailed.log" 2>/dev/null || echo "$n")
		failed=$((failed + f))
		passed=$((passed + n - f))
	fi
}

run_valgrind() {
	# Criterion runs every test in a forked worker and ignores a worker's
	# valgrind exit code, so each process logs to its own file and any
	# non-zero ERROR SUMMARY (memory errors and definite leaks) fails the run.
	local dir="$root/build/release/tests/unit" t logs bad
	[ -x "$dir/test_domain" ] || "$root/scripts/build.sh" release || { failed=$((failed + 1)); return; }
	logs=$(mktemp -d /tmp/iovad-valgrind.XXXXXX)
	for t in "$dir"/test_*; do
		[ -x "$t" ] || continue
		echo "== valgrind: $(basename "$t")"
		valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
			--trace-children=yes --log-file="$logs/$(basename "$t").%p.log" "$t" --jobs 2
		local rc=$?
		bad=$(grep -l "ERROR SUMMARY: [1-9]" "$logs/$(basename "$t")".*.log 2>/dev/null || true)
		if [ "$rc" -eq 0 ] && [ -z "$bad" ]; then
			passed=$((passed + 1))
		else
			echo "== valgrind: $(basename "$t") FAILED (exit $rc)"
			for f in $bad; do cat "$f"; done
			failed=$((failed + 1))
		fi
	done
	# The daemon itself under valgrind, driven by the integration suites that
	# do not measure memory or time. epoll only: valgrind 3.19 cannot see
	# kernel writes into io_uring buffers (PLATFORM-NOTES.md).
	local itdir="$root/build/release/tests/integration"
	for t in api isolation odp rings; do
		echo "== valgrind: iovad under itest_$t (epoll)"
		IOVAD_TEST_IO=epoll IOVAD_TEST_VALGRIND_LOG="$logs/iovad-$t.%p.log" \
			"$itdir/itest_$t" --jobs 1 >"$logs/itest_$t.out" 2>&1
		local rc=$?
		bad=$(grep -l "ERROR SUMMARY: [1-9]" "$logs"/iovad-"$t".*.log 2>/dev/null || true)
		if [ "$rc" -eq 0 ] && [ -z "$bad" ] && ls "$logs"/iovad-"$t".*.log >/dev/null 2>&1; then
			passed=$((passed + 1))
		else
			echo "== valgrind: iovad under itest_$t FAILED (exit $rc)"
			tail -20 "$logs/itest_$t.out"
			for f in $bad; do cat "$f"; done
			failed=$((failed + 1))
		fi
	done
	rm -rf "$logs"
}

run_fuzz() {
	# The libFuzzer targets, each for a bounded time: the protocol decoder
	# (FUZZ_SECONDS, default 60), the domain engine (FUZZ_ENGINE_SECONDS,
	# default 30) and the daemon's sessions (FUZZ_SESSION_SECONDS, default
	# 30), so about 2 minutes in all; a crash in any fails the part.
	echo "== fuzz: proto decoder for ${FUZZ_SECONDS:-60} s, engine for ${FUZZ_ENGINE_SECONDS:-30} s," \
		"sessions for ${FUZZ_SESSION_SECONDS:-30} s"
	if "$root/scripts/fuzz.sh"; then
		passed=$((passed + 1))
	else
		echo "== fuzz: FAILED"
		failed=$((failed + 1))
	fi
}

run_soak() {
	# tests/soak: 1000 clients of the release build's daemon doing mixed
	# operations for SOAK_SECONDS (default 12) on each I/O backend, every
	# result checked; then the daemon's counters must account for every
	# session, its memory must not have grown during the load, and it must
	# be back near its baseline once every client has left (the daemon
	# trims its heap then: glibc would otherwise keep what the sessions
	# freed, +85 MiB after 1000 clients on io_uring).
	local bin="$root/build/release/tests/soak/iovad-soak" io
	"$root/scripts/build.sh" release >/dev/null || { failed=$((failed + 1)); return; }
	for io in epoll uring; do
		echo "== soak: ${SOAK_CLIENTS:-1000} clients for ${SOAK_SECONDS:-12} s, io=$io"
		if "$bin" --clients "${SOAK_CLIENTS:-1000}" --seconds "${SOAK_SECONDS:-12}" --io "$io"; then
			passed=$((passed + 1))
		else
			echo "== soak: io=$io FAILED"
			failed=$((failed + 1))
		fi
	done
}

run_restart() {
	# tests/restart: the release daemon under iovad-supervise with a state
	# journal, killed with SIGKILL at random points (RESTART_KILLS, default
	# 40, over RESTART_SECONDS, default 30) while 6 clients work; after every
	# restart each client checks the restored state against what it was
	# told, and the daemon's replay must match every recorded reply. A fresh
	# seed each run (printed; --seed reruns it).
	local bin="$root/build/release/tests/restart/iovad-crashtest"
	"$root/scripts/build.sh" release >/dev/null || { failed=$((failed + 1)); return; }
	echo "== restart: kill -9 at random points, ${RESTART_SECONDS:-30} s"
	if "$bin" --daemon "$root/build/release/daemon/iovad" \
		--supervise "$root/build/release/tools/supervise/iovad-supervise" \
		--clients 6 --seconds "${RESTART_SECONDS:-30}" --kills "${RESTART_KILLS:-40}"; then
		passed=$((passed + 1))
	else
		echo "== restart: FAILED"
		failed=$((failed + 1))
	fi
}

run_afl() {
	# AFL++ against the daemon's socket (scripts/afl.sh) for AFL_SECONDS
	# (default 60); a crash fails the part and is saved as a regression input
	# under tests/fuzz/regress/socket/.
	echo "== afl: the daemon's socket for ${AFL_SECONDS:-60} s"
	if "$root/scripts/afl.sh"; then
		passed=$((passed + 1))
	else
		echo "== afl: FAILED"
		failed=$((failed + 1))
	fi
}

run_units() {
	# systemd-analyze verify (no warnings) and security (exposure <= 2.0), offline.
	echo "== units: systemd-analyze verify and security"
	if "$root/scripts/check-units.sh" "$root/build/release"; then
		passed=$((passed + 1))
	else
		echo "== units: FAILED"
		failed=$((failed + 1))
	fi
}

run_bench() {
	# A smoke run of bench-odp --quick: its daemons start and every fault is served.
	# It prints figures only; no timing is judged.
	local out
	echo "== release: bench-odp --quick"
	if out=$("$root/build/release/bench/odp/bench-odp" --quick 2>&1); then
		passed=$((passed + 1))
	else
		echo "$out" | tail -20
		echo "== release: bench-odp --quick FAILED"
		failed=$((failed + 1))
	fi
	# bench/rxe --quick: iovad's DMA on rxe0 against perftest, in one guest boot (~10 s)
	echo "== release: bench/rxe/run.sh --quick"
	if out=$("$root/bench/rxe/run.sh" --quick "$root/build/release" 2>&1); then
		passed=$((passed + 1))
	else
		echo "$out" | tail -20
		echo "== release: bench/rxe/run.sh --quick FAILED"
		failed=$((failed + 1))
	fi
	# bench/run-all --smoke: every benchmark in its quick form, their CSVs and plots in
	# build/report-smoke (seconds; no figure is judged, the docs are not written)
	echo "== release: bench/run-all --smoke"
	if out=$("$root/bench/run-all" "$root/build/release" --smoke 2>&1); then
		passed=$((passed + 1))
	else
		echo "$out" | tail -30
		echo "== release: bench/run-all --smoke FAILED"
		failed=$((failed + 1))
	fi
}

# The second rxe guest kernel: one whose rxe advertises ODP (Linux 6.15+), from
# Debian's trixie-backports (tests/rxe/fetch-kernel.sh; the host keeps its own).
RXE_ODP_KVER=${IOVAD_RXE_ODP_KVER:-6.18.15+deb13-amd64}

rxe_part() { # rxe_part NAME COMMAND...: one rxe run, counted as one check
	local name=$1 rc
	shift
	"$@"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
	else
		case $rc in
		124) echo "== rxe ($name): FAILED (timeout)" ;;
		125) echo "== rxe ($name): FAILED (the rxe VM could not start; see the 'rxe vm:' lines)" ;;
		*) echo "== rxe ($name): FAILED (exit $rc)" ;;
		esac
		failed=$((failed + 1))
	fi
}

run_rxe() {
	# Real verbs: soft-RoCE in a qemu guest (tests/rxe/run.sh), on two kernels:
	# Debian 12's 6.1 (rxe without ODP: the emulation), and RXE_ODP_KVER, whose
	# rxe advertises ODP (iovad checks its ODP MRs before it trusts them).
	# A VM that cannot start, or a kernel that cannot be fetched, fails the
	# part: there is no silent skip.
	local kroot=$root/build/rxe-kernels/$RXE_ODP_KVER
	echo "== rxe: rxe_check, rxe_module_test, the daemon on rxe0 (tests/rxe/run.sh), Debian 12's kernel"
	rxe_part "default kernel" "$root/tests/rxe/run.sh"
	echo "== rxe: the same on $RXE_ODP_KVER (rxe with ODP)"
	if "$root/tests/rxe/fetch-kernel.sh" "$RXE_ODP_KVER" "$kroot"; then
		rxe_part "$RXE_ODP_KVER" env IOVAD_RXE_KROOT="$kroot" \
			"$root/tests/rxe/run.sh" "$root/build/rxe-odp"
	else
		echo "== rxe ($RXE_ODP_KVER): FAILED (cannot fetch the kernel)"
		failed=$((failed + 1))
	fi
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

case "$what" in
all) run_ctest release; run_bench; run_soak; run_restart; run_units; run_ctest asan
	run_valgrind; run_fuzz; run_afl; run_rxe ;;
release) run_ctest release; run_bench ;;
asan) run_ctest asan ;;
valgrind) run_valgrind ;;
fuzz) run_fuzz ;;
units) run_units ;;
rxe) run_rxe ;;
soak) run_soak ;;
restart) run_restart ;;
afl) run_afl ;;
*) echo "usage: $0 [all|release|asan|valgrind|fuzz|units|rxe|soak|restart|afl]" >&2; exit 2 ;;
esac

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
