#!/usr/bin/env bash
# Build the protocol decoder's libFuzzer target with clang and run it for a
# bounded time on a copy of the seed corpus.
#
#   scripts/fuzz.sh [libFuzzer flags...]     e.g. scripts/fuzz.sh -jobs=4
#   FUZZ_SECONDS=N                           run time (default 60)
#
# Prints the executions and executions/s; exits non-zero on a crash, a leak,
# a sanitizer report or a contract trap (libFuzzer's own exit code). A
# crashing input is kept as build/fuzz/artifacts/crash-*; replay it with
#   build/fuzz/fuzz_proto build/fuzz/artifacts/crash-...
# Installs clang and compiler-rt (libFuzzer, ASan, UBSan) when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/fuzz"
secs=${FUZZ_SECONDS:-60}

# clang-14 and compiler-rt (libclang_rt.fuzzer, .asan, .ubsan_standalone).
"$root/scripts/deps.sh" clang libclang-rt-14-dev cmake make pkg-config

mkdir -p "$out"
work=$(mktemp -d /tmp/iovad-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

# clang must be able to link a fuzzer with the sanitizers.
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
	'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return !d && n; }' \
	>"$work/probe.c"
if ! clang -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>"$work/probe.log"; then
	cat "$work/probe.log" >&2
	echo "fuzz: clang cannot build a libFuzzer target (is libclang-rt-14-dev installed?)" >&2
	exit 1
fi

# ---- build ---------------------------------------------------------------------------
# Through CMake when the top level knows IOVAD_BUILD_FUZZERS; otherwise (or if
# configuring the rest of the project fails) straight from the command line.
bin="$out/fuzz_proto"
rm -f "$bin"
if CC=clang cmake -S "$root" -B "$out" -DCMAKE_C_COMPILER=clang -DIOVAD_BUILD_FUZZERS=ON \
	-DIOVAD_BUILD_TESTS=OFF -DIOVAD_BUILD_BENCH=OFF -DIOVAD_BUILD_EXAMPLES=OFF \
	>"$out/configure.log" 2>&1 &&
	cmake --build "$out" --target fuzz_proto -j "$(nproc)" >"$out/build.log" 2>&1 &&
	[ -x "$out/tests/fuzz/fuzz_proto" ]; then
	cp "$out/tests/fuzz/fuzz_proto" "$bin"
	echo "fuzz: built fuzz_proto with CMake"
else
	echo "fuzz: no CMake fuzz_proto target (see $out/configure.log); building directly"
	clang -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -I"$root/proto" \
		"$root/tests/fuzz/fuzz_proto.c" "$root/proto/proto.c" -o "$bin"
fi

# ---- run -------------------------------------------------------------------------------
mkdir -p "$work/corpus" "$out/artifacts"
cp "$root"/tests/fuzz/corpus/* "$work/corpus/"
log="$out/fuzz_proto.log"
echo "fuzz: running fuzz_proto for ${secs}s on $(find "$work/corpus" -type f | wc -l) seeds"
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
	"$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	-artifact_prefix="$out/artifacts/" "$@" "$work/corpus" >"$log" 2>&1
rc=$?
set -e

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
if [ "$rc" -ne 0 ]; then
	# Everything but the progress lines: the sanitizer report and the artifact.
	grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' "$log" | tail -n 200
	echo "fuzz: FAILED (exit $rc) after ${execs:-?} executions; full log: $log"
	exit "$rc"
fi
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
echo "fuzz: ${execs:-?} executions in ${secs}s, ${rate:-?} exec/s, no crash"
