#!/bin/bash
# virtio-net throughput: kdom against QEMU (virtio-net-pci, -netdev tap, no vhost) in the
# same nested test host, on the same TAP-on-a-bridge set-up as the e2e scenario `net`.
#
#   bench/virtio-net.sh [-n ROUNDS] [--mib N] [--qemu-cpu MODEL] [--l1-log FILE]
#
# In one test-host run (scripts/test-host.sh --with-qemu) the VMMs take turns, ROUNDS times
# (default 1), each booting the default guest (512 MiB, 1 vCPU) with kdom.action=net-test:
# the guest sends N MiB (default 32) to the test host over TCP (busybox nc) and receives N
# MiB back; tests/e2e/scenarios.sh checks both sha256 and prints one "E2E-NET" line per run
# with each direction's seconds and the frames the guest's eth0 counted (with TSO a frame
# can hold up to 64 KiB). QEMU runs with -cpu host (--qemu-cpu), so that the guest kernel
# picks the same copy and checksum routines as under kdom, which passes the host's CPUID.
# Figures: MB/s and frames/s each way (medians over rounds), and the ratio kdom/QEMU (above
# 1: kdom is faster); the guest's ping round trip to the test host before the transfers
# (the average of 3; below 1: kdom is quicker). The test host is QEMU TCG: absolute figures
# are far below hardware's; compare ratios.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=1 mib=32 qemu_cpu=host l1_log=
while [ $# -gt 0 ]; do
	case $1 in
	-n) rounds=${2:?}; shift 2 ;;
	--mib) mib=${2:?}; shift 2 ;;
	--qemu-cpu) qemu_cpu=${2:?}; shift 2 ;;
	--l1-log) l1_log=${2:?}; shift 2 ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done
bench_need_count "$rounds" -n
bench_need_count "$mib" --mib

out=$(bench_results_dir virtio-net)
bench_header "virtio-net throughput (bench/virtio-net.sh), $mib MiB each way, $rounds round(s), QEMU -cpu $qemu_cpu; raw logs in $out"
if [ -z "$l1_log" ]; then
	if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
		cmake --build "$BUILD" -j2 --target kdom >"$out/build.log" 2>&1 || bench_die "building kdom failed (log: $out/build.log)"
	fi
	mkdir -p "$out/bin" && cp -p "$KDOM" "$out/bin/kdom" || bench_die "no kdom binary at $KDOM"
	l1_log=$out/l1-console.log
	cat >"$out/net-suite.sh" <<-SUITE
		for i in \$(seq $rounds); do
			for vmm in kdom qemu; do
				KDOM_E2E_NET_MIB=$mib KDOM_E2E_QEMU_CPU=$qemu_cpu sh e2e/scenarios.sh \$vmm 600 net
			done
		done
	SUITE
	"$REPO/scripts/test-host.sh" --with-qemu --kdom "$out/bin/kdom" --timeout 1800 \
		--add "$REPO/tests/e2e/scenarios.sh:e2e/scenarios.sh" --add "$out/net-suite.sh:e2e/net-suite.sh" \
		--log "$l1_log" -- sh e2e/net-suite.sh \
		>"$out/test-host.out" 2>&1 || bench_fail "the test-host run failed or a check failed (see $l1_log)"
fi
[ -f "$l1_log" ] || bench_die "no test-host log $l1_log"
# A run that failed of the test host's emulation runs again (E2E-RETRY): only a final
# failure fails the benchmark. A direction that a failed attempt did not finish has no figure.
if grep -a -q '^E2E-SCENARIO net FAIL' "$l1_log"; then
	bench_fail "a net run failed its checks: $(grep -a '^E2E-CHECK net\.[a-z-]* FAIL' "$l1_log" | head -n 3 | tr '\n' ' ')"
fi

# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# figure VMM KIND: KIND = up_mbs, up_fps, down_mbs, down_fps, ping_ms (the guest's average
# of 3 pings before the transfers); median over that VMM's runs
figure() {
	grep -a "^E2E-NET vmm=$1 " "$l1_log" | awk -v kind="$2" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		if (kind == "ping_ms") { if (split(f["ping_ms"], t, "/") == 3) printf "%.3f\n", t[2]; next }
		dir = substr(kind, 1, index(kind, "_") - 1); secs = f[dir "_secs"]
		if (secs == "missing" || secs <= 0) next
		if (kind ~ /_mbs$/) printf "%.2f\n", f["mib"] * 1.048576 / secs
		else if (f[dir "_packets"] != "missing") printf "%.0f\n", f[dir "_packets"] / secs
	}' | median
}

bench_row "figure (median of $rounds)" "kdom" "QEMU" "kdom/QEMU"
for kind in up_mbs up_fps down_mbs down_fps ping_ms; do
	target="> 1x" better=higher
	case $kind in
	up_mbs) name="guest -> host, MB/s" ;;
	up_fps) name="guest -> host, frames/s (guest eth0 tx)" ;;
	down_mbs) name="host -> guest, MB/s" ;;
	down_fps) name="host -> guest, frames/s (guest eth0 rx)" ;;
	ping_ms) name="ping round trip, ms (guest's average of 3)" target="<= 1x" better=lower ;;
	esac
	k=$(figure kdom "$kind") q=$(figure qemu "$kind")
	r=$(bench_ratio "$k" "$q")
	bench_row "$name" "${k:-missing}" "${q:-missing}" "$(bench_fmt "$r" 2)"
	[ -n "$k" ] || bench_fail "no kdom figure for $name in $l1_log"
	bench_summary virtio-net "test host: $name, kdom/QEMU" "$(bench_fmt "$r" 2)x (${k:-?} vs ${q:-?})" "$target" \
		"$(if [ -n "$r" ] && awk -v r="$r" -v b="$better" 'BEGIN { exit !(b == "higher" ? r >= 1 : r <= 1) }'; then
			echo met
		else echo "not met"; fi)"
done
exit "$BENCH_FAILED"
