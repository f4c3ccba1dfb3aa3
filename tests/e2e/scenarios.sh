#!/bin/sh
# End-to-end scenarios: boot Debian's stock kernel with the default guest initramfs
# (guest/init) under a VMM. Runs INSIDE the nested test host (busybox sh), started by
# tests/e2e/run-e2e.sh through scripts/test-host.sh.
#
#   sh scenarios.sh VMM LIMIT SCENARIO...
#     VMM       kdom (the VMM under test) or qemu (reference: same guest under QEMU/KVM)
#     LIMIT     seconds allowed for each guest run
#     SCENARIO  boot-1vcpu boot-2vcpu boot-pvh reboot panic debug-exit shutdown disk rng hvc vsock balloon
#               balloon-reporting net
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
	cmdline="console=ttyS0 kdom.action=$action${extra_cmdline:+ $extra_cmdline}${KDOM_E2E_GUEST_CMDLINE:+ $KDOM_E2E_GUEST_CMDLINE}"
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
		# shellcheck disable=SC2086 # $extra holds whole options
		[ -z "${extra:-}" ] || set -- "$@" $extra
		[ -z "${net_tap:-}" ] || set -- "$@" --net "tap=$net_tap,mac=$net_mac"
		set -- "$@" ${console_opt:---console stdio}
		echo "E2E: ${in_netns:+$in_netns }kdom run $*"
		if [ -n "${feed:-}" ]; then
			# Input through a pipe (read in kdom's device event loop).
			(sleep 1; printf '%s\n' "$feed") | $in_netns timeout -s QUIT -k 5 "$limit" kdom run "$@" >"$work/console" 2>"$work/stderr"
		else
			$in_netns timeout -s QUIT -k 5 "$limit" kdom run "$@" </dev/null >"$work/console" 2>"$work/stderr"
		fi
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

# wait_console PATTERN SECONDS: waits until the guest console shows PATTERN (true) or the
# VMM ($vmm_pid) has ended or SECONDS have passed (false).
refresh_console() { tr -d '\r' <"$work/console" >"$work/console.txt"; }
wait_console() {
	n=0
	while [ "$n" -lt "$2" ]; do
		refresh_console
		grep -q "$1" "$work/console.txt" && return 0
		kill -0 "$vmm_pid" 2>/dev/null || return 1
		sleep 1
		n=$((n + 1))
	done
	return 1
}

# The guest's latest MemTotal, in kB, from its balloon-watch lines.
guest_total_kib() { sed -n 's/.*kdom-guest: meminfo t=[0-9]* total_kib=\([0-9]*\).*/\1/p' "$work/console.txt" | tail -n1; }

# The pid of a child of process $1.
child_pid() {
	for stat in /proc/[0-9]*/stat; do
		read -r pid _ _ ppid _ <"$stat" 2>/dev/null || continue
		[ "$ppid" = "$1" ] && echo "$pid" && return 0
	done
	return 1
}

rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null; }
# The most kdom's RSS has been (VmHWM): what the guest touched, even if given back already.
peak_rss_kib() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null; }

# For scenarios that act on a domain while it runs (through its control socket):
# start_background_run KDOM_RUN_ARGS... starts `kdom run` in the background, its console on
# $work/console (emptied first: the previous run's must not be read as this one's), and sets
# vmm_pid; end_background_run waits for it to end and sets rc and secs.
start_background_run() {
	rm -f "$work/console" "$work/console.txt"
	: >"$work/console"
	t0=$(uptime_s)
	timeout -s QUIT -k 5 "$limit" kdom run "$@" --console stdio </dev/null >"$work/console" 2>"$work/stderr" &
	vmm_pid=$!
}
end_background_run() {
	wait "$vmm_pid"
	rc=$?
	t1=$(uptime_s)
	secs=$(echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}')
	refresh_console
	echo "E2E-TIME $scenario: guest run took ${secs}s, exit status $rc"
}

