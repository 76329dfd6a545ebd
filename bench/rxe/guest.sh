#!/usr/bin/env bash
# bench/rxe/guest.sh IOVAD BENCH_RXE [--quick]: inside the rxe guest (run.sh boots it through
# tests/rxe/vm.sh), start the daemon with sim0 and an rxe device on $RXE_DEV, run bench-rxe
# against it, stop the daemon, then run perftest's ib_write_bw and ib_write_lat in loopback
# on the same $RXE_DEV. Prints their outputs; run.sh parses them. Every fork costs ~25 ms
# here: few commands, no loops of them beyond the waits.
set -uo pipefail
iovad=$1
bench=$2
quick=${3:-}
dev=${RXE_DEV:-rxe0}
gid=${RXE_GID_IDX:-1}
ip=${RXE_IP:-10.77.0.1}
if [ "$quick" = --quick ]; then bw_n=100 lat_n=200; else bw_n=2000 lat_n=2000; fi
# Daemon and client on one vCPU: a blocking wake-up across vCPUs costs milliseconds under
# TCG, which would swamp every figure (BENCH_RXE_CPU=none: no pinning).
cpu=${BENCH_RXE_CPU:-0}
pinned=()
[ "$cpu" = none ] || pinned=(taskset -c "$cpu")
t0=$EPOCHREALTIME
dir=$(mktemp -d /tmp/iovad-bench.XXXXXX)
cat >"$dir/iovad.conf" <<CONF
[odp]
fault_around = 4K

[device sim0]
backend = sim

[device rxenic0]
backend = rxe
rdma_device = $dev
CONF
echo "guest: daemon and bench-rxe on CPU ${cpu}"
"${pinned[@]}" "$iovad" -c "$dir/iovad.conf" -s "$dir/s.sock" --io=epoll -q 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do
	[ -S "$dir/s.sock" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ ! -S "$dir/s.sock" ]; then
	echo "guest: the daemon did not start:"
	sed 's/^/# /' "$dir/log"
	exit 1
fi
"${pinned[@]}" "$bench" "$dir/s.sock" rxenic0 ${quick:+"$quick"}
rc=$?
kill -TERM "$pid"
wait "$pid"
[ "$rc" -eq 0 ] || sed 's/^/# iovad: /' "$dir/log"

# perftest loopback: the server listens on TCP 18515 for the exchange; the client
# retries until it is up. -F: no cpufreq warning (a VM).
perf() { # perf TOOL ARGS...: server in the background, client to $ip
	local tool=$1 spid crc=1
	shift
	"$tool" -d "$dev" -x "$gid" -F "$@" >"$dir/$tool.server" 2>&1 &
	spid=$!
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		sleep 0.2
		"$tool" -d "$dev" -x "$gid" -F "$@" "$ip" >"$dir/$tool.client" 2>&1 && {
			crc=0
			break
		}
		grep -q -i 'connect' "$dir/$tool.client" || break
	done
	[ "$crc" -eq 0 ] || kill "$spid" 2>/dev/null
	wait "$spid"
	echo "== $tool $* (client)"
	cat "$dir/$tool.client"
	[ "$crc" -eq 0 ] || { echo "== $tool server:"; cat "$dir/$tool.server"; }
	return "$crc"
}
t1=$EPOCHREALTIME
perf ib_write_bw -s 65536 -n "$bw_n" || rc=1
perf ib_write_lat -s 64 -n "$lat_n" || rc=1
t2=$EPOCHREALTIME
# (bash arithmetic has no floats and a fork costs 25 ms: microseconds by string surgery)
us() { echo $((${1/./} - ${2/./})); }
echo "guest_daemon_bench_us=$(us "$t1" "$t0")"
echo "guest_perftest_us=$(us "$t2" "$t1")"
exit "$rc"
