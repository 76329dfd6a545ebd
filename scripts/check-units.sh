#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# scripts/check-units.sh [BUILD_DIR] - offline checks of iovad's systemd units.
#
# Installs BUILD_DIR (default build/release) with DESTDIR into a temporary
# stage (--prefix /usr, so ExecStart= names a binary inside the stage), then
# for iovad.service and iovad.socket:
#   - systemd-analyze verify --root=STAGE: any warning or error fails (an
#     unknown key only warns and exits 0, so the output itself is checked);
#   - systemd-analyze security --offline=yes: the service's overall exposure
#     must be at most IOVAD_MAX_EXPOSURE (default 2.0).
# No running systemd is needed (PLATFORM-NOTES.md). Installs the `systemd`
# package (systemd-analyze) if it is missing.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
max_exposure=${IOVAD_MAX_EXPOSURE:-2.0}
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
not_ok() {
	fail=$((fail + 1))
	echo "FAIL $1"
	[ -s "$tmp/out" ] && sed 's/^/     | /' "$tmp/out"
	return 0
}

if [ ! -f "$build/CMakeCache.txt" ]; then
	echo "check-units: $build: not a configured build directory" >&2
	exit 2
fi

# systemd-analyze comes with the systemd package (no running systemd needed).
"$(dirname "$0")/deps.sh" systemd || exit 1

tmp=$(mktemp -d /tmp/check-units.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
stage=$tmp/stage

# ---- stage ---------------------------------------------------------------------
if DESTDIR=$stage timeout 120 cmake --install "$build" --prefix /usr >"$tmp/out" 2>&1; then
	ok "cmake --install $build (DESTDIR=<stage>, --prefix /usr)"
else
	not_ok "cmake --install $build (DESTDIR=<stage>, --prefix /usr)"
	echo "units: $pass passed, $fail failed"
	exit 1
fi
unitdir=
for d in usr/lib/systemd/system lib/systemd/system; do
	if [ -f "$stage/$d/iovad.service" ]; then
		unitdir=$stage/$d
		break
	fi
done
if [ -z "$unitdir" ]; then
	: >"$tmp/out"
	not_ok "iovad.service installed (is add_subdirectory(systemd) in CMakeLists.txt?)"
	echo "units: $pass passed, $fail failed"
	exit 1
fi
ok "units installed in ${unitdir#"$stage"}"
for f in usr/lib/sysusers.d/iovad.conf usr/lib/tmpfiles.d/iovad.conf \
	usr/share/doc/iovad/iovad.conf.example usr/sbin/iovad; do
	: >"$tmp/out"
	if [ -f "$stage/$f" ]; then ok "installed: /$f"; else not_ok "installed: /$f"; fi
done

# The stage is a merged-/usr Debian root with what the units name from the
# host: ExecReload='s /bin/kill. verify checks every command exists in the root.
mkdir -p "$stage/usr/bin"
[ -e "$stage/bin" ] || ln -s usr/bin "$stage/bin"
for k in /usr/bin/kill /bin/kill; do
	[ -x "$k" ] && cp "$k" "$stage/usr/bin/kill" && break
done

# ---- systemd-analyze verify and security ------------------------------------------
# verify UNIT LABEL: a clean unit prints nothing; unknown keys and the like
# only warn (exit 0), so the output itself is checked. Documentation=man:...
# is looked up with man(1): point it at the staged pages.
verify() {
	MANPATH=$stage/usr/share/man timeout 60 systemd-analyze verify --root="$stage" \
		--recursive-errors=no "$unitdir/$1" >"$tmp/out" 2>&1
	local rc=$?
	if [ "$rc" -eq 0 ] && ! grep -q . "$tmp/out"; then
		ok "systemd-analyze verify $2"
	else
		echo "     (exit $rc)" >>"$tmp/out"
		not_ok "systemd-analyze verify $2"
	fi
}

# security LABEL: iovad.service's overall exposure, at most $max_exposure.
# systemd 252 takes --threshold= as an integer on the 0..100 scale (exposure
# x 10) and exits non-zero when the overall exposure is above it.
threshold=$(awk -v e="$max_exposure" 'BEGIN { printf "%d", e * 10 + 0.5 }')
security() {
	timeout 60 systemd-analyze security --offline=yes --root="$stage" \
		--threshold="$threshold" "$unitdir/iovad.service" >"$tmp/out" 2>&1
	local rc=$? score
	score=$(grep -o 'Overall exposure level for .*' "$tmp/out" | tail -1)
	echo "     $1: ${score:-no overall exposure line}"
	if [ "$rc" -eq 0 ] && [ -n "$score" ]; then
		ok "systemd-analyze security $1: exposure <= $max_exposure"
	else
		echo "     (exit $rc)" >>"$tmp/out"
		not_ok "systemd-analyze security $1: exposure <= $max_exposure"
	fi
}

verify iovad.service iovad.service
verify iovad.socket iovad.socket
security iovad.service

# ---- the rxe drop-in --------------------------------------------------------------
# Installed opt-in; checked as an admin would enable it, in the stage's /etc.
rxe=$stage/usr/share/iovad/rxe.conf
: >"$tmp/out"
if [ -f "$rxe" ]; then
	ok "installed: /usr/share/iovad/rxe.conf"
	mkdir -p "$stage/etc/systemd/system/iovad.service.d"
	cp "$rxe" "$stage/etc/systemd/system/iovad.service.d/rxe.conf"
	verify iovad.service "iovad.service with the rxe drop-in"
	security "iovad.service + rxe drop-in"
else
	not_ok "installed: /usr/share/iovad/rxe.conf"
fi

echo "units: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