# balloon: a 512 MiB guest whose balloon the test host inflates to 256 MiB through the
# control socket (`kdom balloon`), then deflates; the guest's MemTotal must follow and
# `kdom balloon stats` must show the guest's statistics. kdom's RSS is reported as a figure.
# With "reporting", free page reporting is on too: the 192 MiB the guest touched and freed
# must come back to the host (pages_reported, RSS) before anything is inflated.
balloon_scenario() {
	mode=$1
	ctl=$work/balloon.ctl
	rm -f "$ctl"
	settings=stats=1
	[ "$mode" = reporting ] && settings=stats=1,free-page-reporting
	start_background_run --memory 512 --balloon "$settings" --control "$ctl" \
		--cmdline "console=ttyS0 kdom.action=balloon-watch:$((limit - 20))"
	check ready "guest touched 192 MiB and started watching its memory" wait_console 'kdom-guest: balloon-watch ready' "$limit"
	base=$(sed -n 's/.*balloon-watch ready total_kib=\([0-9]*\).*/\1/p' "$work/console.txt")
	# busybox's timeout execs the command in its own process (GNU's runs it as a child).
	kdom_pid=$vmm_pid
	[ "$(cat "/proc/$vmm_pid/comm" 2>/dev/null)" = kdom ] || kdom_pid=$(child_pid "$vmm_pid")
	echo "E2E: kdom pid ${kdom_pid:-?} ($(cat "/proc/${kdom_pid:-0}/comm" 2>/dev/null))"
	rss_before=$(rss_kib "$kdom_pid")
	if [ "$mode" = reporting ]; then
		# Linux reports free 2 MiB blocks a couple of seconds after they are freed (at boot,
		# and the 192 MiB the guest just freed): wait for kdom's RSS to show it, 30 s at most.
		# That may have happened already, so measure from the peak, which held the 192 MiB.
		rss_before=$(peak_rss_kib "$kdom_pid")
		n=0
		while :; do
			reported=$(kdom balloon --control "$ctl" stats 2>/dev/null | sed -n 's/^pages_reported: //p')
			rss_reported=$(rss_kib "$kdom_pid")
			in_range "${rss_reported:-}" 1 $((${rss_before:-1} - 65536)) && in_range "${reported:-0}" 16384 1000000000 && break
			[ "$n" -lt 30 ] || break
			sleep 1
			n=$((n + 1))
		done
		echo "E2E-INFO $scenario: kdom VmRSS peaked at ${rss_before:-?} kB when the guest touched 192 MiB, ${rss_reported:-?} kB once it reported ${reported:-0} free pages"
		check reported "guest reported free pages (${reported:-0}, want at least 16384 = 64 MiB)" in_range "${reported:-0}" 16384 1000000000
		check rss-reported "kdom's RSS fell by at least 64 MiB from its peak after free page reporting (${rss_before:-?} -> ${rss_reported:-?} kB)" \
			in_range "${rss_reported:-}" 1 $((${rss_before:-1} - 65536))
		rss_before=$rss_reported
	fi
	check set "kdom balloon set 256 succeeded" kdom balloon --control "$ctl" set 256
	want=$((base - 256 * 1024))
	n=0
	while [ "$n" -lt 60 ] && kill -0 "$vmm_pid" 2>/dev/null; do
		refresh_console
		total=$(guest_total_kib)
		[ -n "$total" ] && [ "$total" -le $((want + 8192)) ] && break
		sleep 1
		n=$((n + 1))
	done
	inflated_total=$(guest_total_kib)
	check inflate "guest MemTotal ${inflated_total:-?} kB after inflating 256 MiB (from ${base:-?} kB), want $((want - 8192))..$((want + 8192)) kB" \
		in_range "${inflated_total:-0}" $((want - 8192)) $((want + 8192))
	sleep 2  # a statistics period (stats=1) and the last frames discarded
	rss_after=$(rss_kib "$kdom_pid")
	echo "E2E-INFO $scenario: kdom VmRSS ${rss_before:-?} kB before inflating, ${rss_after:-?} kB with 256 MiB in the balloon"
	# Without reporting, the guest's balloon pages include ones it had touched: RSS must fall.
	# With it, those were given back already, so only report the figure.
	[ "$mode" = reporting ] || check rss "kdom's RSS fell after inflating (${rss_before:-?} -> ${rss_after:-?} kB)" \
		in_range "${rss_after:-}" 1 $((${rss_before:-1} - 1))
	kdom balloon --control "$ctl" stats >"$work/stats" 2>&1
	sed "s/^/E2E-INFO $scenario: stats: /" "$work/stats"
	check stats "kdom balloon stats shows the guest's free_memory and total_memory" \
		grep -q '^stats.free_memory: [0-9]' "$work/stats"
	check actual "the guest reports 256 MiB in the balloon" grep -q '^actual_mib: 256$' "$work/stats"
	check deflate-set "kdom balloon set 0 succeeded" kdom balloon --control "$ctl" set 0
	check deflate "guest MemTotal back to within 16 MiB of ${base:-?} kB" wait_console 'balloon-watch done went_down=1' 60
	end_background_run
	check exit "exit status $rc after poweroff, want 0" [ "$rc" = 0 ]
	check socket-removed "kdom removed its control socket" [ ! -e "$ctl" ]
}

