#!/bin/bash
# Linux boot: Debian's stock kernel with kdom's default busybox initramfs, from VMM start
# to the init's console line and to VMM exit, kdom against QEMU -M pc and -M microvm.
#
#   bench/linux-boot.sh [-n N] [--l1-log FILE]
#
# Guest: build/guest/vmlinuz + initramfs.cpio.gz (scripts/build-guest.sh), 256 MiB,
# 1 vCPU, command line "console=ttyS0 kdom.action=poweroff": guest/init writes the
# boot-timer port first, prints "kdom-guest: init reached, ... uptime_s=<s>" on the
# console, then powers off (exit status 0 from every VMM).
# VMMs: `kdom run --kernel --initrd --cmdline --console stdio`; QEMU -accel kvm -cpu host
# -M pc / -M microvm -nodefaults -nographic -serial stdio -no-reboot with -kernel -initrd
# -append. Only in the nested test host: this machine's /dev/kvm cannot boot a stock
# kernel (see /work/shared/test-hosts.md). The VMMs take turns, N rounds (default 3).
# Figures (medians): start -> the init's line (fork() to the line on the VMM's stdout),
# start -> VMM exit, the guest's own uptime at that line, and for kdom the arrival of
# its boot-timer line (the init's first action: a lower bound of "start -> init").
# Ratios kdom/QEMU. No fixed target: the aim is "faster than QEMU" (ratio < 1).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=3 l1_log=
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?}; shift 2 ;;
	--l1-log) l1_log=${2:?}; shift 2 ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done
bench_need_count "$N" -n

bench_start linux-boot
bench_header "Linux boot (bench/linux-boot.sh), stock kernel + busybox initramfs, 256 MiB, 1 vCPU, N=$N; raw logs in $out"
echo "-- test host (L1: QEMU TCG with emulated AMD SVM, real KVM; absolute times 10-50x hardware's: compare ratios)"
if [ -z "$l1_log" ]; then
	l1_log=$out/l1-console.log
	BENCH_LINUX_N=$N bench_run_l1 "$l1_log" linux || bench_fail "the test-host run failed (see $l1_log)"
fi
[ -f "$l1_log" ] || bench_die "no test-host log $l1_log"
bench_l1_info "$l1_log"
if grep -a -q '^l1-suite: FAILED: .*Linux boot' "$l1_log"; then
	bench_fail "a Linux boot in the test host failed: $(grep -a '^l1-suite: FAILED: .*Linux boot' "$l1_log" | head -n 3 | tr '\n' ' ')"
fi

bench_row "figure (medians)" "to init (ms)" "to exit (ms)" "uptime (s)" "boot-timer(ms)" "runs"
for vmm in kdom qemu-pc qemu-microvm; do
	label=l1.linux.$vmm
	runs=$(bench_runs "$l1_log" "$label")
	[ "$runs" -gt 0 ] || continue
	missing=$(bench_missing "$l1_log" "$label" init_ms)
	init=$(bench_stat "$l1_log" "$label" init_ms median)
	ex=$(bench_stat "$l1_log" "$label" exit_ms median)
	bench_row "$vmm" "$(bench_fmt "$init" 0)" "$(bench_fmt "$ex" 0)" \
		"$(bench_fmt "$(bench_stat "$l1_log" "$label" uptime_s median)" 2)" \
		"$(bench_fmt "$(bench_stat "$l1_log" "$label" timer_ms median)" 0)" "$runs"
	eval "init_${vmm//-/_}=\$init exit_${vmm//-/_}=\$ex"
	if [ "$missing" -gt 0 ]; then
		bench_fail "$vmm: $missing of $runs runs powered off without the init's line 'kdom-guest: init reached' on the console"
	fi
done
[ -n "${exit_kdom:-}" ] || bench_fail "no kdom Linux boot figures in the test-host log $l1_log"
timer_kdom=$(bench_stat "$l1_log" l1.linux.kdom timer_ms median)
for m in pc microvm; do
	qi=init_qemu_$m qe=exit_qemu_$m
	[ -n "${!qe:-}" ] || continue
	ri=$(bench_ratio "${init_kdom:-}" "${!qi:-}")
	re=$(bench_ratio "${exit_kdom:-}" "${!qe}")
	echo "   ratio kdom / QEMU -M $m: start -> init $(bench_fmt "$ri" 3), start -> exit $(bench_fmt "$re" 3)"
	bench_summary linux-boot "test host: kdom/QEMU-$m start -> init line" \
		"$(bench_fmt "$ri" 3)x ($(bench_fmt "${init_kdom:-}" 0) vs $(bench_fmt "${!qi:-}" 0) ms)" "< 1x" "$(bench_verdict "$ri" 0.9999)"
	bench_summary linux-boot "test host: kdom/QEMU-$m start -> exit" \
		"$(bench_fmt "$re" 3)x ($(bench_fmt "${exit_kdom:-}" 0) vs $(bench_fmt "${!qe}" 0) ms)" "< 1x" "$(bench_verdict "$re" 0.9999)"
	if [ -z "${init_kdom:-}" ] && [ -n "$timer_kdom" ] && [ -n "${!qi:-}" ]; then
		rt=$(bench_ratio "$timer_kdom" "${!qi}")
		echo "   (kdom's init line is missing; stand-in: its boot-timer line, which the init writes first, before loading"
		echo "    modules and printing its line, over QEMU's init line: $(bench_fmt "$rt" 3); favours kdom slightly)"
		bench_summary linux-boot "test host: kdom boot-timer / QEMU-$m init line (stand-in)" \
			"$(bench_fmt "$rt" 3)x ($(bench_fmt "$timer_kdom" 0) vs $(bench_fmt "${!qi}" 0) ms)" "< 1x" "$(bench_verdict "$rt" 0.9999)"
	fi
done
exit "$BENCH_FAILED"
