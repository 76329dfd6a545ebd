#!/usr/bin/env bash
# Install iovad's build and test dependencies from Debian 12's archive.
# Idempotent: apt-get runs only when something is missing.
#
#   scripts/deps.sh            the project's packages
#   scripts/deps.sh PKG...     just these (fuzz.sh and check-units.sh use this)
set -euo pipefail

pkgs=(
	build-essential cmake pkg-config
	libcriterion-dev      # unit and integration tests
	valgrind              # memcheck pass over the unit tests
	afl++                 # scripts/afl.sh: AFL++ against the daemon's socket
	libevent-dev          # daemon event loop
	liburing-dev          # daemon data path
	libibverbs-dev        # rxe backend
	librdmacm-dev         # rxe backend: remote peers (rdma_listen)
	libsystemd-dev        # sd_notify, socket activation
	libinih-dev           # the configuration file
	libbsd-dev            # sys/tree.h: the red-black trees of a session's states and maps
	zlib1g-dev            # CRC-32 of the state journal's records
	scdoc                 # man pages
	gnuplot-nox           # bench/run-all: the PNG plots (gnuplot without X)
	# tests/rxe: soft-RoCE (rdma_rxe) in a qemu guest booting Debian's kernel,
	# whose root is this machine's / (so its modules and userland must be here)
	qemu-system-x86       # the guest (TCG)
	linux-image-amd64     # guest kernel + rdma_rxe, virtio, 9p, overlay modules
	busybox-static        # the initramfs' only binary
	kmod cpio xz-utils    # modprobe (initramfs builder, guest); cpio; vmlinux extraction
	zstd                  # vmlinux extraction of zstd kernels (tests/rxe/fetch-kernel.sh's 6.18)
	rdma-core ibverbs-providers ibverbs-utils  # rdma tool, librxe, ibv_devinfo
	iproute2              # ip link add ... type dummy in the guest
	perftest              # bench/rxe: ib_write_bw, ib_write_lat baselines in the guest
)

[ "$#" -gt 0 ] && pkgs=("$@")

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps: all ${#pkgs[@]} packages present"
	exit 0
fi
echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
