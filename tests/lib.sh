# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# tests/lib.sh - sourced by the shell tests: the pass/fail counters, ok and
# not_ok reporting, the closing summary line, and argument checks.
#
# A script sets failure_logs to the files whose contents explain a failure
# (the last command's output, a daemon log, ...); not_ok prints them.

pass=0
fail=0
# shellcheck disable=SC2034 # set by the sourcing script
failure_logs=()

ok() {
	pass=$((pass + 1))
	echo "ok   $1"
}

not_ok() {
	local f

	fail=$((fail + 1))
	echo "FAIL $1"
	for f in "${failure_logs[@]}"; do
		if [ -s "$f" ]; then
			echo "     ${f##*/}:"
			sed 's/^/     | /' "$f"
		fi
	done
	return 0
}

# summary NAME: the closing "NAME: N passed, M failed" line; true when nothing
# failed and something passed.
summary() {
	echo "$1: $pass passed, $fail failed"
	[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
}

# need_executables NAME FILE...: exit 2 (a usage error) unless every FILE is
# an executable.
need_executables() {
	local name=$1 f

	shift
	for f in "$@"; do
		if [ ! -x "$f" ]; then
			echo "$name: $f: not an executable" >&2
			exit 2
		fi
	done
}
