#!/bin/sh
# The part of the benchmarks that runs inside the nested test host (L1, see
# scripts/test-host.sh), where /dev/kvm is real (emulated-SVM) KVM: kdom next to
# QEMU on the same guests, in the same L1, interleaved round by round so that all
# VMMs see the same conditions. Plain POSIX sh: L1 has busybox only. Started by
# bench/*.sh through scripts/test-host.sh; it prints one line per run (from
# kdom-bench, labels "l1.<part>.<vmm>") on L1's console, which the host side
# parses and turns into statistics.
#
#   sh bench/l1-suite.sh PART...     PART: start, memory, linux, disk
# Environment (given on the command line):
#   BENCH_START_N   repeats per VMM for start latency (default 20)
#   BENCH_MEM_N     repeats per VMM for memory overhead (default 3)
#   BENCH_LINUX_N   repeats per VMM for the Linux boot (default 3)
#   BENCH_DISK_N    repeats per VMM for the Linux guest's disk reads (default 3)
#   BENCH_VMMS      which VMMs (default "kdom qemu-microvm qemu-pc")
#   BENCH_QEMU_CPU  QEMU's -cpu for the Linux boot (default host)
# A failed measurement prints "l1-suite: FAILED: ..." with the run's last output
# and the suite goes on with the next one; the exit status is 1 if any failed.
set -u

cd /kdom || exit 1
B=/kdom/build
KB=$B/bench/kdom-bench
G=$B/tests/guests
START_N=${BENCH_START_N:-20}
MEM_N=${BENCH_MEM_N:-3}
LINUX_N=${BENCH_LINUX_N:-3}
DISK_N=${BENCH_DISK_N:-3}
VMMS=${BENCH_VMMS:-kdom qemu-microvm qemu-pc}
QEMU_CPU=${BENCH_QEMU_CPU:-host}
LOG=/tmp/bench-l1.log
failures=0

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	echo "l1.info: no QEMU in this test host (scripts/test-host.sh --with-qemu): QEMU skipped"
	VMMS=kdom
fi
echo "l1.info: kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) mem_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) vmms=$(echo $VMMS | tr ' ' ,)"
case " $VMMS " in *" qemu-"*) echo "l1.info: qemu=$(qemu-system-x86_64 --version | head -n 1)" ;; esac

# measure WHAT KDOM-BENCH-ARGS...: one kdom-bench run; on failure say so and go on.
measure() {
	what=$1
	shift
	: >"$LOG"
	if ! "$KB" run --no-stats --log "$LOG" "$@"; then
		echo "l1-suite: FAILED: $what; last lines of its output:"
		tail -n 30 "$LOG" | sed 's/^/l1-suite:   | /'
		failures=$((failures + 1))
	fi
}

# vmm_command VMM MACHINE-ARGS -- GUEST-ARGS: the command line for one VMM.
# kdom: `kdom run ...`; qemu-M: KVM, no default devices, no config, no display.
qemu_base() {
	echo "qemu-system-x86_64 -accel kvm -M $1 -nographic -nodefaults -no-user-config"
}
debug_exit="-device isa-debug-exit,iobase=0xf4,iosize=0x04"

