#!/bin/bash
# virtio-blk read throughput on this machine: the host reading a file in the page cache,
# kdom serving that file to the virtio-blk-bench probe guest, and QEMU serving the same
# file to the same guest.
#
#   bench/virtio-blk.sh [-n N] [--mib M] [--rand OPS] [--no-qemu] [--no-local]
#                       [--l1 | --l1-log FILE] [--l1-n N]
#
# The disk: an M MiB file (default 256) written by `kdom-bench disk-pattern` (every 4 KiB
# block starts with its number) under build/bench/results/<run>/, read once with cat so
# that it is in the page cache (fincore shows how much of it is, before the first round),
# removed at the end.
# Workloads, each a figure per VMM and per round:
#   rand4k qd=1    OPS (default 20000) 4 KiB reads at random 4 KiB-aligned offsets, one
#                  at a time (IOPS);
#   rand4k qd=32   the same with 32 requests in flight (IOPS);
#   seq128k qd=1   the whole file in 128 KiB reads, one at a time (MB/s, 10^6 bytes);
#   seq128k qd=32  the same, 32 in flight (MB/s);
#   getid qd=1     as many GET_ID requests as rand4k, one at a time (IOPS): the round
#                  trip through the VMM without file I/O, for the breakdown of rand4k qd=1.
# - host: `kdom-bench pread FILE BYTES COUNT random|seq`: one pread() a request (the file
#   opened O_NOATIME, as kdom opens images), timed
#   around the loop (CLOCK_MONOTONIC) after 200 ms of unmeasured warm-up reads (the first
#   ~100 ms of work after a pause run 2-5x slower on our VMs), same counts and sizes. There is no deep-queue
#   host figure: the qd=32 rows compare against the same one-at-a-time host figure.
#   With fio installed, fio's psync runs of the same workloads are shown too, as a
#   cross-check only: on our VMs fio's own per-I/O overhead (~100 us) dwarfs the read.
# - kdom: `kdom run --kernel virtio-blk-bench.elf --memory 128 --disk FILE` (default settings:
#   adaptive polling up to 32 us), and the same with `--disk FILE,poll=0` (column "kdom poll=0").
#   The probe's driver skips notifications while the device polls (used flags NO_NOTIFY), as
#   Linux's does, and reads the MMIO status register only now and then while it waits.
# - QEMU: `qemu-system-x86_64 -accel kvm -M pc -m 128 -nodefaults -drive
#   file=FILE,if=none,format=raw (cache=writeback, aio=threads: QEMU's defaults, served
#   from the page cache like kdom) -device virtio-blk-pci,disable-legacy=on
#   -kernel virtio-blk-bench.elf` (PVH boot through SeaBIOS, slow on kvm_pvm but
#   outside the timed phases).
# The guest's figures are its own: rdtsc around each phase alone (VM start-up excluded),
# turned into time with the TSC rate `kdom-bench tsc-khz` measures here (the guest's TSC
# runs at the host's rate). Under kdom the probe's boot-timer marks around each phase
# give a wall-clock cross-check (column "kdom wall"). Every block read is checked
# against its number, by the guest and by kdom-bench pread.
# N rounds (default 5), host, kdom and QEMU in turn (order rotated every round); medians.
# Targets (of the medians): kdom >= 80% of the host, and >= 1.0x QEMU.
#
# In the test host (--l1: its own scripts/test-host.sh --with-qemu run, ~5 minutes;
# --l1-log FILE: the console log of a run of bench/l1-suite.sh disk, from run-all.sh):
# the stock Linux guest (guest/init kdom.action=disk-bench) reads its /dev/vda with busybox
# dd, O_DIRECT, under kdom and under QEMU -M pc (virtio-blk-pci), both serving a 64 MiB
# file in L1's tmpfs: all of it in 128 KiB reads, then 16 MiB in 4 KiB reads; the guest's
# /proc/uptime times each (10 ms steps). --l1-n rounds per VMM (default 3), taking turns.
# TCG makes the absolute figures meaningless: read the ratio kdom/QEMU (aim >= 1.0).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=5 MIB=256 RAND=20000 QEMU_ON=1 QD=32 LOCAL=1 L1=0 L1_LOG='' L1_N=3
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?}; shift 2 ;;
	--mib) MIB=${2:?}; shift 2 ;;
	--rand) RAND=${2:?}; shift 2 ;;
	--no-qemu) QEMU_ON=0; shift ;;
	--no-local) LOCAL=0; shift ;;
	--l1) L1=1; shift ;;
	--l1-log) L1_LOG=${2:?}; shift 2 ;;
	--l1-n) L1_N=${2:?}; shift 2 ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done
