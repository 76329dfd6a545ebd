#!/usr/bin/env bash
# tests/rxe/run.sh [BUILD_DIR]: build rxe_check and rxe_module_test (daemon/rxe.c)
# with gcc into BUILD_DIR (default build/rxe), run them in ONE rxe guest boot
# through vm.sh, and print a summary with the wall time of the whole rxe part
# (build + boot + checks). A boot costs seconds under TCG; a program, ~25 ms.
# The guest kernel is vm.sh's choice (IOVAD_RXE_KROOT, IOVAD_RXE_KVER); the
# summary names it. IOVAD_RXE_ODP=mr runs the daemon and rxe_module_test with
# ODP MRs asked for (for a kernel whose rxe ODP works; rxe.h says why not
# Debian's 6.18); the default is the emulation.
# Exit status: 0 if every check passed; vm.sh's 124/125 when the VM timed
# out or could not start; 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(cd "$here/../.." && pwd)
bdir=${1:-$root/build/rxe}
t0=$(date +%s%N)

kernel= # uname -r in the guest, once it ran
summary() { # summary STATUS TEXT
	local ms=$((($(date +%s%N) - t0) / 1000000))
	[ -z "$kernel" ] || echo "rxe: guest kernel $kernel"
	printf 'rxe: %s (wall %d.%03d s)\n' "$2" $((ms / 1000)) $((ms % 1000))
	exit "$1"
}

mkdir -p "$bdir" || summary 1 "FAILED: cannot create $bdir"
bdir=$(cd "$bdir" && pwd)
# the guest sees this machine's / read-only, so it runs this binary as is
cflags=(-std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wformat=2 -Werror)
# shellcheck disable=SC2046 # pkg-config prints separate words
if ! gcc "${cflags[@]}" -o "$bdir/rxe_check" "$here/rxe_check.c" \
	$(pkg-config --cflags --libs libibverbs); then
	summary 1 "FAILED: cannot build rxe_check (libibverbs-dev missing? run scripts/deps.sh)"
fi
# shellcheck disable=SC2046
if ! gcc "${cflags[@]}" -I"$root/daemon" -o "$bdir/rxe_module_test" \
	"$here/rxe_module_test.c" "$root/daemon/rxe.c" \
	$(pkg-config --cflags --libs libibverbs librdmacm); then
	summary 1 "FAILED: cannot build rxe_module_test (librdmacm-dev missing? run scripts/deps.sh)"
fi
# shellcheck disable=SC2046
if ! gcc "${cflags[@]}" -I"$root/proto" -o "$bdir/rxe_peer" "$here/rxe_peer.c" \
	$(pkg-config --cflags --libs libibverbs librdmacm); then
	summary 1 "FAILED: cannot build rxe_peer"
fi

# The daemon and libiovad, for daemon_test.sh (built here: the guest cannot build).
if ! { cmake -S "$root" -B "$bdir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DIOVAD_ENABLE_WERROR=ON >"$bdir/cmake.log" 2>&1 &&
	cmake --build "$bdir/build" -j"$(nproc)" --target iovad libiovad >>"$bdir/cmake.log" 2>&1; }; then
	tail -n 30 "$bdir/cmake.log"
	summary 1 "FAILED: cannot build the daemon (see $bdir/cmake.log)"
fi
if ! gcc "${cflags[@]}" -I"$root/libclient/include" -o "$bdir/rxe_client" "$here/rxe_client.c" \
	-L"$bdir/build/libclient" -liovad -Wl,-rpath,"$bdir/build/libclient"; then
	summary 1 "FAILED: cannot build rxe_client"
fi

# The guest runs them in $bdir, one after the other (the second even if the
# first failed, so one run shows everything); their TAP goes to our stdout
# and a log. The exit status is the first failure's.
log=$bdir/rxe_check.log
# shellcheck disable=SC2016 # expanded by the guest's bash
(cd "$bdir" && "$here/vm.sh" \
	'echo "# guest kernel $(uname -r)"
	export IOVAD_RXE_ODP='"${IOVAD_RXE_ODP:-emulate}"'
	./rxe_check; rc=$?; ./rxe_module_test; r=$?; [ $rc != 0 ] || rc=$r
	'"$here"'/daemon_test.sh build/daemon/iovad ./rxe_client ./rxe_peer; r=$?; [ $rc != 0 ] || rc=$r
	exit $rc') |
	tee "$log"
rc=${PIPESTATUS[0]}
kernel=$(sed -n 's/^# guest kernel //p' "$log" | head -n1)
nok=$(grep -c '^ok ' "$log")
nbad=$(grep -c '^not ok ' "$log")
# every plan ("1..N") of every program, added up: a program that stopped
# early or never ran leaves fewer ok lines than planned
nplan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
case $rc in
0)
	if [ "$nok" -eq 0 ] || [ "$nbad" -ne 0 ] || [ "$nok" -ne "$nplan" ]; then
		summary 1 "FAILED: the checks exited 0 but reported $nok ok, $nbad not ok of $nplan planned"
	fi
	summary 0 "PASS: $nok checks ok"
	;;
124) summary 124 "FAILED: the VM or a check timed out ($nok ok, $nbad not ok so far)" ;;
125) summary 125 "FAILED: the rxe VM could not start (see the 'rxe vm:' lines above)" ;;
*) summary 1 "FAILED: exit $rc, $nok ok, $nbad not ok" ;;
esac
