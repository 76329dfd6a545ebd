#!/usr/bin/env bash
# The README's main-job command: install dependencies, build, start the
# daemon on the simulated domain (a temporary socket), run the example
# client against it, show the daemon's view with iovadctl, stop the daemon
# (it must exit 0), then run the benchmarks.
#
#   scripts/main-job.sh           benchmarks in their quick form
#   scripts/main-job.sh --full    benchmarks in full (a few minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench_args=(--quick)
[ "${1:-}" = "--full" ] && bench_args=()

"$root/scripts/deps.sh"
"$root/scripts/build.sh" release
b="$root/build/release"

dir=$(mktemp -d /tmp/iovad-main.XXXXXX)
sock="$dir/iovad.sock"
"$b/daemon/iovad" --socket "$sock" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 500); do
	[ -S "$sock" ] && break
	sleep 0.01
done

echo "== examples/client against iovad (pid $pid, $sock)"
"$b/examples/iovad-example-client" "$sock"
echo "== iovadctl devices"
"$b/tools/iovadctl" --socket "$sock" devices
echo "== iovadctl status"
"$b/tools/iovadctl" --socket "$sock" status
kill -TERM "$pid"
wait "$pid"
echo "iovad exited $?"

echo "== examples/iova-lifecycle (the engine in-process)"
"$b/examples/iova-lifecycle"
echo "== bench/domain"
"$b/bench/domain/bench-domain" "${bench_args[@]}"
echo "== bench/ipc"
"$b/bench/ipc/bench-ipc" "${bench_args[@]}"
echo "== bench/odp"
"$b/bench/odp/bench-odp" "${bench_args[@]}"