bench_need_count "$N" -n
[[ "$MIB" =~ ^[0-9]+$ ]] && [ "$MIB" -ge 1 ] && [ "$MIB" -le 4096 ] || bench_die "--mib wants 1..4096"
bench_need_count "$RAND" --rand

[ -z "$L1_LOG" ] || [ -r "$L1_LOG" ] || bench_die "cannot read the test-host log $L1_LOG"
bench_need_count "$L1_N" --l1-n

# local_part: host, kdom and QEMU on this machine.
local_part() {
	QEMU_BIN=${QEMU:-qemu-system-x86_64}
	if [ "$QEMU_ON" = 1 ] && ! command -v "$QEMU_BIN" >/dev/null; then
		echo "${0##*/}: warning: $QEMU_BIN not found: QEMU column left out" >&2
		QEMU_ON=0
	fi
	FIO=$(command -v fio || true)
	bench_header "virtio-blk reads (bench/virtio-blk.sh), host vs kdom vs QEMU on this machine, ${MIB} MiB file in the page cache, N=$N; raw logs in $out"
	GUEST=$GUESTS/virtio-blk-bench.elf
	[ -e "$GUEST" ] || bench_die "$GUEST is missing"
	tsc_khz=$("$KB" tsc-khz) || bench_die "cannot measure the TSC rate"
	img=$out/disk.img
	# The image goes at the end, with bench_snapshot's copies of the binaries (unless run-all.sh owns those).
	trap 'rm -f "$img"; [ -n "${BENCH_SNAPSHOT_BIN:-}" ] || rm -rf "$out/bin"' EXIT
	"$KB" disk-pattern "$img" "$MIB" || bench_die "cannot write $img"
	cat "$img" >/dev/null
	echo "   TSC: $tsc_khz kHz; disk $img: $(fincore -n -o RES,SIZE "$img" 2>/dev/null | awk '{print $1 " of " $2 " in the page cache"}')"
	echo "   QEMU: $(if [ "$QEMU_ON" = 1 ]; then "$QEMU_BIN" --version | head -n1; else echo 'not run'; fi); fio: ${FIO:-not installed}"

	seq_ops=$((MIB * 1024 / 128))
	f=$out/runs.txt # "<who> <phase> <round> <value>" (IOPS or MB/s), "kdom-wall <phase> <round> <ms>"
	: >"$f"
	phases=(rand4k-qd1 rand4k-qd32 seq128k-qd1 seq128k-qd32 getid-qd1)

	# value PHASE OPS BYTES NS: the phase's figure (IOPS for rand, MB/s for seq).
	value() {
		case $1 in
		rand* | getid*) awk -v o="$2" -v t="$4" 'BEGIN { printf "%.0f", o / (t / 1e9) }' ;;
		*) awk -v b="$3" -v t="$4" 'BEGIN { printf "%.1f", b / 1e6 / (t / 1e9) }' ;;
		esac
	}

	host() {
		local r=$1 line ns ph bytes count order
		for ph in "${phases[@]}"; do
			case $ph in
			rand4k-qd1) bytes=4096 count=$RAND order=random ;;
			seq128k-qd1) bytes=131072 count=$seq_ops order=seq ;;
			*) continue ;;
			esac
			line=$("$KB" pread "$img" "$bytes" "$count" "$order" "$r" 2>&1) ||
				{ bench_fail "kdom-bench pread $bytes $count $order: $line"; return 1; }
			ns=$(echo "$line" | tr ' ' '\n' | sed -n 's/^ns=//p')
			echo "host $ph $r $(value "$ph" "$count" $((bytes * count)) "$ns")" >>"$f"
			if [ -n "$FIO" ]; then
				line=$("$FIO" --name=vblk --filename="$img" --bs="$bytes" --ioengine=psync --size="${MIB}M" \
					--number_ios="$count" --norandommap --randrepeat=0 \
					--rw="$([ "$order" = random ] && echo randread || echo read)" \
					--output-format=terse --terse-version=3 2>&1) || { bench_fail "fio: $line"; return 1; }
				# terse v3: field 7 read bandwidth (KiB/s), 8 read IOPS.
				case $ph in
				rand*) echo "fio $ph $r $(echo "$line" | cut -d';' -f8)" >>"$f" ;;
				*) echo "fio $ph $r $(echo "$line" | cut -d';' -f7 | awk '{ printf "%.1f", $1 * 1024 / 1e6 }')" >>"$f" ;;
				esac
			fi
		done
	}

	# parse WHO ROUND LOG: the probe's phase lines into runs.txt.
	parse() {
		local who=$1 r=$2 log=$3 name qd ops bytes cycles ph i=0 t0 t1
		grep -q '^PROBE virtio-blk-bench: PASS' "$log" ||
			{ bench_fail "$who round $r: no PASS line ($(grep -a -m1 'FAIL\|error' "$log"); log $log)"; return 1; }
		while read -r _ name qd ops bytes cycles; do
			ph=$name-qd${qd#qd=} ops=${ops#ops=} bytes=${bytes#bytes=} cycles=${cycles#cycles=}
			echo "$who $ph $r $(value "$ph" "$ops" "$bytes" "$(awk -v c="$cycles" -v k="$tsc_khz" 'BEGIN { printf "%.0f", c / k * 1e6 }')")" >>"$f"
			if [ "$who" = kdom ]; then
				t0=$(sed -n "s/.*boot-timer: \([0-9.]*\) ms since start (value 0x3$((2 * i)))/\1/p" "$log")
				t1=$(sed -n "s/.*boot-timer: \([0-9.]*\) ms since start (value 0x3$((2 * i + 1)))/\1/p" "$log")
				[ -n "$t0" ] && [ -n "$t1" ] &&
					echo "kdom-wall $ph $r $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" >>"$f"
				echo "kdom-tsc $ph $r $(awk -v c="$cycles" -v k="$tsc_khz" 'BEGIN { printf "%.3f", c / k }')" >>"$f"
			fi
			i=$((i + 1))
		done < <(grep -a '^vblk-bench [a-z0-9]* qd=' "$log")
	}

	# kdom ROUND [nopoll]: kdom as configured by default, or with polling off (poll=0).
	kdom() {
		local r=$1 who=kdom${2:+-$2} rc=0
		local log=$out/$who-$r.log
		timeout 300 "$KDOM" run --kernel "$GUEST" --memory 128 --console stdio --disk "$img${2:+,poll=0}" \
			--cmdline "rand=$RAND qd=$QD seed=$r" >"$log" 2>&1 || rc=$?
		[ "$rc" = 1 ] || { bench_fail "$who round $r exited with status $rc (want 1; log $log)"; return 1; }
		parse "$who" "$r" "$log"
	}

	qemu() {
		local r=$1 log=$out/qemu-$1.log rc=0
		timeout 300 "$QEMU_BIN" -accel kvm -M pc -m 128 -smp 1 -nodefaults -no-user-config \
			-display none -serial stdio -monitor none -no-reboot \
			-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
			-drive "file=$img,if=none,id=disk0,format=raw" -device virtio-blk-pci,drive=disk0,disable-legacy=on \
			-kernel "$GUEST" -append "rand=$RAND qd=$QD seed=$r" >"$log" 2>&1 || rc=$?
		[ "$rc" = 1 ] || { bench_fail "QEMU round $r exited with status $rc (want 1; log $log)"; return 1; }
		parse qemu "$r" "$log"
	}

	for ((r = 1; r <= N; r++)); do
		case $((r % 3)) in
		1) host "$r"; kdom "$r"; [ "$QEMU_ON" = 0 ] || qemu "$r"; kdom "$r" nopoll ;;
		2) kdom "$r"; kdom "$r" nopoll; [ "$QEMU_ON" = 0 ] || qemu "$r"; host "$r" ;;
		0) kdom "$r" nopoll; [ "$QEMU_ON" = 0 ] || qemu "$r"; host "$r"; kdom "$r" ;;
		esac
	done

	col() { awk -v w="$1" -v p="$2" '$1 == w && $2 == p { print $4 }' "$f"; }
	med() { local v; v=$(col "$1" "$2"); [ -n "$v" ] && echo "$v" | bench_stat_values median; }
	echo "-- local: this machine's /dev/kvm; medians of N=$N rounds (IOPS for rand4k, MB/s = 10^6 bytes/s for seq128k; the host column is one pread at a time, also on the qd32 rows)"
	echo "   kdom: default settings (adaptive polling, up to 32 us); kdom poll=0: the same with polling off"
	bench_row "workload" host kdom QEMU kdom/host kdom/QEMU "kdom poll=0" "fio (host)"
	for ph in "${phases[@]}"; do
		hp=${ph%-qd*}-qd1 # the host runs one at a time
		[ "$ph" != getid-qd1 ] || continue
		h=$(med host "$hp") k=$(med kdom "$ph") q=$(med qemu "$ph") n=$(med kdom-nopoll "$ph") fi=$(med fio "$hp")
		bench_row "$ph" "$(bench_fmt "$h" 0)" "$(bench_fmt "$k" 0)" "$(bench_fmt "$q" 0)" \
			"$(bench_fmt "$(bench_ratio "$k" "$h")" 3)" "$(bench_fmt "$(bench_ratio "$k" "$q")" 3)" \
			"$(bench_fmt "$n" 0)" "$(bench_fmt "$fi" 0)"
	done
	k=$(med kdom getid-qd1) q=$(med qemu getid-qd1)
	bench_row "getid-qd1 (GET_ID: no file I/O)" "" "$(bench_fmt "$k" 0)" "$(bench_fmt "$q" 0)" "" \
		"$(bench_fmt "$(bench_ratio "$k" "$q")" 3)" "$(bench_fmt "$(med kdom-nopoll getid-qd1)" 0)" ""
	# us per request = 1e6 / IOPS (at qd=1).
	us() { [ -n "$1" ] && awk -v i="$1" 'BEGIN { printf "%.1f", 1e6 / i }'; }
	echo "   per request at qd=1 (us, from the medians): host pread $(bench_fmt "$(us "$(med host rand4k-qd1)")" 1);" \
		"kdom rand4k $(bench_fmt "$(us "$(med kdom rand4k-qd1)")" 1), GET_ID (no file I/O)" \
		"$(bench_fmt "$(us "$(med kdom getid-qd1)")" 1); kdom poll=0 rand4k $(bench_fmt "$(us "$(med kdom-nopoll rand4k-qd1)")" 1)," \
		"GET_ID $(bench_fmt "$(us "$(med kdom-nopoll getid-qd1)")" 1); QEMU rand4k $(bench_fmt "$(us "$(med qemu rand4k-qd1)")" 1)," \
		"GET_ID $(bench_fmt "$(us "$(med qemu getid-qd1)")" 1)"
	echo "   per-round figures (host, kdom, kdom poll=0, QEMU):"
	for ph in "${phases[@]}"; do
		hp=${ph%-qd*}-qd1
		printf '     %-14s host %s | kdom %s | poll=0 %s | QEMU %s\n' "$ph" "$(col host "$hp" | tr '\n' ' ')" \
			"$(col kdom "$ph" | tr '\n' ' ')" "$(col kdom-nopoll "$ph" | tr '\n' ' ')" "$(col qemu "$ph" | tr '\n' ' ')"
	done
	echo "   cross-check, kdom phase time (ms, medians): guest TSC vs kdom's boot-timer marks (wall clock)"
	for ph in "${phases[@]}"; do
		printf '     %-14s tsc %s  wall %s\n' "$ph" "$(bench_fmt "$(med kdom-tsc "$ph")" 1)" "$(bench_fmt "$(med kdom-wall "$ph")" 1)"
	done
	for ph in rand4k-qd1 seq128k-qd1 rand4k-qd32 seq128k-qd32; do
		hp=${ph%-qd*}-qd1
		rh=$(bench_ratio "$(med kdom "$ph")" "$(med host "$hp")")
		rq=$(bench_ratio "$(med kdom "$ph")" "$(med qemu "$ph")")
		echo "   target: $ph kdom >= 80% of the host: $(at_least "$rh" 0.8) ($(bench_fmt "$rh" 3)); >= 1.0x QEMU: $(at_least "$rq" 1.0) ($(bench_fmt "$rq" 3))"
		bench_summary virtio-blk "local: $ph kdom/host" "$(bench_fmt "$rh" 3)x" ">= 0.8x" "$(at_least "$rh" 0.8)"
		bench_summary virtio-blk "local: $ph kdom/QEMU" "$(bench_fmt "$rq" 3)x" ">= 1.0x" "$(at_least "$rq" 1.0)"
	done
}