part_start() {
	echo "l1.start: N=$START_N"
	# Start to the guest's first instructions, by kdom's own clock and by ours (kdom only:
	# the boot-timer port is a kdom device).
	case " $VMMS " in *" kdom "*)
		measure "kdom first-mark" --label l1.start.kdom-first --repeat "$START_N" --warmup 1 --status 1 \
			--timeout 60 --mark 'boot-timer:' --capture 'vmm_ms=boot-timer: * ms' \
			--time 'exitmsg=to the debug-exit port' -- \
			kdom run --kernel $B/bench/first-mark.elf --memory 128
		;;
	esac
	# Start to probe exit, the VMMs interleaved round by round.
	i=0
	while [ "$i" -le "$START_N" ]; do
		label=l1.start
		[ "$i" = 0 ] && label=l1.warmup # round 0 warms caches, not counted
		for vmm in $VMMS; do
			case $vmm in
			kdom)
				measure "kdom first-instruction" --label $label.kdom --status 1 --timeout 60 -- \
					kdom run --kernel $G/first-instruction.elf --memory 128
				;;
			qemu-*)
				# shellcheck disable=SC2046
				measure "qemu -M ${vmm#qemu-} first-instruction" --label $label.$vmm --status 1 --timeout 120 -- \
					$(qemu_base ${vmm#qemu-}) -m 128 $debug_exit -kernel $G/first-instruction.elf
				;;
			esac
		done
		i=$((i + 1))
	done
}

part_memory() {
	echo "l1.memory: N=$MEM_N"
	# Sample 2 s after the guest's PASS line (L1 is slow; let the VMM settle), then stop it.
	i=1
	while [ "$i" -le "$MEM_N" ]; do
		for vmm in $VMMS; do
			set -- --label l1.memory.$vmm --timeout 180 --mark 'touched' --sample-after-mark 2000 \
				--ram-map-min-kib 131072 --capture 'pages=touched * pages'
			case $vmm in
			kdom)
				measure "kdom idle-after-touch" "$@" -- \
					kdom run --kernel $G/idle-after-touch.elf --memory 128 --vcpus 1 --console stdio
				;;
			qemu-*)
				# shellcheck disable=SC2046
				measure "qemu -M ${vmm#qemu-} idle-after-touch" "$@" -- \
					$(qemu_base ${vmm#qemu-}) -m 128 -smp 1 -serial stdio $debug_exit \
					-kernel $G/idle-after-touch.elf
				;;
			esac
		done
		i=$((i + 1))
	done
}

part_linux() {
	echo "l1.linux: N=$LINUX_N"
	kernel=$B/guest/vmlinuz
	initrd=$B/guest/initramfs.cpio.gz
	cmdline="console=ttyS0 kdom.action=poweroff"
	i=1
	while [ "$i" -le "$LINUX_N" ]; do
		for vmm in $VMMS; do
			# The init's console line is looked for, not required, so that a run without it
			# still gives its other figures; the host side judges.
			set -- --label l1.linux.$vmm --status 0 --timeout 240 \
				--time 'init=kdom-guest: init reached' --time 'timer=boot-timer:' \
				--capture 'uptime_s=uptime_s=*'
			case $vmm in
			kdom)
				measure "kdom Linux boot" "$@" -- \
					kdom run --kernel "$kernel" --initrd "$initrd" --memory 256 --vcpus 1 \
					--cmdline "$cmdline" --console stdio
				# What the guest kernel said about its console (for diagnosing a missing init line).
				grep -a -i -e 'initial console' -e 'ttyS0 at' "$LOG" | head -n 3 | sed 's/^/l1.note.linux.kdom: /'
				;;
			qemu-*)
				# shellcheck disable=SC2046
				measure "qemu -M ${vmm#qemu-} Linux boot" "$@" -- \
					$(qemu_base ${vmm#qemu-}) -cpu "$QEMU_CPU" -m 256 -smp 1 -serial stdio -no-reboot \
					-kernel "$kernel" -initrd "$initrd" -append "$cmdline"
				;;
			esac
		done
		i=$((i + 1))
	done
}

# The stock Linux guest reads its virtio-blk disk (/dev/vda) with dd, O_DIRECT
# (guest/init kdom.action=disk-bench), under kdom and QEMU -M pc (virtio-blk-pci; QEMU's
# default cache=writeback, aio=threads), both serving the same 64 MiB file in L1's tmpfs.
part_disk() {
	echo "l1.disk: N=$DISK_N"
	kernel=$B/guest/vmlinuz
	initrd=$B/guest/initramfs.cpio.gz
	cmdline="console=ttyS0 kdom.action=disk-bench"
	img=/tmp/vblk-bench.img
	dd if=/dev/zero of=$img bs=1M count=64 2>/dev/null || { echo "l1-suite: FAILED: cannot make $img"; failures=$((failures + 1)); return; }
	cat $img >/dev/null
	i=1
	while [ "$i" -le "$DISK_N" ]; do
		for vmm in $VMMS; do
			set -- --label l1.disk.$vmm --status 0 --timeout 300 --mark 'kdom-guest: disk-bench' \
				--capture 'seq128k_bytes=seq128k_bytes=*' --capture 'seq128k_ms=seq128k_ms=*' \
				--capture 'seq4k_bytes=seq4k_bytes=*' --capture 'seq4k_ms=seq4k_ms=*'
			case $vmm in
			kdom)
				measure "kdom Linux disk-bench" "$@" -- \
					kdom run --kernel "$kernel" --initrd "$initrd" --memory 256 --vcpus 1 \
					--cmdline "$cmdline" --console stdio --disk $img
				;;
			qemu-pc)
				# shellcheck disable=SC2046
				measure "qemu -M pc Linux disk-bench" "$@" -- \
					$(qemu_base pc) -cpu "$QEMU_CPU" -m 256 -smp 1 -serial stdio -no-reboot \
					-drive file=$img,if=none,id=disk0,format=raw -device virtio-blk-pci,drive=disk0 \
					-kernel "$kernel" -initrd "$initrd" -append "$cmdline"
				;;
			esac
		done
		i=$((i + 1))
	done
	rm -f $img
}

[ $# -gt 0 ] || set -- start memory linux
parts=$*
for part in $parts; do
	case "$part" in
	start) part_start ;;
	memory) part_memory ;;
	linux) part_linux ;;
	disk) part_disk ;;
	*)
		echo "l1-suite: FAILED: unknown part '$part'"
		failures=$((failures + 1))
		;;
	esac
done
echo "l1-suite: done, $failures failed measurement(s)"
[ "$failures" = 0 ]
