#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for a bounded time on a
# copy of its seed corpus:
#   fuzz_proto   the wire protocol decoder       (tests/fuzz/corpus/)
#   fuzz_engine  the domain engine, op sequences (tests/fuzz/corpus_engine/)
#   fuzz_session the daemon's sessions, frame sequences (tests/fuzz/corpus_session/)
#
#   scripts/fuzz.sh [libFuzzer flags...]     e.g. scripts/fuzz.sh -jobs=4
#   FUZZ_SECONDS=N                           fuzz_proto's run time (default 60)
#   FUZZ_ENGINE_SECONDS=N                    fuzz_engine's run time (default 30)
#   FUZZ_SESSION_SECONDS=N                   fuzz_session's run time (default 30)
#   FUZZ_TARGETS="fuzz_engine"               run only these (default all three)
#   FUZZ_OUT=dir                             build dir (default build/fuzz)
#
# Prints the executions and executions/s of each; exits non-zero on a crash,
# a leak, a sanitizer report or a contract trap in any of them (libFuzzer's
# own exit code). A crashing input is kept as build/fuzz/artifacts/<target>-crash-*;
# replay it with
#   build/fuzz/fuzz_engine build/fuzz/artifacts/fuzz_engine-crash-...
# fuzz_session's are also copied to tests/fuzz/regress/session/, which the
# fuzz_session_regress ctest replays in the regular builds: commit it with the fix.
# Installs clang and compiler-rt (libFuzzer, ASan, UBSan) when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_OUT:-$root/build/fuzz}
targets=${FUZZ_TARGETS:-fuzz_proto fuzz_engine fuzz_session}

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
cmake_ok=false
if CC=clang cmake -S "$root" -B "$out" -DCMAKE_C_COMPILER=clang -DIOVAD_BUILD_FUZZERS=ON \
	-DIOVAD_BUILD_TESTS=OFF -DIOVAD_BUILD_BENCH=OFF -DIOVAD_BUILD_EXAMPLES=OFF \
	>"$out/configure.log" 2>&1; then
	cmake_ok=true
fi
for t in $targets; do
	bin="$out/$t"
	rm -f "$bin"
	if $cmake_ok && cmake --build "$out" --target "$t" -j "$(nproc)" >"$out/build-$t.log" 2>&1 &&
		[ -x "$out/tests/fuzz/$t" ]; then
		cp "$out/tests/fuzz/$t" "$bin"
		echo "fuzz: built $t with CMake"
		continue
	fi
	echo "fuzz: no CMake $t target (see $out/configure.log); building directly"
	case $t in
	fuzz_proto) src=("$root/tests/fuzz/fuzz_proto.c" "$root/proto/proto.c"); inc="$root/proto" ;;
	fuzz_engine) src=("$root/tests/fuzz/fuzz_engine.c" "$root"/daemon/domain/*.c)
		inc="$root/daemon/domain" ;;
	fuzz_session) # all of the daemon but main.c (tests/fuzz/daemon.cmake)
		src=("$root/tests/fuzz/fuzz_session.c" "$root"/daemon/domain/*.c "$root"/proto/*.c)
		for f in "$root"/daemon/*.c; do
			case $f in */main.c | */fuzz_stdin.c) ;; *) src+=("$f") ;; esac
		done
		inc="$root/daemon" ;;
	*) echo "fuzz: unknown target $t" >&2; exit 2 ;;
	esac
	libs=()
	[ "$t" = fuzz_session ] && read -ra libs <<<"-I$root/daemon/domain -I$root/proto \
		$(pkg-config --cflags --libs libevent liburing libsystemd libibverbs librdmacm inih)"
	clang -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -I"$inc" "${src[@]}" "${libs[@]}" -o "$bin"
done

# ---- run -------------------------------------------------------------------------------
mkdir -p "$out/artifacts"
status=0
for t in $targets; do
	case $t in
	fuzz_proto) secs=${FUZZ_SECONDS:-60}; seeds="$root/tests/fuzz/corpus" ;;
	fuzz_session) secs=${FUZZ_SESSION_SECONDS:-30}; seeds="$root/tests/fuzz/corpus_session" ;;
	*) secs=${FUZZ_ENGINE_SECONDS:-30}; seeds="$root/tests/fuzz/corpus_engine" ;;
	esac
	# Each target mutates its own copy of its own seeds: the formats differ.
	rm -rf "$work/corpus-$t"
	mkdir -p "$work/corpus-$t"
	cp "$seeds"/* "$work/corpus-$t/"
	log="$out/$t.log"
	echo "fuzz: running $t for ${secs}s on $(find "$work/corpus-$t" -type f | wc -l) seeds"
	touch "$work/started-$t"
	set +e
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
		"$out/$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$out/artifacts/$t-" "$@" "$work/corpus-$t" >"$log" 2>&1
	rc=$?
	set -e

	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	if [ "$rc" -ne 0 ]; then
		# Everything but the progress lines: the sanitizer report and the artifact.
		grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' "$log" | tail -n 200
		echo "fuzz: $t FAILED (exit $rc) after ${execs:-?} executions; full log: $log"
		# A session input that failed becomes a regression test (fuzz_session_regress).
		if [ "$t" = fuzz_session ]; then
			find "$out/artifacts" -newer "$work/started-$t" -type f \
				-regex ".*/$t-\(crash\|leak\|timeout\|oom\)-.*" |
				while read -r a; do
					dest="tests/fuzz/regress/session/${a##*/"$t"-}.bin"
					cp "$a" "$root/$dest"
					echo "fuzz: saved as $dest"
				done
		fi
		status=$rc
		continue
	fi
	grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
	echo "fuzz: $t: ${execs:-?} executions in ${secs}s, ${rate:-?} exec/s, no crash"
done
exit "$status"
