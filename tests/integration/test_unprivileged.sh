#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_unprivileged.sh IOVAD CLIENT - the daemon runs as an unprivileged
# user, with no capabilities, and its access policy decides who may use it.
#
# The daemon (IOVAD) runs as nobody:nogroup (setpriv, groups cleared,
# capability bounding set emptied, no_new_privs, as systemd/iovad.service.in
# runs it as its own user with CapabilityBoundingSet= and NoNewPrivileges=)
# on a socket in a temporary directory that nobody owns, once per I/O
# backend. CLIENT is examples/iovad-example-client, which exercises the IOVA
# API, a bounced untrusted device and on-demand paging and exits 0 only if
# every byte checked out. Checked:
#   - the daemon's uids are all nobody's, and CapEff, CapPrm, CapInh, CapAmb
#     and CapBnd are 0; its socket is srw-rw---- nobody:nogroup;
#   - root may connect (always allowed), and so may nobody (the daemon's own
#     user): the example runs to "example: ok" as both;
#   - `daemon` (uid 1, not in nogroup), with the socket opened to everyone
#     (0666) so that only the daemon's policy decides, is refused: the client
#     fails with "permission denied by the socket or the daemon's policy" and
#     the daemon logs the refusal with the uid;
#   - the same user with nogroup as a supplementary group (the socket's
#     group: allow_socket_group) is allowed;
#   - after `allow_users = daemon` in the configuration and SIGHUP, the user
#     is allowed without the group;
#   - SIGTERM: the daemon exits 0.
# Needs root (to become the other users) and setpriv (util-linux); skips
# (exit 77) without them.
set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 IOVAD CLIENT" >&2
	exit 2
fi
IOVAD=$1
CLIENT=$2
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
need_executables test_unprivileged "$IOVAD" "$CLIENT"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null ||
	! getent passwd nobody >/dev/null || ! getent group nogroup >/dev/null ||
	! getent passwd daemon >/dev/null; then
	echo "test_unprivileged: SKIP: needs root, setpriv, the users nobody and daemon and the group nogroup"
	exit 77
fi

dir=$(mktemp -d /tmp/test_unprivileged.XXXXXX) || exit 1
daemon_pid=

