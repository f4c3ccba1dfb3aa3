#!/usr/bin/env bash
# A vCPU failure (here a triple fault: KVM_EXIT_SHUTDOWN) is reported with its reason and the
# vCPU's registers, and kdom exits 1, promptly. Needs /dev/kvm.
#   vcpu-failure.sh KDOM_BINARY TRIPLE_FAULT_PROBE_ELF
set -uo pipefail
kdom=$1
probe=$2
err=$(mktemp)
trap 'rm -f "$err"' EXIT
timeout 20 "$kdom" run --kernel "$probe" --memory 16 --console none 2>"$err"
status=$?
failed=0
check() {
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed=$((failed + 1)); fi
}
check exit-status [ "$status" -eq 1 ]
check reason grep -q 'vCPU 0: triple fault (KVM_EXIT_SHUTDOWN)' "$err"
# The probe sets rsi to 0x7e57 before it faults. On AMD (SVM) the hardware saves no state at
# a triple fault and KVM puts the reset values there: kdom must then say so, beside them.
registers_shown() {
  grep -q 'rsi=0000000000007e57' "$err" && return 0
  grep -q "note: these are the vCPU's reset values" "$err" && grep -q 'rip=000000000000fff0' "$err"
}
check registers registers_shown
check control-registers grep -q 'cr0=' "$err"
[ "$failed" -eq 0 ] || sed 's/^/    /' "$err"
echo "vcpu-failure: $((4 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