# shutdown: a guest that waits on its ACPI power button, as a Debian guest's systemd-logind
# does; `kdom shutdown --wait` presses it through the control socket and returns once the
# domain has stopped: the guest powered off by itself and `kdom run` exits 0 (kdom only:
# QEMU's button is pressed from its monitor).
shutdown_scenario() {
	ctl=$work/shutdown.ctl
	rm -f "$ctl"
	start_background_run --control "$ctl" --cmdline "console=ttyS0 kdom.action=power-button"
	check ready "the guest found its power button and waits on it" wait_console 'kdom-guest: power-button ready' "$limit"
	said=$(kdom shutdown --control "$ctl" --wait 60 2>&1)
	said_rc=$?
	check request "kdom shutdown --wait 60: exit $said_rc, '$said'" [ "$said_rc" = 0 ]
	# kdom logs why the domain stopped before it removes its control socket, which --wait watches.
	check domain-stopped "when kdom shutdown --wait returned, kdom run had logged 'guest powered off'" \
		grep -q 'kdom: guest powered off' "$work/stderr"
	refresh_console
	check pressed "the guest saw the press" grep -q 'kdom-guest: power button pressed' "$work/console.txt"
	end_background_run
	check exit "exit status $rc after the guest powered off, want 0" [ "$rc" = 0 ]
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

# run_scenario: runs $scenario, reporting its checks; sets failed=1 if one failed.
run_scenario() {
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
		# Nothing lost: files written through virtio-blk (two queues, one per vCPU) in one
		# domain are read back intact, checksums and all, by the next one on the same image;
		# the image is the test host's /dev/vda, checked afterwards by the build machine too
		# (e2fsck, debugfs: see run-e2e.sh).
		disk=/dev/vda,queues=2
		boot vmlinuz 2 256 disk-write
		check write "guest wrote 3 files to /dev/vda" [ "$(grep -c 'kdom-guest: disk wrote file' "$work/console.txt")" = 3 ]
		# For run-e2e.sh, which checks the image against these sums once the test host is gone.
		grep 'kdom-guest: disk wrote file' "$work/console.txt" | sed 's/^/E2E-INFO disk: /'
		check capacity "guest sees $(sed -n 's/.*disk write done, sectors=\([0-9]*\).*/\1/p' "$work/console.txt") sectors, want 131072" \
			grep -q 'disk write done, sectors=131072' "$work/console.txt"
		check exit-write "exit status $rc, want 0" [ "$rc" = 0 ]
		check queues "the guest's disk has 2 queues ($(sed -n 's/.*disk queues=\([0-9]*\).*/\1/p' "$work/console.txt"))" \
			grep -q 'kdom-guest: disk queues=2' "$work/console.txt"
		disk=/dev/vda
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
	hvc)
		# Output: the guest's line on /dev/hvc0 lands in the --hvc file.
		rm -f "$work/hvc.out"
		extra="--hvc file:$work/hvc.out"
		boot vmlinuz 1 256 hvc-write
		extra=
		check init "console shows 'kdom-guest: init reached'" [ -n "$line" ]
		check output "the guest's hvc0 line is in the --hvc file" grep -q 'kdom-guest-hvc: hello from hvc0' "$work/hvc.out"
		check exit "exit status $rc, want 0" [ "$rc" = 0 ]
		# Input: --hvc stdio, host input from a pipe; the serial console goes to a file.
		extra="--hvc stdio" console_opt="--console file:$work/serial.out" feed="ping-from-host-$$"
		boot vmlinuz 1 256 hvc-read
		extra= console_opt= feed_sent=$feed feed=
		tr -d '\r' <"$work/serial.out" >"$work/console.txt"
		check input "the guest read the host's line from hvc0: $(grep -o "hvc read '[^']*'" "$work/console.txt")" \
			grep -q "kdom-guest: hvc read '$feed_sent'" "$work/console.txt"
		check stdio-output "the guest's hvc0 line reached kdom's stdout" grep -q 'kdom-guest-hvc: hello from hvc0' "$work/console"
		check exit-stdio "exit status $rc, want 0" [ "$rc" = 0 ]
		;;
	vsock)
		sock=$work/vsock.sock
		rm -f "$sock" "${sock}_5678" "$work/vsock.echo"
		if ! command -v vsock-client >/dev/null; then
			check tool "vsock-client is in the test host (built with kdom)" false
		else
			head -c 4194304 /dev/urandom >"$work/vsock.data"
			# guest -> host: an echo server at PATH_5678; host -> guest: a client through PATH.
			vsock-client listen "${sock}_5678" >"$work/vsock-listen.log" 2>&1 &
			listen_pid=$!
			(
				vsock-client connect "$sock" 1234 <"$work/vsock.data" >"$work/vsock.echo" 2>"$work/vsock-client.log"
				echo $? >"$work/vsock-client.rc"
			) &
			client_pid=$!
			extra="--vsock cid=3,socket=$sock"
			boot vmlinuz 1 256 vsock
			extra=
			wait "$client_pid"
			kill "$listen_pid" 2>/dev/null
			sent=$(sha256sum <"$work/vsock.data" | cut -d' ' -f1)
			echoed=$(sha256sum <"$work/vsock.echo" | cut -d' ' -f1)
			bytes=$(wc -c <"$work/vsock.echo")
			host_ok=0
			[ "$(cat "$work/vsock-client.rc")" = 0 ] && [ "$echoed" = "$sent" ] && [ "$bytes" = 4194304 ] && host_ok=1
			check host-to-guest "host client: rc $(cat "$work/vsock-client.rc"), $bytes bytes echoed by the guest, sha256 ${echoed%${echoed#????????}} vs sent ${sent%${sent#????????}} ($(tr '\n' ' ' <"$work/vsock-client.log"))" \
				[ "$host_ok" = 1 ]
			g=$(grep -m1 'kdom-guest: vsock to-host' "$work/console.txt")
			g_sent=$(echo "$g" | sed -n 's/.* sent=\([0-9a-f]*\).*/\1/p')
			g_echo=$(echo "$g" | sed -n 's/.* echo=\([0-9a-f]*\).*/\1/p')
			guest_ok=0
			[ -n "$g_sent" ] && [ "$g_sent" = "$g_echo" ] && echo "$g" | grep -q 'rc=0 .* bytes=4194304' && guest_ok=1
			check guest-to-host "guest: ${g:-no report}" [ "$guest_ok" = 1 ]
			check listener "the guest's listener ended cleanly" grep -q 'kdom-guest: vsock listener rc=0' "$work/console.txt"
			check exit "exit status $rc, want 0" [ "$rc" = 0 ]
			check socket-removed "kdom removed its socket $sock on exit" [ ! -e "$sock" ]
		fi
		;;
	balloon)
		balloon_scenario plain
		;;
	shutdown)
		shutdown_scenario
		;;
	balloon-reporting)
		balloon_scenario reporting
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
		irqs=$(sed -n 's/.*kdom-guest: net interrupts \(.*\)/\1/p' "$work/console.txt" | head -n1)
		ping_rtt=$(sed -n 's/.*kdom-guest: net ping .* rtt_ms=\([0-9.]*\/[0-9.]*\/[0-9.]*\).*/\1/p' "$work/console.txt")
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
		echo "E2E-TIME $scenario: guest->host $mib MiB in ${up:-?}s: $(rate "$mb" "$up") MB/s, $(rate "${up_packets:-0}" "$up") frames/s; host->guest $mib MiB in ${down:-?}s: $(rate "$mb" "$down") MB/s, $(rate "${down_packets:-0}" "$down") frames/s (nested TCG); ping min/avg/max ${ping_rtt:-?} ms; guest virtio interrupts by the end of the upload: ${irqs:-?}"
		# One line for bench/virtio-net.sh.
		echo "E2E-NET vmm=$vmm mib=$mib up_secs=${up:-missing} up_packets=${up_packets:-missing} down_secs=${down:-missing} down_packets=${down_packets:-missing} ping_ms=${ping_rtt:-missing}"
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
}

