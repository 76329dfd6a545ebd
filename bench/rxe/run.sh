#!/usr/bin/env bash
# bench/rxe/run.sh [--quick] [BUILD_DIR]: device DMA through iovad on soft-RoCE against
# perftest on the same rxe device, measured in ONE rxe guest boot (tests/rxe/vm.sh).
#
# Builds iovad and bench-rxe in BUILD_DIR (default build/release; configured here if it
# has no CMake cache yet); in the guest (bench/rxe/guest.sh) starts the daemon with sim0
# and an rxe device on rxe0, runs bench-rxe, stops the daemon, runs ib_write_bw and
# ib_write_lat in loopback on rxe0; then prints a summary of iovad against perftest, as
# ratios of figures from this same run, with the wall time. --quick: small sizes.
#
# A benchmark: it prints figures and never judges them. Exit status: 0 if everything
# ran; vm.sh's 124/125 when the VM timed out or could not start; 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(cd "$here/../.." && pwd)
quick=
[ "${1:-}" = --quick ] && { quick=--quick; shift; }
bdir=${1:-$root/build/release}
t0=$(date +%s%N)

summary() { # summary STATUS TEXT
	local ms=$((($(date +%s%N) - t0) / 1000000))
	printf 'bench-rxe: %s (wall %d.%03d s)\n' "$2" $((ms / 1000)) $((ms % 1000))
	exit "$1"
}

for t in ib_write_bw ib_write_lat; do
	command -v "$t" >/dev/null || summary 1 "FAILED: no $t (perftest; run scripts/deps.sh)"
done
mkdir -p "$bdir" || summary 1 "FAILED: cannot create $bdir"
bdir=$(cd "$bdir" && pwd)
if [ ! -f "$bdir/CMakeCache.txt" ] &&
	! cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$bdir/bench-rxe.log" 2>&1
then
	tail -n 30 "$bdir/bench-rxe.log"
	summary 1 "FAILED: cannot configure $bdir"
fi
if ! cmake --build "$bdir" -j"$(nproc)" --target iovad bench-rxe >"$bdir/bench-rxe.log" 2>&1
then
	tail -n 30 "$bdir/bench-rxe.log"
	summary 1 "FAILED: cannot build iovad and bench-rxe (see $bdir/bench-rxe.log)"
fi

log=$bdir/bench-rxe.out
# shellcheck disable=SC2016 # RXE_* expand in the guest
(cd "$bdir" && "$root/tests/rxe/vm.sh" \
	"$here"'/guest.sh daemon/iovad bench/rxe/bench-rxe '"$quick") | tee "$log"
rc=${PIPESTATUS[0]}
case $rc in
0) ;;
124) summary 124 "FAILED: the VM or the benchmark timed out" ;;
125) summary 125 "FAILED: the rxe VM could not start (see the 'rxe vm:' lines above)" ;;
*) summary 1 "FAILED: exit $rc in the guest" ;;
esac

# key=value lines of bench-rxe; perftest's data rows after their "== tool" headers
kv() { sed -n "s/^$1=//p" "$log" | head -n1; }
read -r pt_bw < <(awk '/^== ib_write_bw/ { f = 1 }
	f && $1 == 65536 && NF >= 4 { print $4; exit }' "$log")
read -r pt_lat pt_lat99 < <(awk '/^== ib_write_lat/ { f = 1 }
	f && $1 == 64 && NF >= 8 { print $5, $8; exit }' "$log")
if [ -z "${pt_bw:-}" ] || [ -z "${pt_lat:-}" ] || [ -z "$(kv rxe_write_mibs)" ]; then
	summary 1 "FAILED: a figure is missing from the output (see $log)"
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

echo
echo "== summary (rxe0 in a TCG guest; the same boot for every figure)"
printf '%-58s %10s %10s %8s\n' "" iovad perftest ratio
printf '%-58s %10s %10s %8s\n' "RDMA WRITE bandwidth, MiB/s (iovad 64K frames | -s 65536)" \
	"$(kv rxe_write_mibs)" "$pt_bw" "$(ratio "$(kv rxe_write_mibs)" "$pt_bw")"
printf '%-58s %10s %10s %8s\n' "64 B write latency p50, us (iovad | ib_write_lat typical)" \
	"$(kv rxe_write64_p50_us)" "$pt_lat" "$(ratio "$(kv rxe_write64_p50_us)" "$pt_lat")"
printf '%-58s %10s %10s %8s\n' "64 B write latency p99, us (iovad | ib_write_lat 99%)" \
	"$(kv rxe_write64_p99_us)" "$pt_lat99" "$(ratio "$(kv rxe_write64_p99_us)" "$pt_lat99")"
printf '%-58s %10s %10s %8s\n' "64 B write p50 on sim0, us: the socket round trip" \
	"$(kv sim_write64_p50_us)" "" ""
printf '%-58s %10s %10s %8s\n' "64 B write p50, rxe / sim0" "" "" \
	"$(ratio "$(kv rxe_write64_p50_us)" "$(kv sim_write64_p50_us)")"
rdma=$(awk -v a="$(kv rxe_write64_p50_us)" -v b="$(kv sim_write64_p50_us)" \
	'BEGIN { printf "%.2f", a - b }')
rtt=$(awk -v a="$pt_lat" 'BEGIN { printf "%.2f", 2 * a }')
printf '%-58s %10s %10s %8s\n' "64 B write p50, rxe - sim0 | 2 x ib_write_lat typical, us" \
	"$rdma" "$rtt" "$(ratio "$rdma" "$rtt")"
echo "(ib_write_lat reports half a ping-pong round trip; an iovad write is a whole one:"
echo " client -> daemon -> RDMA WRITE + its completion -> reply; perftest busy-polls, iovad"
echo " blocks, and the daemon and bench-rxe share one vCPU)"
if [ -n "$(kv rxe_odp_first_p50_us)" ]; then
	printf '%-58s %10s %10s\n' "ODP first touch on rxe, p50 | p99 us (fault emulated)" \
		"$(kv rxe_odp_first_p50_us)" "$(kv rxe_odp_first_p99_us)"
	printf '%-58s %10s %10s\n' "the same read once mapped, p50 | p99 us" \
		"$(kv rxe_odp_mapped_p50_us)" "$(kv rxe_odp_mapped_p99_us)"
else
	echo "TODO: ODP first-touch latency on rxe not measured (see bench-rxe's part 3 above)"
fi
summary 0 "done${quick:+ (quick)}"
