#!/bin/sh
# Boots a probe guest under QEMU (PVH via -kernel) with the same guest-visible
# devices kdom gives it: COM1 on stdout and the debug-exit port at 0xf4.
# Usage: run-under-qemu.sh PROBE.elf [qemu args...]
#   e.g. run-under-qemu.sh smp.elf -smp 2 -append "cpus=2"
# Extra args come last, so they override the defaults (-m, -accel, ...).
# Environment: QEMU (binary, default qemu-system-x86_64), QEMU_ACCEL (default
# tcg: on a host with nested, emulated ring 0 the firmware is too slow under
# KVM), QEMU_MEM_MIB (default 128).
# Exit status is QEMU's: (code << 1) | 1 for a debug-exit write of code.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 PROBE.elf [qemu args...]" >&2
    exit 2
fi
kernel=$1
shift
exec "${QEMU:-qemu-system-x86_64}" \
    -accel "${QEMU_ACCEL:-tcg}" -M pc -m "${QEMU_MEM_MIB:-128}" \
    -display none -serial stdio -monitor none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$kernel" "$@"
