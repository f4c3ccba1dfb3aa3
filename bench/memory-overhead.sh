#!/bin/bash
# VMM memory overhead: the memory the VMM process holds beyond the guest RAM the
# guest actually touched, for 1 vCPU and 128 MiB running the idle-after-touch probe.
#
#   bench/memory-overhead.sh [-n N] [--no-local] [--no-l1] [--l1-log FILE]
#
# How: the probe writes one word in every 4 KiB page of its RAM at CPL 3, prints
# "PROBE idle-after-touch: PASS touched <pages> pages ...", writes the boot-timer port
# and halts forever. kdom-bench waits for that line, waits a moment more (0.5 s here,
# 2 s in the test host) and reads /proc/PID/smaps_rollup and /proc/PID/status, then stops
# the VMM (SIGTERM). Per run (N runs, default 3, median reported):
#   overhead = Pss - touched pages x 4 KiB       (the headline figure)
#   outside-RAM Rss = Rss of every mapping smaller than the guest RAM (a cross-check:
#       what the VMM holds outside its guest-RAM mapping(s), whatever the guest touched)
# Pss rather than Rss: pages shared with other processes (shared libraries of a dynamic
# QEMU) count by their share. Not counted by either: kernel memory for the VM (KVM's
# page tables, vCPU state), the same for every VMM on one host.
# Where: locally (kdom), and in the nested test host kdom next to QEMU -M microvm and
# -M pc (-accel kvm -m 128 -smp 1 -nodefaults, the same probe) in the same L1 run.
# Target: overhead <= 3 MiB (Firecracker, measured the same way: ~2.5 MiB).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=3 local=1 l1=1 l1_log=
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?}; shift 2 ;;
	--no-local) local=0; shift ;;
	--no-l1) l1=0; shift ;;
	--l1-log) l1_log=${2:?}; shift 2 ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done
bench_need_count "$N" -n

bench_start memory-overhead
bench_header "VMM memory overhead (bench/memory-overhead.sh), 1 vCPU, 128 MiB, idle-after-touch.elf, N=$N; raw logs in $out"

# overhead_values FILE LABEL: per run, Pss - touched pages x 4 KiB (KiB), one a line.
overhead_values() {
	grep -a "^$2 run [0-9]*/[0-9]*: " "$1" | awk '{
		pss = ""; pages = ""
		for (i = 1; i <= NF; i++) {
			if ($i ~ /^pss_kib=/) pss = substr($i, 9)
			if ($i ~ /^pages=/) pages = substr($i, 7)
		}
		if (pss != "" && pages != "" && pages != "missing") print pss - pages * 4
	}'
}

# report FILE PREFIX: the table for one place; sets kdom_overhead (KiB) and overhead_<vmm>.
report() {
	local f=$1 p=$2 vmm label ov other pss touched n
	bench_row "figure (MiB, medians)" Pss touched overhead "outside-RAM" n
	for vmm in kdom qemu-microvm qemu-pc; do
		label=$p.$vmm
		[ "$(bench_runs "$f" "$label")" -gt 0 ] || continue
		if [ "$(bench_missing "$f" "$label" pages)" -gt 0 ]; then
			bench_fail "$label: the probe's 'touched N pages' line is missing in a run"
		fi
		ov=$(overhead_values "$f" "$label" | bench_stat_values median)
		pss=$(bench_stat "$f" "$label" pss_kib median)
		touched=$(bench_stat "$f" "$label" pages median)
		other=$(bench_stat "$f" "$label" other_rss_kib median)
		n=$(bench_stat "$f" "$label" pss_kib n)
		bench_row "$vmm" "$(bench_fmt "$(awk -v v="$pss" 'BEGIN{print v/1024}')")" \
			"$(bench_fmt "$(awk -v v="$touched" 'BEGIN{print v*4/1024}')")" \
			"$(bench_fmt "$(awk -v v="$ov" 'BEGIN{print v/1024}')")" \
			"$(bench_fmt "$(awk -v v="$other" 'BEGIN{print v/1024}')")" "$n"
		eval "overhead_${vmm//-/_}=\$ov"
	done
}

if [ "$local" = 1 ]; then
	echo "-- local: this machine's /dev/kvm"
	f=$out/local.txt
	"$KB" run --label local.kdom --repeat "$N" --timeout 120 --mark touched --sample-after-mark 500 \
		--ram-map-min-kib 131072 --capture 'pages=touched * pages' --no-stats --log "$out/local-runs.log" -- \
		"$KDOM" run --kernel "$GUESTS/idle-after-touch.elf" --memory 128 --vcpus 1 --console stdio >>"$f" ||
		bench_fail "local kdom idle-after-touch runs (see above and $out/local-runs.log)"
	overhead_kdom=
	report "$f" local
	mib=$(awk -v v="${overhead_kdom:-}" 'BEGIN{ if (v != "") printf "%.2f", v/1024 }')
	echo "   target: overhead <= 3 MiB: $(bench_verdict "$mib" 3)"
	bench_summary memory-overhead "local: kdom overhead (Pss - touched)" "${mib:--} MiB" "<= 3 MiB" "$(bench_verdict "$mib" 3)"
fi

if [ "$l1" = 1 ]; then
	echo "-- test host (L1: QEMU TCG with emulated AMD SVM, real KVM)"
	if [ -z "$l1_log" ]; then
		l1_log=$out/l1-console.log
		BENCH_MEM_N=$N bench_run_l1 "$l1_log" memory || bench_fail "the test-host run failed (see $l1_log)"
	fi
	[ -f "$l1_log" ] || bench_die "no test-host log $l1_log"
	bench_l1_info "$l1_log"
	if grep -a -q '^l1-suite: FAILED: .*idle-after-touch' "$l1_log"; then
		bench_fail "a memory measurement in the test host failed: $(grep -a '^l1-suite: FAILED: .*idle-after-touch' "$l1_log" | head -n 3 | tr '\n' ' ')"
	fi
	overhead_kdom='' overhead_qemu_microvm='' overhead_qemu_pc=''
	: "$overhead_qemu_microvm$overhead_qemu_pc" # set by report, read through ${!v} below
	report "$l1_log" l1.memory
	[ -n "$overhead_kdom" ] || bench_fail "no kdom memory figures in the test-host log $l1_log"
	kmib=$(awk -v v="$overhead_kdom" 'BEGIN{ if (v != "") printf "%.2f", v/1024 }')
	echo "   target: kdom overhead <= 3 MiB: $(bench_verdict "$kmib" 3)"
	bench_summary memory-overhead "test host: kdom overhead (Pss - touched)" "${kmib:--} MiB" "<= 3 MiB" "$(bench_verdict "$kmib" 3)"
	for m in microvm pc; do
		v=overhead_qemu_$m
		[ -n "${!v}" ] || continue
		qmib=$(awk -v v="${!v}" 'BEGIN{ printf "%.2f", v/1024 }')
		r=$(bench_ratio "$overhead_kdom" "${!v}")
		echo "   ratio kdom / QEMU -M $m (overhead): $(bench_fmt "$r" 3)"
		bench_summary memory-overhead "test host: kdom/QEMU-$m overhead" "$(bench_fmt "$r" 3)x (${kmib:--} vs $qmib MiB)" "-" "-"
	done
fi
exit "$BENCH_FAILED"
