#!/bin/bash
# Guest CPU overhead: the same compute kernel (tests/guests/compute_kernel.c) natively
# and inside a kdom guest, on this machine, in the same run.
#
#   bench/guest-cpu-overhead.sh [-n N]
#
# Native: build/tests/guests/compute-host MIB ROUNDS SEED, which times the kernel alone
# with CLOCK_MONOTONIC ("ns=..."). Guest: `kdom run --kernel compute.elf --cmdline
# "mib=M rounds=R seed=S"`; the probe runs the kernel at CPL 3 and reports the TSC
# cycles of the kernel alone ("cycles=..."), converted to time with the TSC rate
# measured here (kdom-bench tsc-khz; the guest's TSC is the host's). VM start-up is
# not in either figure. kdom's boot-timer lines around the kernel (values 0x10/0x11,
# written by the probe at ring 0 just before and after) give a wall-clock cross-check.
# Both must compute the same hash, or the run counts as failed.
# Workloads (N rounds each, default 11; native and guest alternate, order swapped
# every round; medians):
#   mib=8 rounds=4    the probe's default: random dependent reads/writes over 8 MiB
#   mib=8 rounds=16   the same with 4x the passes: the difference to the previous one
#                     is the cost per pass without start-up effects (first touch of the
#                     buffer's pages, which in a guest means EPT/shadow page faults)
#   mib=1 rounds=128  a buffer that stays in the CPU caches
# Ratio guest/native per workload: of the medians (the headline), the median of the
# per-round ratios, and of the minimums (the least disturbed runs: this machine is a
# VM among neighbours, and memory-bound runs vary by 30% from one run to the next).
# Target: within 1% of native (ratio <= 1.01).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=11
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?}; shift 2 ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done
bench_need_count "$N" -n

bench_start guest-cpu-overhead
bench_header "guest CPU overhead (bench/guest-cpu-overhead.sh), compute kernel native vs in a kdom guest at CPL 3, N=$N; raw logs in $out"
HOSTBIN=$GUESTS/compute-host
[ -x "$HOSTBIN" ] || bench_die "$HOSTBIN is missing"
tsc_khz=$("$KB" tsc-khz) || bench_die "cannot measure the TSC rate"
echo "   TSC: $tsc_khz kHz (measured against CLOCK_MONOTONIC_RAW)"

f=$out/runs.txt
: >"$f"
workloads=("8 4 1" "8 16 1" "1 128 1")

# native MIB ROUNDS SEED ROUND: one native run; appends "native <w> <round> ms hash".
native() {
	local line ns hash
	line=$("$HOSTBIN" "$1" "$2" "$3") || { bench_fail "compute-host $1 $2 $3 failed"; return 1; }
	ns=$(echo "$line" | tr ' ' '\n' | sed -n 's/^ns=//p')
	hash=$(echo "$line" | tr ' ' '\n' | sed -n 's/^hash=//p')
	[ -n "$ns" ] && [ -n "$hash" ] || { bench_fail "compute-host printed no ns/hash: $line"; return 1; }
	echo "native $1/$2/$3 $4 $(awk -v n="$ns" 'BEGIN { printf "%.4f", n / 1e6 }') $hash" >>"$f"
}

# guest MIB ROUNDS SEED ROUND: one kdom run; appends "guest <w> <round> ms hash bracket_ms".
guest() {
	local line cycles hash t0 t1
	line=$("$KB" run --label guest --status 1 --timeout 120 --no-stats --log "$out/guest-runs.log" \
		--mark 'PROBE compute: PASS' \
		--capture 'cycles= cycles=*' \
		--capture 'hash=PROBE compute: PASS hash=* ' \
		--capture 't10=boot-timer: * ms since start (value 0x10)' \
		--capture 't11=boot-timer: * ms since start (value 0x11)' -- \
		"$KDOM" run --kernel "$GUESTS/compute.elf" --memory 128 --console stdio \
		--cmdline "mib=$1 rounds=$2 seed=$3") ||
		{ bench_fail "the compute probe under kdom failed (mib=$1 rounds=$2; see above and $out/guest-runs.log)"; return 1; }
	field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
	cycles=$(field cycles) hash=$(field hash) t0=$(field t10) t1=$(field t11)
	case "$cycles $hash" in *missing*)
		bench_fail "the compute probe printed no cycles/hash: $line"
		return 1
		;;
	esac
	echo "guest $1/$2/$3 $4 $(awk -v c="$cycles" -v k="$tsc_khz" 'BEGIN { printf "%.4f", c / k }') $hash $(awk -v a="$t0" -v b="$t1" 'BEGIN { if (a != "missing" && b != "missing") printf "%.3f", b - a; else print "missing" }')" >>"$f"
}

