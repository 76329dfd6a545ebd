#!/usr/bin/env bash
# tests/rxe/daemon_test.sh IOVAD RXE_CLIENT RXE_PEER: inside the rxe guest (run.sh), start
# the real daemon with a device of backend = rxe on $RXE_DEV, a sim device, and rdma_listen
# on $RXE_IP, and run rxe_client against it (which runs RXE_PEER, remote RDMA peers); then
# stop the daemon and check with rdma(8) that it left no MR behind. TAP from the client,
# plus this script's own lines; exit 0 only if all passed. IOVAD_RXE_ODP=mr (run.sh passes
# it in) asks for ODP MRs: only for a kernel whose rxe ODP works (rxe.h says why not 6.18).
set -uo pipefail
iovad=$1
client=$2
peer=$3
ip=${RXE_IP:-10.77.0.1}
port=7471
dir=$(mktemp -d /tmp/iovad-rxe.XXXXXX)
cat >"$dir/iovad.conf" <<CONF
[daemon]
rdma_listen = $ip:$port

[device rxenic0]
backend = rxe
rdma_device = ${RXE_DEV:-rxe0}
odp = ${IOVAD_RXE_ODP:-emulate}

[device simnic0]
backend = sim
CONF
# start_daemon SOCKET LOG: the daemon in the background ($pid), up when its socket is there
start_daemon() {
	"$iovad" -c "$dir/iovad.conf" -s "$1" --io=epoll 2>"$2" &
	pid=$!
	for _ in $(seq 100); do
		[ -S "$1" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ ! -S "$1" ]; then
		echo "Bail out! the daemon did not start:"
		sed 's/^/# /' "$2"
		exit 1
	fi
}

# iovad's resources of one kind in the kernel (rdma resource show KIND: mr, qp, pd, cm_id)
count() {
	rdma resource show "$1" 2>/dev/null | grep -c 'comm iovad'
}

n=0
tap() { # tap OK TEXT
	n=$((n + 1))
	if [ "$1" = 1 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; rc=1; fi
}

start_daemon "$dir/s.sock" "$dir/log"
odpline=$(grep -m1 'device rxenic0: .*ODP' "$dir/log")
"$client" "$dir/s.sock" rxenic0 simnic0 "$peer" "$ip" "$port"
rc=$?
kill -TERM "$pid"
wait "$pid"
drc=$?
left=$(count mr)

echo "1..10"
said=0
[ -n "$odpline" ] && said=1
tap $said "the daemon said how it runs ODP on rxe0 (${odpline:-no such line})"
tap $((drc == 0)) "the daemon exited $drc on SIGTERM"
tap $((left == 0)) "no MR of iovad left in the kernel after SIGTERM ($left)"

# SIGKILL with a client's MRs and a remote peer's QP live: the kernel cleans up for it.
start_daemon "$dir/k.sock" "$dir/klog"
"$client" "$dir/k.sock" rxenic0 --hold "$peer" "$ip" "$port" >"$dir/hold" 2>&1 &
hpid=$!
for _ in $(seq 200); do
	grep -q holding "$dir/hold" && break
	kill -0 "$hpid" 2>/dev/null || break
	sleep 0.05
done
mr=$(count mr) qp=$(count qp) pd=$(count pd) cm=$(count cm_id)
tap $((mr >= 2 && qp >= 3 && pd >= 1 && cm >= 2)) \
	"with a client and a peer connected iovad holds $mr MR(s), $qp QP(s), $pd PD(s), $cm cm_id(s)"
# (the wait inside the braces, so that bash's "Killed" notice goes to /dev/null)
{
	kill -KILL "$pid"
	wait "$pid"
	krc=$?
} 2>/dev/null
tap $((krc == 137)) "the daemon died of SIGKILL (status $krc)"
# The kernel releases a dead process's verbs objects when its files close: give it a moment.
for _ in $(seq 100); do
	[ "$(count mr)$(count qp)$(count pd)$(count cm_id)" = 0000 ] && break
	sleep 0.05
done
for k in mr qp pd cm_id; do
	left=$(count $k)
	tap $((left == 0)) "after SIGKILL no $k of iovad is left in the kernel ($left)"
done
wait "$hpid"
hrc=$?
tap $((hrc == 0)) "the peer saw the dead daemon's side disconnect (exit $hrc)"
if [ "$rc" -ne 0 ]; then
	sed 's/^/# iovad: /' "$dir/log" "$dir/klog"
	sed 's/^/# hold: /' "$dir/hold"
	rdma resource show 2>&1 | sed 's/^/# rdma: /'
fi
exit "$rc"
