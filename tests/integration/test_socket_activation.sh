#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_socket_activation.sh IOVAD IOVADCTL - iovad under systemd's protocols,
# without systemd running (PLATFORM-NOTES.md, "systemd pieces without systemd
# running").
#
# systemd-socket-activate listens on a temporary socket and, on the first
# connection, execs `IOVAD --no-socket --io=BACKEND` with the listening socket
# (LISTEN_FDS), NOTIFY_SOCKET pointing at a datagram listener owned by this
# test and WATCHDOG_USEC=400000. (Not -a/--accept: that spawns one instance
# per connection and passes the connected socket, which iovad rejects.) The
# test then checks, once per I/O backend (epoll, uring):
#   - iovadctl status through the inherited socket succeeds and reports the
#     pid systemd-socket-activate exec'd into;
#   - READY=1 and a STATUS= line arrive;
#   - WATCHDOG=1 arrives every WATCHDOG_USEC/2 (at least 3 within ~1 s);
#   - SIGHUP: RELOADING=1 with MONOTONIC_USEC= (now-ish, CLOCK_MONOTONIC) in one
#     datagram, then READY=1 again, and the daemon still answers;
#   - SIGTERM: STOPPING=1, and the daemon exits 0;
#   - the order: READY=1 < RELOADING=1 < READY=1 < STOPPING=1.
# Every wait is bounded. Needs python3 and systemd-socket-activate (package
# systemd; no running systemd needed).
set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 IOVAD IOVADCTL" >&2
	exit 2
fi
IOVAD=$1
CTL=$2
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
need_executables test_socket_activation "$IOVAD" "$CTL"
SSA=$(command -v systemd-socket-activate || true)
if [ -z "$SSA" ] || ! command -v python3 >/dev/null; then
	echo "test_socket_activation: needs systemd-socket-activate (package systemd) and python3" >&2
	exit 2
fi

WATCHDOG_USEC=400000
dir=$(mktemp -d /tmp/test_socket_activation.XXXXXX) || exit 1
listener_pid=
daemon_pid=

# stop_child VARNAME SIGNAL: kill and reap the child whose pid VARNAME holds.
stop_child() {
	local pid=${!1}
	if [ -n "$pid" ]; then
		kill "-$2" "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	printf -v "$1" '%s' ""
}

