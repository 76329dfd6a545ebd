#!/usr/bin/env bash
# fetch-kernel.sh KVER DEST: put Debian's kernel package linux-image-KVER, from
# trixie-backports, unpacked into DEST (DEST/boot/vmlinuz-KVER,
# DEST/usr/lib/modules/KVER) with its modules.dep, for vm.sh's
# IOVAD_RXE_KROOT=DEST. Why: the default guest kernel (Debian 12's 6.1) has
# rxe without On-Demand Paging, which rxe gained in Linux 6.15; this lets the
# rxe tests also boot a newer kernel without installing it into this
# machine's /boot and /lib/modules.
#
# apt fetches the package with a private state dir and source list (the
# machine's apt setup is left alone) and checks its signature and hashes
# against Debian's archive keyring. Nothing is fetched when DEST already holds
# KVER complete (a stamp written last). Downloads go to a temp dir, removed.
#
#   fetch-kernel.sh 6.18.15+deb13-amd64 build/rxe-kernels/6.18.15+deb13-amd64
#
# Environment: IOVAD_RXE_MIRROR (http://deb.debian.org/debian),
#              IOVAD_RXE_SUITE (trixie-backports)
set -euo pipefail
kver=${1:?usage: fetch-kernel.sh KVER DEST}
dest=${2:?usage: fetch-kernel.sh KVER DEST}
mirror=${IOVAD_RXE_MIRROR:-http://deb.debian.org/debian}
suite=${IOVAD_RXE_SUITE:-trixie-backports}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
pkg=linux-image-$kver
stamp=$dest/.iovad-rxe-kernel

die() {
	echo "rxe kernel: $*" >&2
	exit 1
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$kver" ]; then
	echo "rxe kernel: $kver already in $dest" >&2
	exit 0
fi
for t in apt-get dpkg-deb depmod modprobe; do
	command -v "$t" >/dev/null || die "'$t' not found"
done
[ -r "$keyring" ] || die "no $keyring (debian-archive-keyring)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iovad-rxe-kernel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# as root apt downloads as the user _apt, which must reach the temp dir
chmod 755 "$tmp"
mkdir -p "$tmp/state/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
: >"$tmp/state/status"
[ "$(id -u)" -ne 0 ] || ! id _apt >/dev/null 2>&1 || chown _apt "$tmp/deb"
echo "deb [signed-by=$keyring] $mirror $suite main" >"$tmp/sources.list"
aptopts=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
	-o Dir::State="$tmp/state" -o Dir::State::Status="$tmp/state/status"
	-o Dir::Cache="$tmp/cache" -o APT::Get::List-Cleanup=0
	-o Acquire::Languages=none)
apt=(apt-get -q "${aptopts[@]}")

echo "rxe kernel: fetching $pkg from $suite" >&2
"${apt[@]}" update >"$tmp/update.log" 2>&1 || {
	cat "$tmp/update.log" >&2
	die "apt-get update of $mirror $suite failed"
}
(cd "$tmp/deb" && "${apt[@]}" download "$pkg") >"$tmp/download.log" 2>&1 || {
	cat "$tmp/download.log" >&2
	echo "rxe kernel: $suite has $(apt-cache "${aptopts[@]}" search --names-only \
		'^linux-image-[0-9].*[0-9]-amd64$' | cut -d' ' -f1 | sort -V | tr '\n' ' ')" >&2
	die "cannot download $pkg from $suite"
}
deb=$(find "$tmp/deb" -name "${pkg}_*.deb" | head -n1)
[ -n "$deb" ] || die "apt-get download left no ${pkg}_*.deb"

mkdir -p "$dest" || die "cannot create $dest"
dpkg-deb -x "$deb" "$dest" || die "cannot unpack $deb into $dest"
[ -r "$dest/boot/vmlinuz-$kver" ] || die "$pkg has no boot/vmlinuz-$kver"
[ -d "$dest/usr/lib/modules/$kver" ] || die "$pkg has no usr/lib/modules/$kver"
# dated now, as if installed: vm.sh rebuilds its cached initramfs and vmlinux
# when the kernel is newer than them
touch "$dest/boot/vmlinuz-$kver"
# depmod -b and modprobe -d look in DEST/lib/modules; the package, merged-/usr,
# ships usr/lib/modules
[ -e "$dest/lib" ] || ln -s usr/lib "$dest/lib"
depmod -b "$dest" "$kver" || die "depmod -b $dest $kver failed"
modprobe -d "$dest" -S "$kver" --show-depends rdma_rxe >/dev/null ||
	die "modprobe cannot resolve rdma_rxe in $dest"
echo "$kver" >"$stamp"
echo "rxe kernel: $(basename "$deb") unpacked into $dest" >&2
