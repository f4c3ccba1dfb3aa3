#!/bin/sh
# End-to-end scenarios: boot Debian's stock kernel with the default guest initramfs
# (guest/init) under a VMM. Runs INSIDE the nested test host (busybox sh), started by
# tests/e2e/run-e2e.sh through scripts/test-host.sh.
#
#   sh scenarios.sh VMM LIMIT SCENARIO...
#     VMM       kdom (the VMM under test) or qemu (reference: same guest under QEMU/KVM)
#     LIMIT     seconds allowed for each guest run
#     SCENARIO  boot-1vcpu boot-2vcpu boot-pvh reboot panic debug-exit disk rng net
#
# Reports, one line each (parsed by run-e2e.sh):
#   E2E-CHECK <scenario>.<check> PASS|FAIL <detail>
#   E2E-SCENARIO <scenario> PASS|FAIL <seconds>
# and exits non-zero if any check failed.

vmm=$1
limit=$2
shift 2
guest=${KDOM_GUEST_DIR:-/kdom/build/guest}
work=/tmp/e2e
mkdir -p "$work"
any_failed=0

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# check NAME DETAIL TEST...: run TEST, report NAME as PASS or FAIL with DETAIL.
check() {
	name=$1 detail=$2
	shift 2
	if "$@"; then
		echo "E2E-CHECK $scenario.$name PASS $detail"
	else
		echo "E2E-CHECK $scenario.$name FAIL $detail"
		failed=1
	fi
}

# boot KERNEL VCPUS MEMORY ACTION: run one guest under $vmm with kdom.action=ACTION.
# KERNEL "default" means kdom's default guest (no --kernel/--initrd, default sizes).
# Sets rc, secs, cpus, mem_kib; leaves the console in $work/console, the VMM's stderr in
# $work/stderr.
boot() {
	kernel=$1 vcpus=$2 memory=$3 action=$4
	cmdline="console=ttyS0 kdom.action=$action${extra_cmdline:+ $extra_cmdline}"
	t0=$(uptime_s)
	case "$vmm" in
	kdom)
		if [ "$kernel" = default ]; then
			set -- --cmdline "$cmdline"
		else
			set -- --kernel "$guest/$kernel" --initrd "$guest/initramfs.cpio.gz" \
				--cmdline "$cmdline" --vcpus "$vcpus" --memory "$memory"
		fi
		[ -z "${disk:-}" ] || set -- "$@" --disk "$disk"
		[ -z "${rng:-}" ] || set -- "$@" --rng
		[ -z "${net_tap:-}" ] || set -- "$@" --net "tap=$net_tap,mac=$net_mac"
		echo "E2E: ${in_netns:+$in_netns }kdom run $* --console stdio"
		$in_netns timeout -k 5 "$limit" kdom run "$@" --console stdio </dev/null >"$work/console" 2>"$work/stderr"
		rc=$?
		;;
	qemu)
		[ "$kernel" = default ] && kernel=vmlinuz
		set -- -accel kvm -M pc -smp "$vcpus" -m "$memory" -nodefaults -display none \
			-no-user-config -serial stdio -no-reboot -device pvpanic \
			-device isa-debug-exit,iobase=0xf4,iosize=0x04 -action panic=exit-failure \
			-kernel "$guest/$kernel" -initrd "$guest/initramfs.cpio.gz" -append "$cmdline"
		# KDOM_E2E_QEMU_CPU (e.g. host, as kdom gives its guests): QEMU's CPU model.
		[ -z "${KDOM_E2E_QEMU_CPU:-}" ] || set -- "$@" -cpu "$KDOM_E2E_QEMU_CPU"
		[ -z "${net_tap:-}" ] || set -- "$@" -netdev "tap,id=net0,ifname=$net_tap,script=no,downscript=no" \
			-device "virtio-net-pci,netdev=net0,mac=$net_mac"
		echo "E2E: ${in_netns:+$in_netns }qemu-system-x86_64 $*"
		$in_netns timeout -k 5 "$limit" qemu-system-x86_64 "$@" </dev/null >"$work/console" 2>"$work/stderr"
		rc=$?
		;;
	esac
	t1=$(uptime_s)
	secs=$(echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}')
	tr -d '\r' <"$work/console" >"$work/console.txt"
	line=$(grep -m1 'kdom-guest: init reached' "$work/console.txt")
	cpus=$(echo "$line" | sed -n 's/.*cpus=\([0-9]*\).*/\1/p')
	mem_kib=$(echo "$line" | sed -n 's/.*mem_kib=\([0-9]*\).*/\1/p')
	init_at=$(echo "$line" | sed -n 's/.*uptime_s=\([0-9.]*\).*/\1/p')
	clock=$(echo "$line" | sed -n 's/.* clock=\([^ ]*\).*/\1/p')
	guest_epoch=$(echo "$line" | sed -n 's/.* epoch=\([0-9]*\).*/\1/p')
	serial_irqs=$(sed -n 's/.*kdom-guest: serial_irqs=\([0-9]*\).*/\1/p' "$work/console.txt" | head -n1)
	timer=$(sed -n 's/.*boot-timer: \([0-9.]*\) ms.*/\1/p' "$work/stderr" | head -n1)
	echo "E2E-TIME $scenario: guest run took ${secs}s (init reached at ${init_at:-?}s guest uptime${timer:+, kdom boot-timer ${timer} ms}), exit status $rc"
	[ "$(echo "$secs $limit" | awk '{print ($1 >= $2 - 1)}')" = 0 ] || echo "E2E: $scenario: the guest run hit the ${limit}s limit and was killed"
}

