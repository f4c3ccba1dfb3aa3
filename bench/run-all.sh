#!/bin/bash
# Runs every benchmark and prints a summary table of the headline figures.
#
#   bench/run-all.sh [--no-l1] [--quick]
#
# One nested test host (scripts/test-host.sh --with-qemu, ~6 minutes) runs the kdom vs
# QEMU parts of start-latency, memory-overhead, linux-boot and virtio-blk together; then each
# script runs its local part and reads its test-host figures from that run's console
# log. guest-cpu-overhead is local only. Total: about 10 minutes.
#   --no-l1   local figures only (no test host; linux-boot is skipped)
#   --quick   fewer repeats (start 5, memory 1, Linux 1, compute 3, virtio-blk 2 local and
#             1 in the test host): a smoke run
# Exit status: 0 when every measurement worked (whether or not targets are met), 1 if
# any benchmark's measurement failed.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

l1=1 start_n=20 mem_n=3 linux_n=3 cpu_n=11 blk_n=5 disk_n=3
while [ $# -gt 0 ]; do
	case $1 in
	--no-l1) l1=0; shift ;;
	--quick) start_n=5 mem_n=1 linux_n=1 cpu_n=3 blk_n=2 disk_n=1; shift ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done

bench_start run-all
export BENCH_SNAPSHOT_BIN=$out/bin # the benchmarks below all run these copies
all=$out/all-output.txt
failed=()
t0=$(date +%s)

# run NAME COMMAND...: one benchmark, its output shown and kept.
run() {
	local name=$1 rc=0
	shift
	echo
	BENCH_NO_BUILD=1 "$@" 2>&1 | tee -a "$all"
	rc=${PIPESTATUS[0]}
	[ "$rc" = 0 ] || failed+=("$name (exit $rc)")
}

l1_opt=(--no-l1)
if [ "$l1" = 1 ]; then
	bench_header "all benchmarks (bench/run-all.sh); raw logs in $out" | tee -a "$all"
	echo "-- one test-host run for the kdom vs QEMU parts (start latency N=$start_n, memory N=$mem_n, Linux boot N=$linux_n, Linux disk reads N=$disk_n)"
	l1_log=$out/l1-console.log
	l1_t0=$(date +%s)
	l1_rc=0
	BENCH_START_N=$start_n BENCH_MEM_N=$mem_n BENCH_LINUX_N=$linux_n BENCH_DISK_N=$disk_n \
		bench_run_l1 "$l1_log" start memory linux disk || l1_rc=$?
	# 1: a measurement in it failed, which the benchmark concerned reports; else the run broke.
	[ "$l1_rc" = 0 ] || [ "$l1_rc" = 1 ] || failed+=("the test-host run (status $l1_rc)")
	echo "   test-host run took $(($(date +%s) - l1_t0)) s"
	l1_opt=(--l1-log "$l1_log")
else
	bench_header "all benchmarks, local only (bench/run-all.sh --no-l1); raw logs in $out" | tee -a "$all"
fi

run start-latency "$BENCH_DIR/start-latency.sh" -n "$start_n" "${l1_opt[@]}"
run memory-overhead "$BENCH_DIR/memory-overhead.sh" -n "$mem_n" "${l1_opt[@]}"
if [ "$l1" = 1 ]; then
	run linux-boot "$BENCH_DIR/linux-boot.sh" -n "$linux_n" "${l1_opt[@]}"
fi
run guest-cpu-overhead "$BENCH_DIR/guest-cpu-overhead.sh" -n "$cpu_n"
blk_l1_opt=()
[ "$l1" = 0 ] || blk_l1_opt=(--l1-log "$l1_log")
run virtio-blk "$BENCH_DIR/virtio-blk.sh" -n "$blk_n" "${blk_l1_opt[@]}"

echo
echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname), $(($(date +%s) - t0)) s)"
printf '   %-19s %-64s %-30s %-9s %s\n' benchmark figure value target verdict
grep -a '^SUMMARY|' "$all" | while IFS='|' read -r _ bench fig value target verdict; do
	printf '   %-19s %-64s %-30s %-9s %s\n' "$bench" "$fig" "$value" "$target" "$verdict"
done
grep -a '^FAILED: ' "$all" | sed 's/^/   /'
if [ ${#failed[@]} -gt 0 ]; then
	echo "   measurement failures in: ${failed[*]}"
	exit 1
fi
echo "   every measurement worked (see the verdicts for the targets)"
