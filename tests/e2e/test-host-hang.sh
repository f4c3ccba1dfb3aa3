#!/bin/bash
# Checks that scripts/test-host.sh tells a hung test host from a quiet one by L1's per-CPU
# heartbeats (every 5 s on L1's second serial port), with the limit lowered to 10 s:
#   quiet:   a command that prints nothing for 25 s ends normally (exit 0), no false hang;
#   stopped: a command that stops CPU 1's heartbeat (SIGSTOP), then sleeps for minutes, is
#            ended as hung (exit 124, "CPU#1 sent no heartbeat") well before its time limit.
#
#   tests/e2e/test-host-hang.sh BUILD_DIR
set -u
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:?usage: test-host-hang.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# run NAME TIMEOUT COMMAND: test-host.sh with a 10 s heartbeat limit; sets rc, secs, err.
run() {
	local name=$1 limit=$2 t0
	shift 2
	t0=$(date +%s)
	KDOM_TESTHOST_HEARTBEAT_S=10 "$src/scripts/test-host.sh" --build-dir "$build" --timeout "$limit" -- "$@" \
		>"$work/$name.out" 2>"$work/$name.err"
	rc=$?
	secs=$(($(date +%s) - t0))
	err=$(grep 'test-host.sh: error' "$work/$name.err" | tail -n1)
}
judge() {
	local name=$1 detail=$2
	shift 2
	if "$@"; then
		echo "PASS $name: $detail"
	else
		echo "FAIL $name: $detail"
		tail -n 20 "$work/$name.out" "$work/$name.err"
		failures=$((failures + 1))
	fi
}

run quiet 240 'sleep 25'
judge quiet "exit $rc after ${secs}s, want 0 (no hang seen in 25 s of silence); ${err:-no error line}" [ "$rc" = 0 ]

run stopped 400 'kill -STOP "$(cat /run/kdom-heartbeat-cpu1.pid)" && sleep 600'
judge stopped "exit $rc after ${secs}s, want 124 well before the 400 s limit; error line: ${err:-none}" \
	[ "$rc" = 124 ] && [ "$secs" -lt 200 ] && [[ "$err" == *"CPU#1 sent no heartbeat"* ]]

[ "$failures" = 0 ]
