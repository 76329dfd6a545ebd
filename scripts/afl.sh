#!/usr/bin/env bash
# AFL++ against the daemon's socket, for a bounded time. The target is
# iovad-stdin: the real daemon plus daemon/fuzz_stdin.c, which writes its
# standard input into the daemon's own listening socket (a memfd riding with
# every MEM_IMPORT frame) and shuts the daemon down the ordinary way when the
# connection is over; built with afl-clang-fast, ASan and UBSan. Seeds:
# tests/fuzz/afl/seeds/ (sessions on the default devices) and
# tests/fuzz/corpus/; dictionary: tests/fuzz/afl/iovad.dict.
#
#   scripts/afl.sh [afl-fuzz flags...]
#   AFL_SECONDS=N        run time (default 60)
#   AFL_OUT=dir          build and findings (default build/afl)
#   AFL_IO=epoll|uring   the daemon's transport (default epoll: io_uring's
#                        kernel-side completions make AFL's coverage unstable)
#
# Prints the executions, executions/s, paths and crashes. Exits non-zero if
# AFL++ found a crash, or a hang that repeats outside AFL++ (10 s); each such
# input is copied to tests/fuzz/regress/socket/afl-<sha1>.bin, which the
# fuzz_socket_regress ctest replays through the regular builds' iovad-stdin:
# commit it together with the fix. Replay one by hand with
#   build/afl/build/tests/fuzz/replay/iovad-stdin --socket /tmp/s --io=epoll < FILE
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${AFL_OUT:-$root/build/afl}
secs=${AFL_SECONDS:-60}
io=${AFL_IO:-epoll}

"$root/scripts/deps.sh" afl++ clang libclang-rt-14-dev cmake make pkg-config libcriterion-dev

# ---- build ---------------------------------------------------------------------------
mkdir -p "$out"
echo "afl: building iovad-stdin with afl-clang-fast, ASan and UBSan"
if ! AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 CC=afl-clang-fast \
	cmake -S "$root" -B "$out/build" -DCMAKE_C_COMPILER=afl-clang-fast \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOVAD_BUILD_TESTS=ON -DIOVAD_BUILD_BENCH=OFF \
		-DIOVAD_BUILD_EXAMPLES=OFF >"$out/configure.log" 2>&1 ||
	! AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 \
	cmake --build "$out/build" --target iovad-stdin -j "$(nproc)" >"$out/build.log" 2>&1; then
	tail -n 40 "$out/configure.log" "$out/build.log" 2>/dev/null
	echo "afl: build FAILED (see $out/configure.log, $out/build.log)"
	exit 1
fi
bin="$out/build/tests/fuzz/replay/iovad-stdin"

# ---- run -------------------------------------------------------------------------------
work=$(mktemp -d /tmp/iovad-afl.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in" "$work/sock"
cp "$root"/tests/fuzz/afl/seeds/*.bin "$work/in/"
for f in "$root"/tests/fuzz/corpus/*.bin; do cp "$f" "$work/in/corpus-$(basename "$f")"; done
rm -rf "$out/findings"
echo "afl: fuzzing the daemon's socket (io=$io) for ${secs}s from $(find "$work/in" -type f | wc -l) seeds"
# This container: no CPU frequency governor to read, a core_pattern AFL++
# does not like, two shared vCPUs (no pinning), no terminal. This script's
# own AFL_* settings are not AFL++'s, which warns about them: kept from it.
set +e
env -u AFL_SECONDS -u AFL_OUT -u AFL_IO \
AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 \
ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0:allocator_may_return_null=1 \
UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:symbolize=0 \
	afl-fuzz -i "$work/in" -o "$out/findings" -V "$secs" -t 2000 -m none \
		-x "$root/tests/fuzz/afl/iovad.dict" "$@" -- \
		"$bin" --socket "$work/sock/iovad.sock" --io="$io" -q >"$out/afl.log" 2>&1
rc=$?
set -e
stats="$out/findings/default/fuzzer_stats"
if [ "$rc" -ne 0 ] || [ ! -f "$stats" ]; then
	tail -n 40 "$out/afl.log"
	echo "afl: afl-fuzz FAILED to run (exit $rc); full log: $out/afl.log"
	exit 1
fi
afl_stat() { sed -n "s/^$1 *: *//p" "$stats" | head -1; }
crashes=$(afl_stat saved_crashes)
hangs=$(afl_stat saved_hangs)
echo "afl: $(afl_stat execs_done) executions in ${secs}s ($(afl_stat execs_per_sec) exec/s), $(afl_stat corpus_count) paths, coverage $(afl_stat bitmap_cvg), ${crashes:-?} crashes, ${hangs:-?} hangs"

# ---- crashes and hangs become regression inputs ------------------------------------------
status=0
keep() { # $1 = input, $2 = kind
	local sha dest
	sha=$(sha1sum "$1" | cut -c1-16)
	dest="$root/tests/fuzz/regress/socket/afl-$2-$sha.bin"
	cp "$1" "$dest"
	echo "afl: $2 saved as $dest"
	ASAN_OPTIONS=symbolize=1:detect_leaks=0 timeout 10 "$bin" --socket "$work/sock/r.sock" \
		--io="$io" -q <"$1" 2>&1 | tail -n 30 || true
}
for f in "$out"/findings/default/crashes/id:*; do
	[ -f "$f" ] || continue
	keep "$f" crash
	status=1
done
for f in "$out"/findings/default/hangs/id:*; do
	[ -f "$f" ] || continue
	# A shared, noisy machine makes slow runs: only a hang that repeats counts.
	if ! timeout 10 "$bin" --socket "$work/sock/h.sock" --io="$io" -q <"$f" >/dev/null 2>&1; then
		keep "$f" hang
		status=1
	else
		echo "afl: $(basename "$f") was slow under AFL++ but ends within 10 s alone: not kept"
	fi
done
[ "$status" -eq 0 ] && echo "afl: no crash"
exit "$status"