for ((r = 1; r <= N; r++)); do
	for w in "${workloads[@]}"; do
		# shellcheck disable=SC2086
		if [ $((r % 2)) = 1 ]; then
			native $w "$r" && guest $w "$r"
		else
			guest $w "$r" && native $w "$r"
		fi
	done
done

# Hashes must agree between native and guest runs of a workload.
for w in "${workloads[@]}"; do
	key=${w// //}
	hashes=$(awk -v k="$key" '$2 == k { print $5 }' "$f" | sort -u)
	if [ -z "$hashes" ]; then
		bench_fail "no runs of workload mib/rounds/seed=$key"
	elif [ "$(echo "$hashes" | wc -l)" != 1 ]; then
		bench_fail "workload $key: the guest's hash differs from the native one: $(echo $hashes)"
	fi
done

# col KIND KEY FIELD: values of a column.
col() { awk -v t="$1" -v k="$2" -v c="$3" '$1 == t && $2 == k { print $c }' "$f" | grep -v missing; }
med() { [ -n "$1" ] && echo "$1" | bench_stat_values median; }
minimum() { [ -n "$1" ] && echo "$1" | bench_stat_values min; }
# pair_ratios KEY: per round, guest ms / native ms.
pair_ratios() {
	awk -v k="$1" '$2 == k { v[$1 " " $3] = $4; r[$3] = 1 }
		END { for (i in r) if (("guest " i) in v && ("native " i) in v) print v["guest " i] / v["native " i] }' "$f"
}

echo "-- local: this machine's /dev/kvm (guest code at CPL 3 runs natively on kvm_pvm)"
bench_row "workload (ms, medians)" native guest "guest bracket" "ratio" "ratio of pairs" "ratio of mins" n
declare -A native_med guest_med
for w in "${workloads[@]}"; do
	key=${w// //}
	set -- $w
	nm=$(med "$(col native "$key" 4)")
	gm=$(med "$(col guest "$key" 4)")
	bm=$(med "$(col guest "$key" 6)")
	pr=$(med "$(pair_ratios "$key")")
	rmin=$(bench_ratio "$(minimum "$(col guest "$key" 4)")" "$(minimum "$(col native "$key" 4)")")
	native_med[$key]=$nm guest_med[$key]=$gm
	bench_row "mib=$1 rounds=$2" "$(bench_fmt "$nm" 1)" "$(bench_fmt "$gm" 1)" "$(bench_fmt "$bm" 1)" \
		"$(bench_fmt "$(bench_ratio "$gm" "$nm")" 3)" "$(bench_fmt "$pr" 3)" "$(bench_fmt "$rmin" 3)" \
		"$(col guest "$key" 4 | wc -l)"
done
# Per pass, without start-up effects: (rounds=16 - rounds=4) / 12, from the medians.
n4=${native_med[8/4/1]:-} n16=${native_med[8/16/1]:-} g4=${guest_med[8/4/1]:-} g16=${guest_med[8/16/1]:-}
if [ -n "$n4" ] && [ -n "$n16" ] && [ -n "$g4" ] && [ -n "$g16" ]; then
	np=$(awk -v a="$n16" -v b="$n4" 'BEGIN { printf "%.4f", (a - b) / 12 }')
	gp=$(awk -v a="$g16" -v b="$g4" 'BEGIN { printf "%.4f", (a - b) / 12 }')
	bench_row "mib=8, one pass (from rounds 16 - 4)" "$(bench_fmt "$np" 2)" "$(bench_fmt "$gp" 2)" "" \
		"$(bench_fmt "$(bench_ratio "$gp" "$np")" 3)" "" "" ""
	bench_row "mib=8, start-up (rounds=4 minus 4 passes)" "$(bench_fmt "$(awk -v t="$n4" -v p="$np" 'BEGIN{print t-4*p}')" 2)" \
		"$(bench_fmt "$(awk -v t="$g4" -v p="$gp" 'BEGIN{print t-4*p}')" 2)" "" "" "" "" ""
fi
for w in "${workloads[@]}"; do
	key=${w// //}
	set -- $w
	r=$(bench_ratio "${guest_med[$key]:-}" "${native_med[$key]:-}")
	echo "   target: guest within 1% of native, mib=$1 rounds=$2: $(bench_verdict "$r" 1.01) (ratio $(bench_fmt "$r" 3))"
	bench_summary guest-cpu-overhead "local: guest/native, mib=$1 rounds=$2" "$(bench_fmt "$r" 3)x" "<= 1.01x" "$(bench_verdict "$r" 1.01)"
done
if [ -n "${gp:-}" ]; then
	r=$(bench_ratio "$gp" "$np")
	bench_summary guest-cpu-overhead "local: guest/native, mib=8 per pass (no start-up)" "$(bench_fmt "$r" 3)x" "<= 1.01x" "$(bench_verdict "$r" 1.01)"
fi
exit "$BENCH_FAILED"