cleanup() {
	if [ -n "$daemon_pid" ]; then
		kill -KILL "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The directory belongs to the daemon's user, which binds its socket there;
# everyone may traverse it (the socket file's mode and the policy decide).
chown nobody:nogroup "$dir"
chmod 0755 "$dir"

# as USER GROUP [SUPPLEMENTARY]: AS=(the command prefix that runs a command as that user).
as() {
	local groups=--clear-groups

	[ $# -ge 3 ] && groups="--groups=$(getent group "$3" | cut -d: -f3)"
	AS=(setpriv --reuid="$1" --regid="$2" "$groups" --inh-caps=-all --)
}

# The build tree may not be reachable for nobody (a home directory): then
# run copies from the temporary directory.
as nobody nogroup
if ! "${AS[@]}" test -x "$IOVAD" || ! "${AS[@]}" test -x "$CLIENT"; then
	mkdir "$dir/bin"
	cp "$IOVAD" "$CLIENT" "$dir/bin/"
	lib=$(ldd "$CLIENT" | awk '/libiovad/ { print $3 }')
	[ -n "$lib" ] && cp "$lib" "$dir/bin/"
	chmod -R a+rX "$dir/bin"
	IOVAD="$dir/bin/${IOVAD##*/}"
	CLIENT="$dir/bin/${CLIENT##*/}"
	export LD_LIBRARY_PATH="$dir/bin"
fi

# shellcheck disable=SC2034 # read by not_ok in ../lib.sh
failure_logs=("$dir/out" "$dir/daemon.log")

# wait_for SECONDS COMMAND...: poll COMMAND every 50 ms until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.05
	done
	return 0
}

# client NAME EXPECT USER GROUP [SUPPLEMENTARY]: run the example as that user;
# EXPECT ok: it must pass; EXPECT refused: it must fail with the policy's error.
client() {
	local name=$1 expect=$2 rc

	shift 2
	if [ "$1" = root ]; then
		AS=()
	else
		as "$@"
	fi
	timeout 60 "${AS[@]}" "$CLIENT" "$sock" >"$dir/out" 2>&1
	rc=$?
	if [ "$expect" = ok ]; then
		if [ "$rc" -eq 0 ] && grep -q '^example: ok$' "$dir/out"; then ok "$name"; else
			echo "     (exit $rc)" >>"$dir/out"
			not_ok "$name"
		fi
	elif [ "$rc" -ne 0 ] && grep -q "permission denied by the socket or the daemon's policy" \
		"$dir/out" && ! grep -q '^connected' "$dir/out"; then
		ok "$name"
	else
		echo "     (exit $rc)" >>"$dir/out"
		not_ok "$name"
	fi
}

# cap_zero FIELD: the daemon's /proc status has FIELD all zero.
cap_zero() {
	grep -qE "^$1:[[:space:]]+0+$" "/proc/$daemon_pid/status"
}

AS=()
run_backend() { # $1 = epoll | uring
	local io=$1 status uid rc
	sock="$dir/$io.sock"
	: >"$dir/daemon.log"
	: >"$dir/out"
	echo "# io=$io"
	printf '[policy]\nallow_socket_group = yes\n' >"$dir/iovad.conf"
	chmod 0644 "$dir/iovad.conf"

	# setpriv execs in place: $! is the daemon's pid.
	setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all \
		--bounding-set=-all --no-new-privs -- \
		"$IOVAD" --socket "$sock" --io="$io" --config "$dir/iovad.conf" \
		2>"$dir/daemon.log" &
	daemon_pid=$!
	if ! wait_for 10 test -S "$sock"; then
		not_ok "[$io] the daemon listens on $sock as nobody"
		return
	fi
	ok "[$io] the daemon listens on $sock as nobody"

	# Who it runs as, and with what.
	uid=$(id -u nobody)
	status=$(grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs):' "/proc/$daemon_pid/status")
	echo "$status" >"$dir/out"
	if grep -qE "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid$" \
		<<<"$status" && grep -qE '^Groups:[[:space:]]*$' <<<"$status"; then
		ok "[$io] every uid of the daemon is nobody's, no supplementary groups"
	else
		not_ok "[$io] every uid of the daemon is nobody's, no supplementary groups"
	fi
	if cap_zero CapEff && cap_zero CapPrm && cap_zero CapInh && cap_zero CapAmb &&
		cap_zero CapBnd; then
		ok "[$io] the daemon has no capabilities (CapEff, CapPrm, CapInh, CapAmb, CapBnd 0)"
	else
		not_ok "[$io] the daemon has no capabilities (CapEff, CapPrm, CapInh, CapAmb, CapBnd 0)"
	fi
	stat -c '%A %U:%G' "$sock" >"$dir/out"
	if grep -qx 'srw-rw---- nobody:nogroup' "$dir/out"; then
		ok "[$io] its socket is srw-rw---- nobody:nogroup"
	else
		not_ok "[$io] its socket is srw-rw---- nobody:nogroup"
	fi

	client "[$io] root is allowed" ok root
	client "[$io] the daemon's own user is allowed" ok nobody nogroup

	# Only the policy decides from here: the socket file lets everyone in.
	chmod 0666 "$sock"
	client "[$io] another user is refused by the policy" refused daemon daemon
	if grep -qE "refused pid [0-9]+ uid $(id -u daemon) gid $(id -g daemon): not allowed by the access policy" \
		"$dir/daemon.log"; then
		ok "[$io] the daemon logs the refusal"
	else
		not_ok "[$io] the daemon logs the refusal"
	fi
	client "[$io] a member of the socket's group is allowed" ok daemon daemon nogroup

	# allow_users, reloaded on SIGHUP.
	printf '[policy]\nallow_socket_group = yes\nallow_users = daemon\n' >"$dir/iovad.conf"
	kill -HUP "$daemon_pid"
	# The reload is asynchronous: wait until a connection is let in (bounded).
	as daemon daemon
	for _ in $(seq 50); do
		timeout 30 "${AS[@]}" "$CLIENT" "$sock" >/dev/null 2>&1 && break
		sleep 0.1
	done
	client "[$io] allow_users lets the user in after SIGHUP" ok daemon daemon

	kill -TERM "$daemon_pid"
	wait "$daemon_pid"
	rc=$?
	daemon_pid=
	if [ "$rc" -eq 0 ]; then ok "[$io] SIGTERM: exit 0"; else
		echo "     (exit $rc)" >>"$dir/out"
		not_ok "[$io] SIGTERM: exit 0"
	fi
}

for io in epoll uring; do
	run_backend "$io"
done
summary test_unprivileged