# Expected exit status of the VMM for each way the guest ends.
expect_rc() {
	case "$vmm:$1" in
	kdom:poweroff) echo 0 ;;
	kdom:reboot) echo 2 ;;
	kdom:panic) echo 3 ;;
	qemu:poweroff | qemu:reboot) echo 0 ;; # -no-reboot: QEMU exits 0 on both
	qemu:panic) echo 1 ;;                  # -action panic=exit-failure
	*:exit:*) echo $(((${1#exit:} << 1) | 1)) ;;
	esac
}

in_range() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

# The memory Linux reports: at most what was given, at least 25/32 of it (256 -> 200 MiB).
check_boot() {
	want_cpus=$1 memory=$2
	check init "console shows 'kdom-guest: init reached'" [ -n "$line" ]
	check cpus "guest sees cpus=${cpus:-?}, want $want_cpus" [ "$cpus" = "$want_cpus" ]
	lo=$((memory * 1024 * 25 / 32)) hi=$((memory * 1024))
	check memory "MemTotal ${mem_kib:-?} kB for --memory $memory MiB, want $lo..$hi kB" in_range "$mem_kib" "$lo" "$hi"
	check kvmclock "guest clocksource ${clock:-?}, want kvm-clock" [ "$clock" = kvm-clock ]
	check serial-irq "serial port interrupts ${serial_irqs:-?}, want > 0" in_range "${serial_irqs:-0}" 1 1000000000
	now=$(date +%s)
	check rtc "guest time from the RTC ${guest_epoch:-?}, test host's $now (within 300 s)" \
		in_range "${guest_epoch:-0}" $((now - 300)) $((now + 300))
}

dump_logs() {
	echo "E2E: ---- $scenario: last 60 lines of the guest console ----"
	tail -n 60 "$work/console.txt" | sed 's/^/  | /'
	echo "E2E: ---- $scenario: $vmm's stderr (last 30 lines) ----"
	tail -n 30 "$work/stderr" | sed 's/^/  ! /'
}

if [ ! -c /dev/kvm ]; then
	echo "E2E-CHECK setup.kvm FAIL /dev/kvm is missing in the test host"
	exit 1
fi
if [ "$vmm" = kdom ] && ! command -v kdom >/dev/null; then
	echo "E2E-CHECK setup.kdom FAIL no kdom binary in the test host (build it: build/kdom, statically linked)"
	exit 1
fi

for scenario in "$@"; do
	failed=0
	echo "E2E: ==== $scenario ($vmm) ===="
	case "$scenario" in
	boot-1vcpu)
		boot default 1 256 poweroff
		check_boot 1 256
		check exit "exit status $rc after poweroff, want $(expect_rc poweroff)" [ "$rc" = "$(expect_rc poweroff)" ]
		# The guest's user-space port write faults under QEMU/KVM in the test host (a
		# TCG nested-SVM quirk); check the boot timer only if the write went out.
		if grep -q 'kdom-guest: note: user-space port I/O' "$work/console.txt"; then
			echo "E2E-INFO $scenario: the guest's write to the boot-timer port faulted, boot-timer not checked"
		elif [ "$vmm" = kdom ]; then
			check boot-timer "kdom logged a boot-timer line (${timer:-none})" [ -n "$timer" ]
		fi
		;;
	boot-2vcpu)
		boot vmlinuz 2 512 poweroff
		check_boot 2 512
		check exit "exit status $rc after poweroff, want $(expect_rc poweroff)" [ "$rc" = "$(expect_rc poweroff)" ]
		;;
	boot-pvh)
		boot vmlinux 1 256 poweroff
		check_boot 1 256
		check exit "exit status $rc after poweroff, want $(expect_rc poweroff)" [ "$rc" = "$(expect_rc poweroff)" ]
		;;
	reboot)
		boot vmlinuz 1 256 reboot
		check init "console shows 'kdom-guest: init reached'" [ -n "$line" ]
		check exit "exit status $rc after reboot, want $(expect_rc reboot)" [ "$rc" = "$(expect_rc reboot)" ]
		;;
	panic)
		boot vmlinuz 1 256 panic
		check init "console shows 'kdom-guest: init reached'" [ -n "$line" ]
		check console "console shows 'Kernel panic'" grep -q 'Kernel panic' "$work/console.txt"
		check exit "exit status $rc after panic, want $(expect_rc panic)" [ "$rc" = "$(expect_rc panic)" ]
		;;
	disk)
		# Nothing lost: files written through virtio-blk in one domain are read back intact,
		# checksums and all, by the next one on the same image.
		disk=/kdom/e2e/disk.img
		boot vmlinuz 1 256 disk-write
		check write "guest wrote 3 files to /dev/vda" [ "$(grep -c 'kdom-guest: disk wrote file' "$work/console.txt")" = 3 ]
		check capacity "guest sees $(sed -n 's/.*disk write done, sectors=\([0-9]*\).*/\1/p' "$work/console.txt") sectors, want 131072" \
			grep -q 'disk write done, sectors=131072' "$work/console.txt"
		check exit-write "exit status $rc, want 0" [ "$rc" = 0 ]
		boot vmlinuz 1 256 disk-verify
		check verify "a second domain reads every file back with the same checksum" \
			grep -q 'kdom-guest: disk verify OK (3 files)' "$work/console.txt"
		check exit-verify "exit status $rc, want 0" [ "$rc" = 0 ]
		disk=
		;;
	rng)
		rng=1
		boot vmlinuz 1 256 rng-read
		check source "guest's hwrng source is virtio" grep -q 'kdom-guest: hwrng source=virtio_rng' "$work/console.txt"
		check read "guest read 4096 bytes from /dev/hwrng" grep -q 'kdom-guest: hwrng source=.* bytes=4096' "$work/console.txt"
		check exit "exit status $rc, want 0" [ "$rc" = 0 ]
		rng=
		;;
	net)
		# virtio-net on a TAP: in a network namespace of its own, a bridge holding the
		# peer's address (10.0.2.2) and a TAP for the guest (10.0.2.15). The guest pings
		# the peer, then sends $mib MiB to the peer's port 5001 and receives $mib MiB from
		# its port 5002 (busybox nc); both sides' sha256 must match.
		mib=${KDOM_E2E_NET_MIB:-32}
		ns=/run/kdom-e2e-net
		mkdir -p /run && touch "$ns" && unshare --net="$ns" true
		in_netns="nsenter --net=$ns"
		net_tap=kdomtap0 net_mac=52:54:00:12:34:56
		$in_netns ip link set lo up
		$in_netns brctl addbr kdombr0
		# (the test host's busybox brctl has no setfd; with STP off, ports forward at once)
		$in_netns tunctl -t "$net_tap" >/dev/null
		$in_netns brctl addif kdombr0 "$net_tap"
		$in_netns ip link set "$net_tap" up
		$in_netns ip addr add 10.0.2.2/24 dev kdombr0
		$in_netns ip link set kdombr0 up
		dd if=/dev/urandom of="$work/net-send" bs=1M count="$mib" 2>/dev/null
		send_sum=$(sha256sum <"$work/net-send" | cut -d' ' -f1)
		rm -f "$work/net-recv" "$work/net-hold"
		# busybox nc ends the connection when its stdin ends: the receiver's never does.
		mkfifo "$work/net-hold"
		sleep 3600 >"$work/net-hold" &
		holder=$!
		$in_netns nc -l -p 5001 <"$work/net-hold" >"$work/net-recv" &
		receiver=$!
		$in_netns nc -l -p 5002 <"$work/net-send" &
		sender=$!
		extra_cmdline="kdom.ip=10.0.2.15/24 kdom.peer=10.0.2.2 kdom.net_mib=$mib"
		boot vmlinuz 1 512 net-test
		kill "$holder" "$receiver" "$sender" 2>/dev/null
		wait "$holder" "$receiver" "$sender" 2>/dev/null
		recv_sum=$(sha256sum <"$work/net-recv" | cut -d' ' -f1)
		recv_bytes=$(wc -c <"$work/net-recv")
		bytes=$((mib * 1048576))
		mac_line=$(grep -m1 'kdom-guest: net eth0' "$work/console.txt")
		sent_line=$(grep -m1 'kdom-guest: net sent' "$work/console.txt")
		got_line=$(grep -m1 'kdom-guest: net received' "$work/console.txt")
		field() { echo "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
		ok=no
		[ "$(field "$mac_line" mac)" = "$net_mac" ] && [ "$(field "$mac_line" driver)" = virtio_net ] && ok=yes
		check mac "guest's eth0: ${mac_line#*eth0 }, want mac=$net_mac driver=virtio_net" [ "$ok" = yes ]
		replies=$(sed -n 's/.*kdom-guest: net ping .* replies=\([0-9]*\).*/\1/p' "$work/console.txt")
		check ping "ping 10.0.2.2 from the guest: ${replies:-0} of 3 replies, want > 0" in_range "${replies:-0}" 1 3
		ok=no
		[ "$(field "$sent_line" sha256)" = "$recv_sum" ] && [ "$(field "$sent_line" bytes)" = "$bytes" ] &&
			[ "$recv_bytes" = "$bytes" ] && ok=yes
		check guest-to-host "guest sent $(field "$sent_line" bytes) bytes sha256 $(field "$sent_line" sha256); peer got $recv_bytes bytes sha256 $recv_sum" [ "$ok" = yes ]
		ok=no
		[ "$(field "$got_line" sha256)" = "$send_sum" ] && [ "$(field "$got_line" bytes)" = "$bytes" ] && ok=yes
		check host-to-guest "peer sent $bytes bytes sha256 $send_sum; guest got $(field "$got_line" bytes) bytes sha256 $(field "$got_line" sha256)" [ "$ok" = yes ]
		check exit "exit status $rc, want 0" [ "$rc" = 0 ]
		up=$(field "$sent_line" secs) down=$(field "$got_line" secs)
		up_packets=$(field "$sent_line" packets) down_packets=$(field "$got_line" packets)
		# rate AMOUNT SECONDS: AMOUNT per second, one decimal
		rate() { awk -v a="$1" -v s="${2:-0}" 'BEGIN { if (s > 0) printf "%.1f", a / s; else print "?" }'; }
		mb=$(awk -v m="$mib" 'BEGIN { print m * 1.048576 }')
		echo "E2E-TIME $scenario: guest->host $mib MiB in ${up:-?}s: $(rate "$mb" "$up") MB/s, $(rate "${up_packets:-0}" "$up") frames/s; host->guest $mib MiB in ${down:-?}s: $(rate "$mb" "$down") MB/s, $(rate "${down_packets:-0}" "$down") frames/s (nested TCG)"
		# One line for bench/virtio-net.sh.
		echo "E2E-NET vmm=$vmm mib=$mib up_secs=${up:-missing} up_packets=${up_packets:-missing} down_secs=${down:-missing} down_packets=${down_packets:-missing}"
		umount "$ns" 2>/dev/null
		rm -f "$ns" "$work/net-send" "$work/net-recv" "$work/net-hold"
		in_netns= net_tap= extra_cmdline=
		;;
	debug-exit)
		boot vmlinuz 1 256 exit:5
		check init "console shows 'kdom-guest: init reached'" [ -n "$line" ]
		check exit "exit status $rc after writing 5 to port 0xf4, want $(expect_rc exit:5)" [ "$rc" = "$(expect_rc exit:5)" ]
		;;
	*)
		echo "E2E-CHECK $scenario.known FAIL no such scenario"
		failed=1
		secs=0
		;;
	esac
	if [ "$failed" = 0 ]; then
		echo "E2E-SCENARIO $scenario PASS ${secs}s"
	else
		dump_logs
		echo "E2E-SCENARIO $scenario FAIL ${secs}s"
		any_failed=1
	fi
done
exit "$any_failed"
