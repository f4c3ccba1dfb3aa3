#!/usr/bin/env bash
# Bad input that only a host with KVM can show: a TAP another running domain holds, and a
# /dev/kvm the user may not open. One clear error line and a non-zero exit each, as in
# bad-input.sh. Needs a usable /dev/kvm, root, /dev/net/tun and setpriv (ctest runs it through
# tests/with-kvm.sh, so in the nested test host where this machine has no /dev/kvm).
#   bad-input-kvm.sh KDOM_BINARY PROBE_ELF IDLE_PROBE_ELF
set -uo pipefail
kdom=$1
probe=$2
idle=$3
work=$(mktemp -d)
holder=
trap '[ -z "$holder" ] || kill "$holder" 2>/dev/null; rm -rf "$work"' EXIT
. "$(dirname "$0")/lib-expect.sh"

missing=
[ "$(id -u)" -eq 0 ] || missing="$missing root"
[ -c /dev/net/tun ] || missing="$missing /dev/net/tun"
command -v setpriv >/dev/null || missing="$missing setpriv"
if [ -n "$missing" ]; then
  echo "bad-input-kvm: FAIL: this test needs$missing"
  exit 1
fi

# A TAP that another kdom holds (an idle probe guest keeps it open) cannot be attached twice.
"$kdom" run --kernel "$idle" --net tap=kdombusy0 --console none </dev/null >/dev/null 2>"$work/holder.err" &
holder=$!
for _ in $(seq 100); do grep -q 'net0:' "$work/holder.err" && break; sleep 0.1; done
expect net-tap-in-use "in use by another process" -- "$kdom" run --kernel "$probe" --net tap=kdombusy0
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
holder=

# An ordinary user without access to /dev/kvm (kdom and the probe copied where it may read them).
cp "$kdom" "$work/kdom" && cp "$probe" "$work/probe.elf" && chmod 755 "$work" "$work/kdom" && chmod 644 "$work/probe.elf"
expect no-permission "no permission to open /dev/kvm" -- setpriv --reuid=65534 --regid=65534 --clear-groups "$work/kdom" run --kernel "$work/probe.elf"

echo "bad-input-kvm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
