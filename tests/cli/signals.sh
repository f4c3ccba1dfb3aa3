#!/usr/bin/env bash
# Ctrl-C (SIGINT), SIGTERM, SIGHUP and SIGQUIT stop a running domain cleanly: kdom reports
# the signal, exits with 128 + signal number, and leaves no vCPU thread behind; SIGQUIT first
# prints each vCPU's registers and each virtio device's state. Needs a working /dev/kvm.
#   signals.sh KDOM_BINARY IDLE_PROBE_ELF
set -uo pipefail
kdom=$1
probe=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

for signal in INT TERM HUP QUIT; do
  extra=()
  [ "$signal" = QUIT ] && extra=(--rng)  # a virtio device for the state dump to show
  "$kdom" run --kernel "$probe" --memory 64 --console none "${extra[@]}" 2>"$work/err-$signal" &
  pid=$!
  # Wait until the guest is running (the probe writes the boot-timer port when idle).
  for _ in $(seq 100); do
    grep -q 'boot-timer' "$work/err-$signal" 2>/dev/null && break
    sleep 0.1
  done
  kill -s "$signal" "$pid"
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    echo "FAIL SIG$signal: kdom still running 5 s after the signal"
    failed=$((failed + 1))
    continue
  fi
  wait "$pid"
  status=$?
  expected=$((128 + $(kill -l "$signal")))
  dumped=yes
  if [ "$signal" = QUIT ]; then
    for want in 'state at SIGQUIT' 'vCPU 0: rip=' 'vCPU 0: events: exception none' 'virtio device type 4 status='; do
      grep -q "$want" "$work/err-$signal" || { dumped="no '$want'"; break; }
    done
  fi
  if [ "$status" -eq "$expected" ] && grep -q "stopped by SIG$signal" "$work/err-$signal" && [ "$dumped" = yes ]; then
    echo "PASS SIG$signal: exit $status, $(tail -1 "$work/err-$signal")"
    passed=$((passed + 1))
  else
    echo "FAIL SIG$signal: exit $status (expected $expected), state dump: $dumped; stderr:"
    sed 's/^/    /' "$work/err-$signal"
    failed=$((failed + 1))
  fi
done
echo "signals: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