# emulation_fault: prints what stopped the guest and succeeds if it is one of the ways the test
# host's emulated CPU (QEMU TCG's nested SVM) is known to fail any VMM's guest, and nothing a
# VMM can do to a guest's CPU (docs/testing.md): its state lost in a
# world switch (a triple fault, a double fault, a kernel stack overflow; under QEMU a triple
# fault shows only as a guest that ended without powering off or rebooting), or the kernel spinning
# with interrupts off until the time limit (kdom's SIGQUIT dump shows every vCPU so, and a
# dump is only printed once every vCPU thread has left KVM_RUN, so none was stuck in kdom).
emulation_fault() {
	if grep -q 'triple fault (KVM_EXIT_SHUTDOWN)' "$work/stderr" 2>/dev/null; then
		echo "the guest triple-faulted"
	elif grep -q 'PANIC: double fault' "$work/console.txt" 2>/dev/null; then
		echo "the guest's kernel took a double fault"
	elif grep -q 'BUG: TASK stack guard page was hit' "$work/console.txt" 2>/dev/null; then
		echo "the guest's kernel ran into its stack's guard page"
	elif kernel_spun_with_interrupts_off; then
		echo "the guest's kernel spun with interrupts off until the time limit"
	elif [ "$vmm" = qemu ] && [ "${rc:-}" = 0 ] &&
		! grep -q -e 'reboot: Power down' -e 'reboot: Restarting system' "$work/console.txt" 2>/dev/null; then
		# QEMU -no-reboot ends with status 0 on a triple fault, as on a reboot, and says nothing.
		echo "the guest was reset without its kernel asking (a triple fault, under QEMU)"
	else
		return 1
	fi
}

