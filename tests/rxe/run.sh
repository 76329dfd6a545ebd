#!/usr/bin/env bash
# tests/rxe/run.sh [BUILD_DIR]: build rxe_check with gcc into BUILD_DIR
# (default build/rxe), run it in the rxe guest through vm.sh, and print a
# summary with the wall time of the whole rxe part (build + boot + checks).
# Exit status: 0 if every check passed; vm.sh's 124/125 when the VM timed
# out or could not start; 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(cd "$here/../.." && pwd)
bdir=${1:-$root/build/rxe}
t0=$(date +%s%N)

summary() { # summary STATUS TEXT
	local ms=$((($(date +%s%N) - t0) / 1000000))
	printf 'rxe: %s (wall %d.%03d s)\n' "$2" $((ms / 1000)) $((ms % 1000))
	exit "$1"
}

mkdir -p "$bdir" || summary 1 "FAILED: cannot create $bdir"
bdir=$(cd "$bdir" && pwd)
# the guest sees this machine's / read-only, so it runs this binary as is
# shellcheck disable=SC2046 # pkg-config prints separate words
if ! gcc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wformat=2 -Werror \
	-o "$bdir/rxe_check" "$here/rxe_check.c" $(pkg-config --cflags --libs libibverbs); then
	summary 1 "FAILED: cannot build rxe_check (libibverbs-dev missing? run scripts/deps.sh)"
fi

# The guest runs rxe_check in $bdir; its TAP goes to our stdout and a log.
log=$bdir/rxe_check.log
(cd "$bdir" && "$here/vm.sh" './rxe_check') | tee "$log"
rc=${PIPESTATUS[0]}
nok=$(grep -c '^ok ' "$log")
nbad=$(grep -c '^not ok ' "$log")
case $rc in
0)
	if [ "$nok" -eq 0 ] || [ "$nbad" -ne 0 ]; then
		summary 1 "FAILED: rxe_check exited 0 but reported $nok ok, $nbad not ok"
	fi
	summary 0 "PASS: $nok checks ok"
	;;
124) summary 124 "FAILED: the VM or rxe_check timed out ($nok ok, $nbad not ok so far)" ;;
125) summary 125 "FAILED: the rxe VM could not start (see the 'rxe vm:' lines above)" ;;
*) summary 1 "FAILED: rxe_check exit $rc, $nok ok, $nbad not ok" ;;
esac
