#!/usr/bin/env bash
# Replay inputs through iovad-stdin: the daemon reads each one from stdin and
# writes it into its own socket (daemon/fuzz_stdin.c), as AFL++ runs it
# (scripts/afl.sh). Every input must end in a clean shutdown, exit status 0:
# a crash, a sanitizer report (the ASan build) or a hang fails.
#
#   replay_socket.sh IOVAD_STDIN FILE|DIR...
set -uo pipefail
bin=$1
shift
dir=$(mktemp -d /tmp/iovad-replay.XXXXXX)
trap 'rm -rf "$dir"' EXIT
n=0
bad=0
for arg in "$@"; do
	if [ -d "$arg" ]; then
		files=$(find "$arg" -maxdepth 1 -type f ! -name 'README*' ! -name '.*' | sort)
	else
		files=$arg
	fi
	for f in $files; do
		n=$((n + 1))
		for io in epoll uring; do
			timeout 20 "$bin" --socket "$dir/s" --io="$io" -q <"$f" >"$dir/out" 2>&1
			rc=$?
			if [ "$rc" -ne 0 ]; then
				echo "replay: $f (io=$io): exit $rc"
				tail -n 30 "$dir/out"
				bad=$((bad + 1))
			fi
		done
	done
done
echo "replay: $n inputs through the daemon's socket, $bad failures"
[ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