attempt_words() {
	case "$1" in
	2) echo ", second attempt" ;;
	3) echo ", third attempt" ;;
	esac
}

kernel_spun_with_interrupts_off() {
	grep -q 'kdom: state at SIGQUIT' "$work/stderr" 2>/dev/null || return 1
	vcpus=$(grep -c 'kdom: vCPU [0-9]*: rip=' "$work/stderr")
	spinning=0
	for flags in $(sed -n 's/.*kdom: vCPU [0-9]*: rip=ffff[0-9a-f]* rsp=[0-9a-f]* rflags=\([0-9a-f]*\)$/\1/p' "$work/stderr"); do
		[ $((0x$flags & 0x200)) = 0 ] && spinning=$((spinning + 1))
	done
	[ "$vcpus" -gt 0 ] && [ "$spinning" = "$vcpus" ]
}

# A scenario whose guest died of such a fault runs again, twice at most, and says so each
# time (E2E-RETRY); the third failure of any kind fails it. Any other failure fails it at once.
for scenario in "$@"; do
	attempt=1
	while :; do
		failed=0
		echo "E2E: ==== $scenario ($vmm)$(attempt_words "$attempt") ===="
		run_scenario
		if [ "$failed" = 0 ]; then
			echo "E2E-SCENARIO $scenario PASS ${secs}s"
			break
		fi
		dump_logs
		if [ "$attempt" -lt 3 ] && cause=$(emulation_fault); then
			attempt=$((attempt + 1))
			echo "E2E-RETRY $scenario: $cause, a fault of the test host's CPU emulation; running it again ($(attempt_words "$attempt" | sed 's/^, //'))"
			continue
		fi
		echo "E2E-SCENARIO $scenario FAIL ${secs}s"
		any_failed=1
		break
	done
done
exit "$any_failed"
