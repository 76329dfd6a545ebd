#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# run.sh BUILD_DIR - the installed tree is consumable.
#
# Installs BUILD_DIR (an already built iovad build tree) with
# DESTDIR=<tmp>/stage and --prefix /usr, checks the files the install must
# contain, checks the installed header compiles on its own (C11 and C++),
# builds tests/consumer/consumer.c twice against the stage - once with
# pkg-config (PKG_CONFIG_SYSROOT_DIR), once with find_package(iovad) -
# then starts the INSTALLED daemon on a temporary socket and runs both
# consumers against it with the stage's libiovad.so.0, stops the daemon
# with SIGTERM and checks it exited 0.
# Needs cc, c++ (g++), cmake, make, pkg-config, readelf, ldd.
# The sh -c snippets below expand their own positional parameters; cleanup
# runs from the EXIT trap.
# shellcheck disable=SC2016,SC2317
set -u
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ $# -ne 1 ] || [ ! -f "$1/CMakeCache.txt" ]; then
	echo "usage: $0 BUILD_DIR   (a configured and built iovad build tree)" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")" && pwd)
CXX_BIN=${CXX:-g++}
CC_BIN=${CC:-cc}

tmp=$(mktemp -d /tmp/iovad-consumer.XXXXXX) || exit 1
stage=$tmp/stage
sock=$tmp/iovad.sock
daemon_pid=

cleanup() {
	[ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# shellcheck disable=SC2034 # read by not_ok in ../lib.sh
failure_logs=("$tmp/log")

# check NAME COMMAND...: COMMAND succeeds (its output goes to $tmp/log).
check() {
	local name=$1
	shift
	if "$@" >"$tmp/log" 2>&1; then ok "$name"; else not_ok "$name"; fi
}

finish() {
	summary consumer
	exit $?
}

# ---- install --------------------------------------------------------------------
if ! DESTDIR=$stage timeout 120 cmake --install "$BUILD" --prefix /usr >"$tmp/log" 2>&1; then
	not_ok "cmake --install $BUILD with DESTDIR"
	finish
fi
ok "cmake --install with DESTDIR=<stage> --prefix /usr"

# The libdir is whatever GNUInstallDirs picked for the build (lib, lib64,
# lib/x86_64-linux-gnu): take it from where the package config landed.
cfg=$(cd "$stage/usr" && find . -path '*/cmake/iovad/iovadConfig.cmake' | head -n1)
libdir=${cfg#./}
libdir=${libdir%/cmake/iovad/iovadConfig.cmake}
if [ -z "$cfg" ] || [ -z "$libdir" ]; then
	not_ok "iovadConfig.cmake installed under <prefix>/<libdir>/cmake/iovad"
	finish
fi
echo "     (libdir: $libdir)"
L=$stage/usr/$libdir

for f in usr/sbin/iovad usr/bin/iovadctl; do
	check "installed: $f (executable)" test -x "$stage/$f"
done
for f in "$libdir/libiovad.so.0.1.0" include/iovad/iovad.h "$libdir/pkgconfig/libiovad.pc" \
	 "$libdir/cmake/iovad/iovadConfig.cmake" "$libdir/cmake/iovad/iovadConfigVersion.cmake" \
	 "$libdir/cmake/iovad/iovadTargets.cmake"; do
	check "installed: usr/$f" test -f "$stage/usr/$f"
done
check "installed: libiovad.so -> libiovad.so.0 -> libiovad.so.0.1.0" sh -c '
	[ -L "$1/libiovad.so" ] && [ -L "$1/libiovad.so.0" ] &&
	[ "$(readlink "$1/libiovad.so")" = libiovad.so.0 ] &&
	[ "$(readlink "$1/libiovad.so.0")" = libiovad.so.0.1.0 ]' sh "$L"
check "installed: no static client library" sh -c '! find "$1" -name "*.a" | grep -q .' sh "$stage"
check "readelf -d libiovad.so.0.1.0: SONAME libiovad.so.0" sh -c '
	readelf -d "$1" | grep -E "\(SONAME\)" | grep -qF "[libiovad.so.0]"' sh "$L/libiovad.so.0.1.0"
check "libiovad exports only iovad_* symbols" sh -c '
	syms=$(readelf --dyn-syms -W "$1" | awk "\$5 == \"GLOBAL\" && \$7 != \"UND\" && \$7 != \"ABS\" {print \$8}" | sed "s/@.*//")
	[ -n "$syms" ] && ! printf "%s\n" $syms | grep -v "^iovad_"' sh "$L/libiovad.so.0.1.0"

# ---- the header on its own ------------------------------------------------------------
check "iovad.h alone: $CC_BIN -std=c11 -Wall -Werror -fsyntax-only" sh -c '
	printf "#include <iovad/iovad.h>\n" |
	"$1" -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$2" -x c -' sh "$CC_BIN" "$stage/usr/include"
check "iovad.h alone: $CXX_BIN -x c++ -fsyntax-only" sh -c '
	printf "#include <iovad/iovad.h>\nint main() { return iovad_connect(nullptr, nullptr); }\n" |
	"$1" -x c++ -Wall -Werror -fsyntax-only -I"$2" -' sh "$CXX_BIN" "$stage/usr/include"

# ---- (a) pkg-config ---------------------------------------------------------------------
export PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_LIBDIR=$L/pkgconfig
unset PKG_CONFIG_PATH
check "pkg-config: libiovad version 0.1.0" sh -c '[ "$(pkg-config --modversion libiovad)" = 0.1.0 ]'
check "pkg-config: --cflags/--libs point into the sysroot" sh -c '
	f=$(pkg-config --cflags --libs libiovad) || exit 1
	echo "$f"
	case " $f " in *" -I$1/usr/include "*) ;; *) exit 1 ;; esac
	case " $f " in *" -L$2 "*) ;; *) exit 1 ;; esac
	case " $f " in *" -liovad "*) ;; *) exit 1 ;; esac' sh "$stage" "$L"
