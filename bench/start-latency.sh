#!/bin/bash
# Start latency: how long from starting the VMM until the guest runs, and until a
# guest that exits at once has made the VMM exit.
#
#   bench/start-latency.sh [-n N] [--no-local] [--no-l1] [--l1-log FILE]
#
# Figures (each over N runs, default 20: median and p90):
#   start -> first guest instruction   guest build/bench/first-mark.elf, whose first two
#       instructions write kdom's boot-timer port: (a) kdom's own figure from its
#       "kdom: boot-timer: X ms since start" line (clock taken in kdom's static
#       initialisation, so exec() is not counted), (b) from just before fork() in
#       kdom-bench until that line arrives on kdom's stderr pipe (counts fork+exec).
#   start -> probe exit   wall time of `kdom run --kernel first-instruction.elf
#       --memory 128` (fork() to the process's exit, exit status 1 required), and
#       the same guest under QEMU -M microvm and -M pc (-accel kvm -nodefaults
#       -nographic -device isa-debug-exit), interleaved round by round.
# Where: locally on this machine's /dev/kvm (kdom only: QEMU's firmware is too slow on
# a kvm_pvm host to compare), and in the nested test host (scripts/test-host.sh; kdom
# and QEMU in the same L1 run), with ratios kdom/QEMU.
# Targets: start -> probe exit <= 10 ms, and <= 0.2x QEMU's.
#   --no-local / --no-l1   skip that part
#   --l1-log FILE          take the test-host figures from an earlier run's console log
#                          (bench/run-all.sh runs one test host for all benchmarks)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=20 local=1 l1=1 l1_log=
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

bench_start start-latency
bench_header "start latency (bench/start-latency.sh), N=$N; raw logs in $out"

# table FILE LABEL-PREFIX: the rows for one place (local or test host).
rows() {
	local f=$1 p=$2 fig
	bench_row "figure (ms)" median p90 min max n
	for fig in "kdom-first vmm_ms|kdom start -> first guest instruction (kdom clock)" \
		"kdom-first mark_ms|kdom start -> first guest instruction (fork+exec)" \
		"kdom-first exitmsg_ms|kdom start -> 'guest wrote 0' line (vCPU stopped)" \
		"kdom-first exit_ms|kdom start -> exit (same runs)" \
		"kdom exit_ms|kdom start -> probe exit" \
		"qemu-microvm exit_ms|QEMU -M microvm start -> probe exit" \
		"qemu-pc exit_ms|QEMU -M pc start -> probe exit"; do
		local key=${fig%%|*} name=${fig#*|}
		local label=$p.${key% *} figure=${key#* }
		[ "$(bench_runs "$f" "$label")" -gt 0 ] || continue
		bench_row "$name" "$(bench_fmt "$(bench_stat "$f" "$label" "$figure" median)")" \
			"$(bench_fmt "$(bench_stat "$f" "$label" "$figure" p90)")" \
			"$(bench_fmt "$(bench_stat "$f" "$label" "$figure" min)")" \
			"$(bench_fmt "$(bench_stat "$f" "$label" "$figure" max)")" \
			"$(bench_stat "$f" "$label" "$figure" n)"
	done
}

if [ "$local" = 1 ]; then
	echo "-- local: this machine's /dev/kvm"
	f=$out/local.txt
	# One warm-up run each (page cache, KVM module state), not counted.
	"$KB" run --label local.kdom-first --repeat "$N" --warmup 1 --status 1 --timeout 60 \
		--mark 'boot-timer:' --capture 'vmm_ms=boot-timer: * ms' --time 'exitmsg=to the debug-exit port' \
		--log "$out/local-runs.log" --no-stats -- \
		"$KDOM" run --kernel "$FIRST_MARK" --memory 128 >>"$f" ||
		bench_fail "local kdom first-mark runs (see above and $out/local-runs.log)"
	"$KB" run --label local.kdom --repeat "$N" --warmup 1 --status 1 --timeout 60 \
		--log "$out/local-runs.log" --no-stats -- \
		"$KDOM" run --kernel "$GUESTS/first-instruction.elf" --memory 128 >>"$f" ||
		bench_fail "local kdom first-instruction runs (see above and $out/local-runs.log)"
	rows "$f" local
	exit_med=$(bench_stat "$f" local.kdom exit_ms median)
	first_med=$(bench_stat "$f" local.kdom-first vmm_ms median)
	echo "   target: start -> probe exit <= 10 ms: $(bench_verdict "$exit_med" 10) ($(bench_fmt "$exit_med") ms)"
	bench_summary start-latency "local: kdom start -> first instruction (median)" "$(bench_fmt "$first_med") ms" "-" "-"
	bench_summary start-latency "local: kdom start -> probe exit (median)" "$(bench_fmt "$exit_med") ms" "<= 10 ms" \
		"$(bench_verdict "$exit_med" 10)"
fi

if [ "$l1" = 1 ]; then
	echo "-- test host (L1: QEMU TCG with emulated AMD SVM, real KVM; absolute times 10-50x hardware's: compare ratios)"
	if [ -z "$l1_log" ]; then
		l1_log=$out/l1-console.log
		BENCH_START_N=$N bench_run_l1 "$l1_log" start || bench_fail "the test-host run failed (see $l1_log)"
	fi
	[ -f "$l1_log" ] || bench_die "no test-host log $l1_log"
	bench_l1_info "$l1_log"
	if grep -a -q '^l1-suite: FAILED: .*first' "$l1_log"; then
		bench_fail "a start-latency measurement in the test host failed: $(grep -a '^l1-suite: FAILED: .*first' "$l1_log" | head -n 3 | tr '\n' ' ')"
	fi
	rows "$l1_log" l1.start
	kdom_med=$(bench_stat "$l1_log" l1.start.kdom exit_ms median)
	for m in microvm pc; do
		q=$(bench_stat "$l1_log" l1.start.qemu-$m exit_ms median)
		[ -n "$q" ] || continue
		r=$(bench_ratio "$kdom_med" "$q")
		echo "   ratio kdom / QEMU -M $m (medians, start -> probe exit): $(bench_fmt "$r" 3)   target <= 0.2: $(bench_verdict "$r" 0.2)"
		bench_summary start-latency "test host: kdom/QEMU-$m start -> probe exit" "$(bench_fmt "$r" 3)x ($(bench_fmt "$kdom_med" 0) vs $(bench_fmt "$q" 0) ms)" "<= 0.2x" "$(bench_verdict "$r" 0.2)"
	done
	n_kdom=$(bench_stat "$l1_log" l1.start.kdom exit_ms n)
	[ "${n_kdom:-0}" -gt 0 ] || bench_fail "no kdom start-latency figures in the test-host log $l1_log"
fi
exit "$BENCH_FAILED"
