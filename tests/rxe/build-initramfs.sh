#!/usr/bin/env bash
# Build the rxe guest's initramfs: busybox-static, guest/init, guest/stage2.sh
# and the guest kernel's modules needed to reach the host's / over 9p
# (virtio-pci, 9p, overlay, with their dependencies, in load order).
# Everything else (the RDMA modules, ip, rdma, the test programs) comes from
# the host's / once the guest has mounted it, so the image stays small.
#
#   build-initramfs.sh KVER OUT [KROOT]
#
# KROOT: the kernel's modules are under KROOT/lib/modules/KVER (a kernel
# unpacked by fetch-kernel.sh) rather than this machine's /lib/modules.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
kver=${1:?usage: build-initramfs.sh KVER OUT [KROOT]}
out=${2:?usage: build-initramfs.sh KVER OUT [KROOT]}
kroot=${3:-}
modprobe=(modprobe -S "$kver")
[ -z "$kroot" ] || modprobe+=(-d "$kroot")

stage=$(mktemp -d "${TMPDIR:-/tmp}/iovad-rxe-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
install -m 755 "$here/guest/init" "$stage/init"
install -m 755 "$here/guest/stage2.sh" "$stage/stage2.sh"

# modprobe --show-depends prints "insmod FILE" lines, dependencies first.
# Modules go in flat, uncompressed (busybox insmod reads plain .ko only).
order=$stage/lib/modules/load-order
: >"$order"
for top in virtio_pci 9pnet_virtio 9p overlay; do
	deps=$("${modprobe[@]}" --show-depends "$top") # fails if $top is unknown
	while read -r kind file _; do
		[ "$kind" = insmod ] || continue # "builtin X": nothing to load
		m=$(basename "$file")
		m=${m%%.ko*}
		grep -qx "$m" "$order" && continue
		case "$file" in
		*.ko) cp "$file" "$stage/lib/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$file" >"$stage/lib/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$file" >"$stage/lib/modules/$m.ko" ;;
		*) echo "build-initramfs: unexpected module file $file" >&2; exit 1 ;;
		esac
		echo "$m" >>"$order"
	done <<<"$deps"
done

# Write next to OUT and rename: a concurrent run never sees half an image.
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet --owner=0:0) |
	gzip -1 >"$out.tmp.$$"
mv "$out.tmp.$$" "$out"
echo "rxe: built $out ($(stat -c %s "$out") bytes; modules: $(tr '\n' ' ' <"$order"))" >&2
