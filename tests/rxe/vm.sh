#!/usr/bin/env bash
# vm.sh 'COMMAND': run COMMAND with bash, in the current directory, inside a
# throw-away qemu guest (TCG) booting Debian's kernel with soft-RoCE (rxe0 on
# a dummy netdev), stream its stdout and stderr, and exit with its status.
# The host kernel has no InfiniBand; this is how tests reach real verbs.
#
# The guest's root is this machine's / (9p, read-only, under a tmpfs overlay:
# the guest may write anywhere and every write is thrown away), so binaries
# built here run there as they are. In the guest COMMAND sees RXE_DEV=rxe0,
# RXE_NETDEV, RXE_IP and RXE_GID_IDX (the ::ffff:RXE_IP RoCEv2 GID index).
# Single-quote COMMAND so that these expand in the guest.
#
# Exit status: COMMAND's; 124 if it or the VM timed out; 125 if the VM could
# not start or set up rxe (a "rxe vm: ..." line on stderr says why).
#
# Environment:
#   IOVAD_RXE_CACHE    extracted vmlinux, initramfs and per-run dirs
#                      (default: build/rxe-cache in the source tree's root)
#   IOVAD_RXE_TIMEOUT  seconds for COMMAND in the guest (300); the VM as a
#                      whole is killed IOVAD_RXE_BOOT_SLACK (120) s later
#   IOVAD_RXE_KVER     guest kernel version (default: the newest one in /boot
#                      whose modules include rdma_rxe)
#   IOVAD_RXE_KROOT    take the guest kernel and its modules from this dir
#                      (DIR/boot/vmlinuz-KVER, DIR/usr/lib/modules/KVER, as
#                      tests/rxe/fetch-kernel.sh leaves them) instead of this
#                      machine's /boot and /lib/modules; KVER defaults to the
#                      newest one in DIR/boot with rdma_rxe. E.g. a kernel
#                      whose rxe has On-Demand Paging (6.15+):
#                        tests/rxe/fetch-kernel.sh 6.18.15+deb13-amd64 DIR
#                        IOVAD_RXE_KROOT=DIR tests/rxe/vm.sh 'COMMAND'
#   IOVAD_RXE_MEM      guest MiB (2048)   IOVAD_RXE_SMP  guest vCPUs (2)
#   IOVAD_RXE_PVH=0    boot the bzImage instead of the extracted vmlinux
#   IOVAD_RXE_DEBUG=1  guest console on stderr, qemu wall time
#   IOVAD_RXE_DMESG=1  guest dmesg on stderr after COMMAND
#   IOVAD_RXE_KEEP=1   keep the per-run dir (console.log, qemu.log, dmesg)
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(cd "$here/../.." && pwd)

die() { # die STATUS MESSAGE
	echo "rxe vm: $2" >&2
	exit "$1"
}