# l1_part LOG: the Linux guest's dd figures from the test host's console log.
l1_part() {
	local log=$1 vmm k q r label
	echo "-- test host (L1, emulated-SVM KVM under TCG): Linux guest dd of /dev/vda, O_DIRECT, kdom vs QEMU -M pc"
	bench_l1_info "$log"
	# "<vmm> <figure> <MB/s>" per run.
	for vmm in kdom qemu-pc; do
		grep -a "^l1.disk.$vmm run [0-9]*/[0-9]*: " "$log" | tr ' ' '\n' | awk -v v="$vmm" -F= '
			/^seq128k_bytes=/ { b128 = $2 } /^seq128k_ms=/ { m128 = $2 }
			/^seq4k_bytes=/ { b4 = $2 } /^seq4k_ms=/ { m4 = $2
				if (b128 ~ /^[0-9]+$/ && m128 ~ /^[0-9]+$/ && m128 > 0) print v, "seq128k", b128 / m128 / 1000
				if (b4 ~ /^[0-9]+$/ && m4 ~ /^[0-9]+$/ && m4 > 0) print v, "seq4k", b4 / m4 / 1000 }'
	done >"$out/l1-disk.txt"
	lcol() { awk -v w="$1" -v p="$2" '$1 == w && $2 == p { print $3 }' "$out/l1-disk.txt"; }
	lmed() { local v; v=$(lcol "$1" "$2"); [ -n "$v" ] && echo "$v" | bench_stat_values median; }
	bench_row "figure (MB/s, medians)" kdom "QEMU -M pc" kdom/QEMU "n (kdom)" "n (QEMU)"
	for label in seq128k seq4k; do
		k=$(lmed kdom $label) q=$(lmed qemu-pc $label)
		bench_row "$label, dd iflag=direct" "$(bench_fmt "$k" 2)" "$(bench_fmt "$q" 2)" \
			"$(bench_fmt "$(bench_ratio "$k" "$q")" 3)" "$(lcol kdom $label | wc -l)" "$(lcol qemu-pc $label | wc -l)"
		r=$(bench_ratio "$k" "$q")
		echo "   target: L1 Linux $label kdom >= 1.0x QEMU: $(at_least "$r" 1.0) ($(bench_fmt "$r" 3))"
		bench_summary virtio-blk "L1: Linux dd $label kdom/QEMU" "$(bench_fmt "$r" 3)x" ">= 1.0x" "$(at_least "$r" 1.0)"
	done
	for vmm in kdom qemu-pc; do
		[ "$(bench_runs "$log" "l1.disk.$vmm")" -gt 0 ] || bench_fail "no l1.disk.$vmm runs in the test-host log $log"
	done
	if grep -a -q '^l1-suite: FAILED: .*disk-bench' "$log"; then
		bench_fail "a disk-bench run in the test host failed (see $log)"
	fi
}

# at_least VALUE LIMIT: verdict for a ">=" target.
at_least() {
	if [ -z "$1" ] || [ "$1" = "-" ]; then echo "n/a"
	elif awk -v v="$1" -v l="$2" 'BEGIN { exit !(v >= l) }'; then echo "met"
	else echo "NOT met"; fi
}

bench_start virtio-blk
[ "$LOCAL" = 0 ] || local_part
[ "$LOCAL" = 1 ] || bench_header "virtio-blk reads (bench/virtio-blk.sh), test host only; raw logs in $out"
if [ "$L1" = 1 ] && [ -z "$L1_LOG" ]; then
	L1_LOG=$out/l1-console.log
	echo "-- one test-host run (Linux guest disk reads, N=$L1_N)"
	BENCH_DISK_N=$L1_N BENCH_VMMS="kdom qemu-pc" bench_run_l1 "$L1_LOG" disk || true
fi
[ -z "$L1_LOG" ] || l1_part "$L1_LOG"
exit "$BENCH_FAILED"
