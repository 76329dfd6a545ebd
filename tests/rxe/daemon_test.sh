#!/usr/bin/env bash
# tests/rxe/daemon_test.sh IOVAD RXE_CLIENT: inside the rxe guest (run.sh), start the real
# daemon with a device of backend = rxe on $RXE_DEV and run rxe_client against it; then
# stop the daemon and check with rdma(8) that it left no MR behind. TAP from the client,
# plus this script's own lines; exit 0 only if all passed.
set -uo pipefail
iovad=$1
client=$2
dir=$(mktemp -d /tmp/iovad-rxe.XXXXXX)
cat >"$dir/iovad.conf" <<CONF
[device rxenic0]
backend = rxe
rdma_device = ${RXE_DEV:-rxe0}
CONF
"$iovad" -c "$dir/iovad.conf" -s "$dir/s.sock" --io=epoll 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do
	[ -S "$dir/s.sock" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ ! -S "$dir/s.sock" ]; then
	echo "Bail out! the daemon did not start:"
	sed 's/^/# /' "$dir/log"
	exit 1
fi
"$client" "$dir/s.sock" rxenic0
rc=$?
kill -TERM "$pid"
wait "$pid"
drc=$?
left=$(rdma resource show mr 2>/dev/null | grep -c 'comm iovad')
echo "1..2"
if [ "$drc" -eq 0 ]; then echo "ok 1 - the daemon exited 0 on SIGTERM"; else
	echo "not ok 1 - the daemon exited $drc on SIGTERM"; rc=1; fi
if [ "$left" -eq 0 ]; then echo "ok 2 - no MR of iovad left in the kernel"; else
	echo "not ok 2 - $left MR(s) of iovad left in the kernel"; rc=1; fi
if [ "$rc" -ne 0 ]; then sed 's/^/# iovad: /' "$dir/log"; fi
exit "$rc"