if [ $# -lt 1 ] || [ -z "$*" ]; then
	echo "usage: $0 'COMMAND'" >&2
	exit 2
fi
cmd="$*"
timeout_s=${IOVAD_RXE_TIMEOUT:-300}
slack_s=${IOVAD_RXE_BOOT_SLACK:-120}
debug=${IOVAD_RXE_DEBUG:-0}

# --- what the VM needs from this machine (scripts/deps.sh installs it) ---
for t in qemu-system-x86_64 modprobe cpio gzip xz timeout; do
	command -v "$t" >/dev/null ||
		die 125 "cannot start the VM: '$t' not found (run scripts/deps.sh)"
done
[ -x /bin/busybox ] || die 125 "cannot start the VM: no /bin/busybox (busybox-static)"
# The guest kernel: this machine's, or one unpacked under IOVAD_RXE_KROOT
# (absolute: the guest sees this machine's / and finds the modules there too).
kroot=${IOVAD_RXE_KROOT:-}
if [ -n "$kroot" ]; then
	[ -d "$kroot" ] || die 125 "cannot start the VM: no kernel root $kroot (IOVAD_RXE_KROOT)"
	kroot=$(cd "$kroot" && pwd -P)
	modroot=$kroot/usr/lib/modules
	hint=tests/rxe/fetch-kernel.sh
else
	modroot=/lib/modules
	hint=linux-image-amd64
fi
kver=${IOVAD_RXE_KVER:-}
if [ -z "$kver" ]; then
	# the newest kernel that has rdma_rxe; sort -V orders versions
	for k in $(printf '%s\n' "$kroot"/boot/vmlinuz-* | sort -rV); do
		v=${k#"$kroot"/boot/vmlinuz-}
		if [ -d "$modroot/$v/kernel/drivers/infiniband/sw/rxe" ]; then
			kver=$v
			break
		fi
	done
	[ -n "$kver" ] ||
		die 125 "cannot start the VM: no $kroot/boot/vmlinuz-* with rdma_rxe ($hint)"
fi
kernel=$kroot/boot/vmlinuz-$kver
[ -r "$kernel" ] || die 125 "cannot start the VM: no readable kernel $kernel"
[ -d "$modroot/$kver/kernel/drivers/infiniband/sw/rxe" ] ||
	die 125 "cannot start the VM: no rdma_rxe module for $kver in $modroot"
if [ -n "$kroot" ]; then
	[ -s "$modroot/$kver/modules.dep" ] ||
		die 125 "cannot start the VM: no $modroot/$kver/modules.dep (tests/rxe/fetch-kernel.sh runs depmod)"
	echo "rxe vm: guest kernel $kver from $kroot" >&2
fi

cache=${IOVAD_RXE_CACHE:-$root/build/rxe-cache}
mkdir -p "$cache" || die 125 "cannot create cache dir $cache"
cache=$(cd "$cache" && pwd)

# Cache files are per kernel; one from a kernel root is also per root, so it
# never stands for this machine's kernel of the same version.
ckey=$kver
[ -z "$kroot" ] || ckey=$kver-kroot-$(printf '%s' "$kroot" | md5sum | cut -c1-8)

# --- initramfs, rebuilt when missing or older than its sources or kernel ---
initrd=$cache/initramfs-$ckey.cpio.gz
for src in "$here/build-initramfs.sh" "$here/guest/init" "$here/guest/stage2.sh" "$kernel"; do
	if [ ! -s "$initrd" ] || [ "$src" -nt "$initrd" ]; then
		"$here/build-initramfs.sh" "$kver" "$initrd" "$kroot" ||
			die 125 "cannot start the VM: building the initramfs failed"
		break
	fi
done

# --- the uncompressed vmlinux, booted through its PVH ELF note ---
# Under TCG this skips the real-mode setup and the in-guest decompression
# (~2 s a boot). The bzImage's setup header (boot protocol 2.08+) locates its
# one compressed stream, xz (Debian 12) or zstd (Debian 13), which is
# followed by 4 bytes of size: cut out the stream exactly, unpack it.
bootk=$kernel
if [ "${IOVAD_RXE_PVH:-1}" = 1 ]; then
	vmlinux=$cache/vmlinux-$ckey
	if [ ! -s "$vmlinux" ] || [ "$kernel" -nt "$vmlinux" ]; then
		hdr() { od -An -tu"$2" -j "$1" -N"$2" "$kernel" | tr -d ' '; } # hdr OFFSET BYTES
		payload() { # payload N: the first N bytes of the compressed stream
			dd if="$kernel" bs=64K iflag=skip_bytes,count_bytes status=none \
				skip=$(((${setup_sects:-0} + 1) * 512 + ${payload_offset:-0})) count="$1"
		}
		setup_sects=$(hdr 0x1f1 1) payload_offset=$(hdr 0x248 4) payload_length=$(hdr 0x24c 4)
		case $(payload 4 | od -An -tx1 | tr -d ' ') in
		fd377a58) unpack=xz ;;
		28b52ffd) unpack=zstd ;;
		*) unpack= ;;
		esac
		tmp=$vmlinux.tmp.$$
		if [ -n "$unpack" ] &&
			"$unpack" -dcq <(payload $((${payload_length:-4} - 4))) >"$tmp" &&
			[ "$(head -c4 "$tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
			mv "$tmp" "$vmlinux"
		else
			rm -f "$tmp"
			echo "rxe vm: no vmlinux in $kernel; booting the bzImage (slower)" >&2
		fi
	fi
	[ -s "$vmlinux" ] && bootk=$vmlinux
fi

# --- per-run exchange dir, shared with the guest as 9p tag "xfer" ---
run=$(mktemp -d "$cache/run.XXXXXX") || die 125 "cannot create a run dir in $cache"
qpid=
tpids=()
# shellcheck disable=SC2317 # reached through the trap below
cleanup() {
	# Only what this script started: timeout(1) around qemu (TERM reaches
	# qemu through it), then the tails.
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill -TERM "$qpid" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$qpid" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$qpid" 2>/dev/null
		wait "$qpid" 2>/dev/null
	fi
	for p in "${tpids[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ "${IOVAD_RXE_KEEP:-0}" = 1 ]; then
		echo "rxe vm: kept $run" >&2
	else
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

printf '%s\n' "$cmd" >"$run/cmd"
pwd -P >"$run/cwd"
echo "$timeout_s" >"$run/timeout"
echo rxenet0 >"$run/netdev"
echo 10.77.0.1 >"$run/ip"
echo "$kroot" >"$run/kroot" # empty: the modules of this machine's /lib/modules
: >"$run/stdout"
: >"$run/stderr"
: >"$run/console.log"

if [ "$debug" = 1 ]; then klog="loglevel=7"; else klog="quiet loglevel=3"; fi
t0=$(date +%s%N)
# KVM is not usable on these hosts (PLATFORM-NOTES.md): TCG, multi-threaded.
# No NIC: rxe runs on a dummy netdev inside the guest. -no-reboot turns a
# guest panic (PID 1 exiting) into a qemu exit instead of a reboot loop.
timeout -k 5 $((timeout_s + slack_s)) \
	qemu-system-x86_64 -accel tcg,thread=multi -cpu max \
	-m "${IOVAD_RXE_MEM:-2048}" -smp "${IOVAD_RXE_SMP:-2}" \
	-nodefaults -display none -no-reboot \
	-serial "file:$run/console.log" \
	-kernel "$bootk" -initrd "$initrd" \
	-append "console=ttyS0 $klog panic=-1 random.trust_cpu=on mitigations=off" \
	-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
	-virtfs "local,path=$run,mount_tag=xfer,security_model=none,multidevs=remap" \
	</dev/null >"$run/qemu.log" 2>&1 &
qpid=$!

# Stream what the guest writes to xfer; tail exits after a last read once
# qemu is gone.
tail -s 0.2 --pid="$qpid" -n +1 -f "$run/stdout" &
tpids+=($!)
tail -s 0.2 --pid="$qpid" -n +1 -f "$run/stderr" >&2 &
tpids+=($!)
if [ "$debug" = 1 ]; then
	tail -s 0.2 --pid="$qpid" -n +1 -f "$run/console.log" >&2 &
	tpids+=($!)
fi

wait "$qpid"
qrc=$?
qpid=
for p in "${tpids[@]}"; do wait "$p" 2>/dev/null; done
tpids=()
t1=$(date +%s%N)
[ "$debug" = 1 ] && echo "rxe vm: qemu exit $qrc after $(((t1 - t0) / 1000000)) ms" >&2

if [ "${IOVAD_RXE_DMESG:-0}" = 1 ] && [ -s "$run/dmesg" ]; then
	echo "rxe vm: guest dmesg:" >&2
	cat "$run/dmesg" >&2
fi
if [ -e "$run/setup_failed" ]; then
	echo "rxe vm: the guest could not set up rxe: $(cat "$run/setup_failed")" >&2
	echo "rxe vm: last console lines:" >&2
	tail -n 30 "$run/console.log" >&2
	exit 125
fi
if [ -s "$run/rc" ]; then
	rc=$(cat "$run/rc")
	exit "$rc"
fi
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
	echo "rxe vm: VM killed after $((timeout_s + slack_s)) s without an exit status" >&2
	rc=124
else
	echo "rxe vm: the VM did not start or ended without an exit status (qemu status $qrc)" >&2
	rc=125
fi
echo "rxe vm: qemu log:" >&2
cat "$run/qemu.log" >&2
echo "rxe vm: last console lines:" >&2
tail -n 30 "$run/console.log" >&2
exit "$rc"
