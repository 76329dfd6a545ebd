#!/bin/sh
# PID 1 of the rxe guest after switch_root (root = the host's / read-only
# over 9p + a tmpfs overlay; host's dash runs this). It loads the RDMA modules
# from the host's /lib/modules (or from the kernel root vm.sh was given with
# IOVAD_RXE_KROOT, bound there), creates a dummy netdev with an IPv4 address,
# binds soft-RoCE rxe0 to it, runs the command the host left in
# /run/iovad-rxe/cmd with bash under a timeout, stores the exit status in
# /run/iovad-rxe/rc and powers off. Setup failures go to .../setup_failed.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
X=/run/iovad-rxe
BB=/run/iovad-rxe-bin/busybox

say() { echo "[rxe stage2] $*"; }
off() {
	sync
	$BB poweroff -f
	echo o >/proc/sysrq-trigger # if busybox could not do it
	sleep 30                    # PID 1 must not exit: that is a panic
}
fail() {
	say "FATAL: $*"
	echo "stage2: $*" >"$X/setup_failed"
	off
}

read -r NETDEV <"$X/netdev" || NETDEV=rxenet0
read -r IP <"$X/ip" || IP=10.77.0.1
read -r TMO <"$X/timeout" || TMO=300
read -r CWD <"$X/cwd" || fail "no cwd"
read -r KROOT <"$X/kroot" || KROOT=
KREL=$(uname -r)

# A kernel that is not this machine's: its modules are under KROOT (the
# host's path, seen here through 9p); /lib/modules/KREL is in the tmpfs upper
# layer, so the bind mount changes nothing on the host.
if [ -n "$KROOT" ]; then
	[ -d "$KROOT/usr/lib/modules/$KREL" ] || fail "no $KROOT/usr/lib/modules/$KREL for kernel $KREL"
	mkdir -p "/lib/modules/$KREL" || fail "mkdir /lib/modules/$KREL"
	mount --bind "$KROOT/usr/lib/modules/$KREL" "/lib/modules/$KREL" ||
		fail "cannot bind $KROOT/usr/lib/modules/$KREL on /lib/modules/$KREL"
fi

# No udev here: load what a real system would load on demand. ib_uverbs
# creates /dev/infiniband/uverbsN through devtmpfs.
modprobe -a ib_core ib_uverbs rdma_rxe rdma_ucm ib_umad || fail "modprobe rdma modules"
modprobe dummy numdummies=0 || fail "modprobe dummy"
ip link set lo up || fail "ip link set lo up"
ip link add "$NETDEV" type dummy || fail "ip link add $NETDEV type dummy"
ip addr add "$IP/24" dev "$NETDEV" || fail "ip addr add $IP/24"
ip link set "$NETDEV" up || fail "ip link set $NETDEV up"
rdma link add rxe0 type rxe netdev "$NETDEV" || fail "rdma link add rxe0"

# The RoCEv2 GID that carries the IPv4 address (::ffff:a.b.c.d) shows up a
# moment after the link; one grep per try (each fork costs ~25 ms under TCG).
GIDS=/sys/class/infiniband/rxe0/ports/1/gids
GIDX=
n=0
while [ -z "$GIDX" ] && [ $n -lt 50 ]; do
	GIDX=$(grep -l '^0000:0000:0000:0000:0000:ffff:' "$GIDS"/* 2>/dev/null | head -n1)
	[ -n "$GIDX" ] || { n=$((n + 1)); sleep 0.1; }
done
[ -n "$GIDX" ] || fail "no IPv4-mapped RoCEv2 GID on rxe0"
GIDX=${GIDX##*/}
[ -c /dev/infiniband/uverbs0 ] || fail "/dev/infiniband/uverbs0 missing"
export RXE_DEV=rxe0 RXE_NETDEV="$NETDEV" RXE_IP="$IP" RXE_GID_IDX="$GIDX"
say "rxe0 on $NETDEV ip=$IP gid_index=$GIDX kernel $KREL at $(cut -d' ' -f1 /proc/uptime)s"

cd "$CWD" || fail "cannot cd to $CWD in the guest"
timeout -k 5 "$TMO" /bin/bash "$X/cmd" </dev/null >>"$X/stdout" 2>>"$X/stderr"
rc=$?
[ $rc -eq 124 ] && echo "rxe vm: command timed out after ${TMO}s (IOVAD_RXE_TIMEOUT)" >>"$X/stderr"
dmesg >"$X/dmesg" 2>/dev/null
# rename: the host never reads a half-written status
echo $rc >"$X/rc.tmp" && mv "$X/rc.tmp" "$X/rc"
say "command exit status $rc at $(cut -d' ' -f1 /proc/uptime)s"
off
