#!/usr/bin/env bash
# The control socket of a running domain, end to end on this host's /dev/kvm with an idle
# probe guest (no balloon driver in it): kdom balloon set/stats reach the device, bad requests
# get a one-line error and a non-zero exit while the domain keeps running, a second kdom
# refuses the same path, and the socket is removed when the domain stops.
#   control-socket.sh KDOM_BINARY IDLE_PROBE_ELF
set -uo pipefail
kdom=$1
probe=$2
work=$(mktemp -d)
ctl=$work/ctl
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
passed=0
failed=0

# expect NAME STATUS PATTERN -- COMMAND...: COMMAND exits with STATUS (0 or "fail") and its
# output (stdout and stderr) contains PATTERN.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  timeout 20 "$@" >"$work/out" 2>&1 </dev/null
  local status=$?
  local ok=0
  if [ "$want" = 0 ]; then [ "$status" -eq 0 ] && ok=1; else [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && ok=1; fi
  if [ "$ok" = 1 ] && grep -q -- "$pattern" "$work/out"; then
    echo "PASS $name: $(head -c 200 "$work/out" | tr '\n' ' ')"
    passed=$((passed + 1))
  else
    echo "FAIL $name: exit $status, expected $want and '$pattern'; output:"
    sed 's/^/    /' "$work/out"
    failed=$((failed + 1))
  fi
}

"$kdom" run --kernel "$probe" --memory 128 --console none --balloon target=16 --control "$ctl" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do
  grep -q 'boot-timer' "$work/err" 2>/dev/null && break
  sleep 0.1
done

expect stats-initial 0 '^target_mib: 16$' -- "$kdom" balloon --control "$ctl" stats
expect set 0 'balloon target set to 64 MiB' -- "$kdom" balloon --control "$ctl" set 64
expect stats-after-set 0 '^target_mib: 64$' -- "$kdom" balloon --control "$ctl" stats
expect set-above-memory fail 'kdom: error: balloon target 129 MiB is larger than guest memory (128 MiB)' -- \
  "$kdom" balloon --control "$ctl" set 129
expect second-domain-same-path fail 'already exists' -- "$kdom" run --kernel "$probe" --memory 64 --console none --control "$ctl"
expect still-serving 0 '^target_mib: 64$' -- "$kdom" balloon --control "$ctl" stats

kill -TERM "$pid"
wait "$pid"
status=$?
pid=
if [ "$status" -eq 143 ] && [ ! -e "$ctl" ]; then
  echo "PASS stop: exit $status, control socket removed"
  passed=$((passed + 1))
else
  echo "FAIL stop: exit $status (expected 143), socket still there: $([ -e "$ctl" ] && echo yes || echo no); stderr:"
  sed 's/^/    /' "$work/err"
  failed=$((failed + 1))
fi
expect after-stop fail 'no control socket' -- "$kdom" balloon --control "$ctl" stats

echo "control-socket: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