cleanup() {
	stop_child daemon_pid KILL
	stop_child listener_pid TERM
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# shellcheck disable=SC2034 # read by not_ok in ../lib.sh
failure_logs=("$dir/out" "$dir/notify.log" "$dir/daemon.log")

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

# exited PID: PID (our child, not yet reaped) is gone or a zombie.
exited() {
	! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# The notify log holds one datagram per line, its fields joined with ';'.
# has FIELD [MIN]: at least MIN (default 1) datagrams carry FIELD exactly.
has() {
	local n
	n=$(grep -cE "(^|;)$1(;|$)" "$dir/notify.log" 2>/dev/null)
	[ "${n:-0}" -ge "${2:-1}" ]
}

# line_of FIELD NTH: the line number of the NTH datagram carrying FIELD (0 if none).
line_of() {
	grep -nE "(^|;)$1(;|$)" "$dir/notify.log" | sed -n "$2{s/:.*//;p;q}" | grep . || echo 0
}

# The NOTIFY_SOCKET end: an AF_UNIX datagram server, one line per datagram.
cat >"$dir/listener.py" <<'PY'
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(log, "a", buffering=1) as f:
    while True:
        data = s.recv(65536).decode("utf-8", "replace")
        f.write(";".join(l for l in data.split("\n") if l) + "\n")
PY

run_backend() { # $1 = epoll | uring
	local io=$1 sock="$dir/$1.sock" notify="$dir/$1.notify" rc pid_seen now mono
	: >"$dir/notify.log"
	: >"$dir/daemon.log"
	: >"$dir/out"
	echo "# io=$io"
	stop_child daemon_pid KILL # what an earlier run left behind
	stop_child listener_pid TERM

	python3 "$dir/listener.py" "$notify" "$dir/notify.log" 2>"$dir/out" &
	# shellcheck disable=SC2034 # read through stop_child listener_pid
	listener_pid=$!
	if ! wait_for 10 test -S "$notify"; then
		not_ok "[$io] NOTIFY_SOCKET listener up"
		return
	fi

	# systemd-socket-activate execs iovad in place: $! is the daemon's pid.
	"$SSA" -l "$sock" -E NOTIFY_SOCKET="$notify" -E WATCHDOG_USEC=$WATCHDOG_USEC \
		"$IOVAD" --no-socket --io="$io" 2>"$dir/daemon.log" &
	daemon_pid=$!
	if ! wait_for 10 test -S "$sock"; then
		not_ok "[$io] systemd-socket-activate listens on $sock"
		return
	fi

	# The first connection starts the daemon; it adopts the listening socket.
	timeout 20 "$CTL" --socket "$sock" status >"$dir/out" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then ok "[$io] iovadctl status through the inherited socket"; else
		echo "     (exit $rc)" >>"$dir/out"
		not_ok "[$io] iovadctl status through the inherited socket"
	fi
	if exited "$daemon_pid"; then
		wait "$daemon_pid"
		echo "     (exit $?)" >"$dir/out"
		daemon_pid=
		not_ok "[$io] the daemon keeps running after the first connection"
		return
	fi
	pid_seen=$(sed -n 's/^pid: *//p' "$dir/out")
	if [ "$pid_seen" = "$daemon_pid" ]; then ok "[$io] status reports the daemon's pid ($daemon_pid)"; else
		not_ok "[$io] status reports the daemon's pid ($daemon_pid, got '${pid_seen}')"
	fi
	if [ "$io" = uring ] && ! grep -q "io backend: *io_uring" "$dir/out"; then
		echo "#    (io_uring unavailable here: the daemon fell back to epoll)"
	fi

	if wait_for 10 has READY=1; then ok "[$io] READY=1"; else not_ok "[$io] READY=1"; fi
	if wait_for 5 has 'STATUS=[^;]+'; then ok "[$io] STATUS="; else not_ok "[$io] STATUS="; fi

	# Pings every 200 ms: at least 3 within ~1 s (one of them right after READY=1).
	sleep 1
	if wait_for 3 has WATCHDOG=1 3; then
		ok "[$io] WATCHDOG=1 pings ($(grep -c 'WATCHDOG=1' "$dir/notify.log") so far)"
	else
		not_ok "[$io] WATCHDOG=1 pings (want >= 3 after 1 s with WATCHDOG_USEC=$WATCHDOG_USEC)"
	fi

	kill -HUP "$daemon_pid"
	if wait_for 10 has 'RELOADING=1'; then ok "[$io] SIGHUP: RELOADING=1"; else not_ok "[$io] SIGHUP: RELOADING=1"; fi
	# MONOTONIC_USEC= in the same datagram, and a plausible CLOCK_MONOTONIC value.
	mono=$(grep -E '(^|;)RELOADING=1(;|$)' "$dir/notify.log" | head -1 |
		tr ';' '\n' | sed -n 's/^MONOTONIC_USEC=//p')
	now=$(python3 -c 'import time; print(int(time.monotonic() * 1e6))')
	if [ -n "$mono" ] && [ "$mono" -le "$now" ] && [ "$mono" -gt $((now - 10000000)) ]; then
		ok "[$io] SIGHUP: MONOTONIC_USEC=$mono with RELOADING=1"
	else
		not_ok "[$io] SIGHUP: MONOTONIC_USEC= with RELOADING=1 (got '$mono', now $now)"
	fi
	if wait_for 10 has READY=1 2; then ok "[$io] SIGHUP: READY=1 again"; else not_ok "[$io] SIGHUP: READY=1 again"; fi
	if timeout 20 "$CTL" --socket "$sock" status >"$dir/out" 2>&1; then
		ok "[$io] iovadctl status after the reload"
	else
		not_ok "[$io] iovadctl status after the reload"
	fi

	kill -TERM "$daemon_pid"
	if wait_for 10 has STOPPING=1; then ok "[$io] SIGTERM: STOPPING=1"; else not_ok "[$io] SIGTERM: STOPPING=1"; fi
	if wait_for 10 exited "$daemon_pid"; then
		wait "$daemon_pid"
		rc=$?
		daemon_pid=
		if [ "$rc" -eq 0 ]; then ok "[$io] SIGTERM: exit 0"; else not_ok "[$io] SIGTERM: exit 0 (got $rc)"; fi
	else
		not_ok "[$io] SIGTERM: exits within 10 s"
	fi

	local r1 rl r2 st
	r1=$(line_of READY=1 1)
	rl=$(line_of RELOADING=1 1)
	r2=$(line_of READY=1 2)
	st=$(line_of STOPPING=1 1)
	if [ "$r1" -gt 0 ] && [ "$r1" -lt "$rl" ] && [ "$rl" -lt "$r2" ] && [ "$r2" -lt "$st" ]; then
		ok "[$io] order: READY=1 < RELOADING=1 < READY=1 < STOPPING=1"
	else
		not_ok "[$io] order: READY=1 ($r1) < RELOADING=1 ($rl) < READY=1 ($r2) < STOPPING=1 ($st)"
	fi
	if [ "$st" -gt 0 ] && ! sed -n "$((st + 1)),\$p" "$dir/notify.log" | grep -qE '(^|;)READY=1(;|$)'; then
		ok "[$io] no READY=1 after STOPPING=1"
	else
		not_ok "[$io] no READY=1 after STOPPING=1"
	fi

	stop_child listener_pid TERM
}

run_backend epoll
run_backend uring

summary socket-activation