mkdir -p "$tmp/pc"
check "pkg-config build: make -f tests/consumer/Makefile" \
	timeout 120 make -f "$SRC/Makefile" O="$tmp/pc" CC="$CC_BIN"
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR

# ---- (b) find_package -------------------------------------------------------------------
check "find_package build: configure (CMAKE_PREFIX_PATH=<stage>/usr)" \
	timeout 120 cmake -S "$SRC" -B "$tmp/cb" -DCMAKE_PREFIX_PATH="$stage/usr" \
	-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release
check "find_package build: iovad_DIR is the stage's" sh -c '
	grep -qxF "iovad_DIR:PATH=$1/cmake/iovad" "$2/CMakeCache.txt"' sh "$L" "$tmp/cb"
check "find_package build: build" timeout 120 cmake --build "$tmp/cb"

# find_package's version check: 0.1 and 0 accepted, 1 (other major) refused.
mkdir -p "$tmp/vc"
cat >"$tmp/vc/CMakeLists.txt" <<'VC'
cmake_minimum_required(VERSION 3.16)
project(vc LANGUAGES C)
find_package(iovad ${WANT} REQUIRED)
VC
check "find_package(iovad 0.1.0) accepted" \
	cmake -S "$tmp/vc" -B "$tmp/vc/b1" -DCMAKE_PREFIX_PATH="$stage/usr" -DWANT=0.1.0
check "find_package(iovad 1.0) refused (SameMajorVersion)" sh -c '
	! cmake -S "$1" -B "$1/b2" -DCMAKE_PREFIX_PATH="$2" -DWANT=1.0' sh "$tmp/vc" "$stage/usr"

# ---- link checks --------------------------------------------------------------------------
for b in "$tmp/pc/consumer" "$tmp/cb/consumer"; do
	n=${b#"$tmp"/}
	check "$n: NEEDED libiovad.so.0" sh -c '
		readelf -d "$1" | grep -E "\(NEEDED\)" | grep -qF "[libiovad.so.0]"' sh "$b"
	check "$n: ldd resolves libiovad.so.0 to the stage" sh -c '
		LD_LIBRARY_PATH=$2 ldd "$1" | grep -F "libiovad.so.0 => $2/libiovad.so.0 "' sh "$b" "$L"
	check "$n: no build-tree path in it (RPATH/RUNPATH)" sh -c '
		! readelf -d "$1" | grep -E "R(UN)?PATH" | grep -qF "$2"' sh "$b" "$BUILD"
done

# ---- the installed daemon --------------------------------------------------------------------
"$stage/usr/sbin/iovad" --socket "$sock" --io=epoll 2>"$tmp/iovad.log" &
daemon_pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	kill -0 "$daemon_pid" 2>/dev/null || break
	sleep 0.1
done
if [ ! -S "$sock" ]; then
	cp "$tmp/iovad.log" "$tmp/log"
	not_ok "installed iovad: listening on $sock within 10 s"
	finish
fi
ok "installed iovad: listening"

for b in "$tmp/pc/consumer" "$tmp/cb/consumer"; do
	n=${b#"$tmp"/}
	check "$n: runs against the daemon: consumer: ok" sh -c '
		out=$(LD_LIBRARY_PATH=$2 IOVAD_SOCKET=$3 timeout 30 "$1") || exit 1
		echo "$out"
		[ "$out" = "consumer: ok" ]' sh "$b" "$L" "$sock"
done
check "installed iovadctl: status" timeout 20 "$stage/usr/bin/iovadctl" --socket "$sock" status

kill -TERM "$daemon_pid"
rc=
for _ in $(seq 100); do
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		wait "$daemon_pid"
		rc=$?
		break
	fi
	sleep 0.1
done
daemon_pid=
{ echo "exit status: ${rc:-still running after 10 s}"; cat "$tmp/iovad.log"; } >"$tmp/log"
if [ "$rc" = 0 ]; then ok "installed iovad: SIGTERM, exit 0"; else not_ok "installed iovad: SIGTERM, exit 0"; fi

finish
