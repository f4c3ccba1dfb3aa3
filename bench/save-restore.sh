#!/bin/bash
# Save and restore: time and file size of saving a domain to a file and of restoring it, kdom
# (`kdom save --control`, `kdom run --restore`) against QEMU's own save to a file (QMP
# `migrate "exec:cat > FILE"`, then `-incoming "exec:cat FILE"`), in one nested test host run,
# for 256 MiB and 1 GiB domains, with two guests:
#
#   bench/save-restore.sh [-n N] [--mib "256 1024"] [--guests "linux probe"]
#
# Guests (1 vCPU):
#   linux: Debian's stock kernel + kdom's busybox initramfs (build/guest), command line
#          "console=ttyS0 kdom.action=power-button": an idle Linux waiting for its power button.
#          Ready at "power-button ready"; a restored one must answer the power button.
#   probe: the `dirty` probe guest (build/tests/guests/dirty.elf, PVH for both VMMs), 64 MiB
#          of its RAM rewritten at 8 MiB/s at CPL 3 and checked every pass: a busy guest whose
#          memory changes during QEMU's live migration to the file. Ready at its third tick; a
#          restored one must tick on.
# Each round boots the guest under each VMM, waits until it is ready, then:
#   save:    kdom: the control socket's `save` request (to FILE, then stop: what `kdom save
#            --control SOCK FILE` sends), from the request to its reply, by a client connected
#            before the clock starts; QEMU: QMP migrate to "exec:cat > FILE", from the command
#            until query-migrate says completed (asked every 10 ms by one QMP client, likewise
#            connected before). Neither client's process start is counted.
#   restore: kdom: `kdom run --restore FILE --ready-fd 3` from start to "ready" (the domain is
#            built, RAM and state loaded, vCPUs about to run); QEMU: from start with
#            -incoming "exec:cat FILE" until query-status says running (every 10 ms).
# A restore whose guest does not carry on is a failed measurement.
# Figures: medians of N rounds (default 3) and ratios kdom/QEMU. Targets (issue 13): save and
# restore <= 0.5x QEMU's time; restore of 256 MiB under 100 ms on hardware KVM (the test host
# is QEMU TCG: its absolute times are far slower than hardware's; compare the ratios).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=3 sizes="256 1024" guests="linux probe"
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?}; shift 2 ;;
	--mib) sizes=${2:?}; shift 2 ;;
	--guests) guests=${2:?}; shift 2 ;;
	--in-l1) shift; in_l1=1 ;;
	-h | --help) bench_usage ;;
	*) bench_die "unknown option $1 (see --help)" ;;
	esac
done
bench_need_count "$N" -n
for g in $guests; do
	case $g in linux | probe) ;; *) bench_die "--guests takes linux and probe, not '$g'" ;; esac
done

# ---- inside the test host: the measurements, one "save-restore run i/n: ..." line each ----
if [ "${in_l1:-0}" = 1 ]; then
	kdom=${BENCH_KDOM:?} guest=${BENCH_GUEST:?} probe=${BENCH_PROBE:?}
	work=$(mktemp -d /tmp/save-restore.XXXXXX)
	now() { date +%s.%N; }
	since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.4f", b - a }'; }
	wait_line() { # FILE TEXT SECONDS
		local i
		for i in $(seq $(($3 * 10))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
		return 1
	}
	# qmp SOCKET cmd COMMAND | save FILE | wait-running T0: a QMP client in one process (its
	# start-up is not measured): one command; a migration to FILE, printing its seconds from the
	# command to "completed" (query-migrate every 10 ms); or, once the socket exists, the seconds
	# from T0 (epoch) until query-status says running.
	qmp() {
		python3 - "$@" <<-'EOF'
			import json, os, signal, socket, sys, time
			signal.alarm(300)  # a VMM that never answers ends the measurement, not the benchmark
			path, what = sys.argv[1], sys.argv[2]
			while not os.path.exists(path): time.sleep(0.01)
			s = socket.socket(socket.AF_UNIX)
			while True:
			    try: s.connect(path); break
			    except OSError: time.sleep(0.01)
			f = s.makefile("rw")
			def send(cmd, args=None):
			    f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}) + "\n"); f.flush()
			    while True:
			        reply = json.loads(f.readline())
			        if "return" in reply or "error" in reply: return reply.get("return", reply)
			json.loads(f.readline()); send("qmp_capabilities")
			if what == "cmd":
			    print(json.dumps(send(sys.argv[3])))
			elif what == "save":
			    t0 = time.monotonic()
			    send("migrate", {"uri": "exec:cat > " + sys.argv[3]})
			    while send("query-migrate").get("status") not in ("completed", "failed"): time.sleep(0.01)
			    print("%.4f" % (time.monotonic() - t0) if send("query-migrate")["status"] == "completed" else "missing")
			elif what == "wait-running":
			    while send("query-status").get("status") != "running": time.sleep(0.01)
			    print("%.4f" % (time.time() - float(sys.argv[3])))
		EOF
	}
	# control_save SOCKET FILE: kdom's control socket asked to save to FILE and stop (a client in
	# one process, connected before the clock starts): the seconds to the reply.
	control_save() {
		python3 - "$@" <<-'EOF'
			import json, signal, socket, sys, time
			signal.alarm(300)
			s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
			t0 = time.monotonic()
			f.write(json.dumps({"op": "save", "path": sys.argv[2], "then": "stop"}) + "\n"); f.flush()
			reply = json.loads(f.readline())
			print("%.4f" % (time.monotonic() - t0) if reply.get("ok") else "")
		EOF
	}
	qemu_run() { # MIB LOG QMP [ARGS...]
		local mib=$1 log=$2 sock=$3
		shift 3
		qemu-system-x86_64 -accel kvm -cpu host -M pc -m "$mib" -smp 1 -nodefaults -nographic -no-user-config \
			-no-reboot -serial "file:$log" -qmp "unix:$sock,server=on,wait=off" \
			-device isa-debug-exit,iobase=0xf4,iosize=0x04 "${boot[@]}" "$@" >/dev/null 2>&1 &
	}
	# The restored guest carries on: Linux answers its power button (pressed by the caller
	# first), the probe ticks on in the restored domain's own console log.
	carries_on() { # LOG
		case $g in
		linux) wait_line "$1" "power button pressed" 120 ;;
		probe) wait_line "$1" "PROBE dirty: tick" 120 && ! grep -q "PROBE dirty: FAIL" "$1" ;;
		esac
	}
	for g in $guests; do
	case $g in
	linux)
		boot=(-kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" -append "console=ttyS0 kdom.action=power-button")
		kboot=(--kernel "$guest/vmlinuz" --initrd "$guest/initramfs.cpio.gz" --cmdline "console=ttyS0 kdom.action=power-button")
		ready="power-button ready" ;;
	probe)
		boot=(-kernel "$probe" -append "mib=64 rate_mib=8 ticks=1000000")
		kboot=(--kernel "$probe" --cmdline "mib=64 rate_mib=8 ticks=1000000")
		ready="PROBE dirty: tick 3 " ;;
	esac
	for mib in $sizes; do
		for i in $(seq "$N"); do
			# kdom
			rm -f "$work"/*
			"$kdom" run "${kboot[@]}" \
				--memory "$mib" --control "$work/k.sock" --console "file:$work/k.log" >"$work/k.vmm" 2>&1 &
			pid=$!
			if ! wait_line "$work/k.log" "$ready" 300; then
				echo "save-restore: FAILED kdom $g $mib MiB: the guest never got ready"; kill -9 $pid; continue
			fi
			# As QEMU's, from the request to its reply by a client already connected (kdom save's own
			# process start is not counted, as the QMP client's is not).
			save_s=$(control_save "$work/k.sock" "$work/k.snap")
			[ -n "$save_s" ] || { echo "save-restore: FAILED kdom save"; save_s=missing; }
			wait $pid
			bytes=$(stat -c %s "$work/k.snap" 2>/dev/null || echo missing)
			t0=$(now)
			"$kdom" run --restore "$work/k.snap" --control "$work/k2.sock" --console "file:$work/k2.log" \
				--ready-fd 3 3>"$work/k.ready" >"$work/k2.vmm" 2>&1 &
			pid=$!
			restore_s=missing
			wait_line "$work/k.ready" ready 300 && restore_s=$(since "$t0")
			[ "$g" = linux ] && "$kdom" shutdown --control "$work/k2.sock" >/dev/null 2>&1
			carries_on "$work/k2.log" || { echo "save-restore: FAILED kdom $g: the restored guest did not carry on"; restore_s=missing; }
			kill "$pid" 2>/dev/null
			wait $pid
			echo "save-restore run $i/$N: vmm=kdom guest=$g mib=$mib save_s=$save_s restore_s=$restore_s bytes=$bytes"
			# QEMU
			qemu_run "$mib" "$work/q.log" "$work/q.qmp"
			pid=$!
			if ! wait_line "$work/q.log" "$ready" 300; then
				echo "save-restore: FAILED QEMU $g $mib MiB: the guest never got ready"; kill -9 $pid; continue
			fi
			save_s=$(qmp "$work/q.qmp" save "$work/q.snap")
			[ -n "$save_s" ] || save_s=missing
			qmp "$work/q.qmp" cmd quit >/dev/null 2>&1
			wait $pid
			bytes=$(stat -c %s "$work/q.snap" 2>/dev/null || echo missing)
			t0=$(now)
			qemu_run "$mib" "$work/q2.log" "$work/q2.qmp" -incoming "exec:cat $work/q.snap"
			pid=$!
			restore_s=$(qmp "$work/q2.qmp" wait-running "$t0")
			[ -n "$restore_s" ] || restore_s=missing
			[ "$g" = linux ] && qmp "$work/q2.qmp" cmd system_powerdown >/dev/null 2>&1
			carries_on "$work/q2.log" || { echo "save-restore: FAILED QEMU $g: the restored guest did not carry on"; restore_s=missing; }
			sleep 1; kill $pid 2>/dev/null; wait $pid
			echo "save-restore run $i/$N: vmm=qemu guest=$g mib=$mib save_s=$save_s restore_s=$restore_s bytes=$bytes"
		done
	done
	done
	exit 0
fi

# ---- on this machine: build, run the test host, print the table ----
bench_start save-restore
bench_header "Save and restore (bench/save-restore.sh), guests: $guests (linux: idle stock kernel + busybox initramfs; probe: dirty, 64 MiB rewritten at 8 MiB/s), 1 vCPU, N=$N; raw logs in $out"
echo "-- test host (L1: QEMU TCG with emulated AMD SVM, real KVM; absolute times 10-50x hardware's: compare ratios)"
log=$out/l1-console.log
"$REPO/scripts/test-host.sh" --host-root --timeout "${BENCH_L1_TIMEOUT:-3000}" -- \
	"env BENCH_KDOM='$KDOM' BENCH_GUEST='$BUILD/guest' BENCH_PROBE='$BUILD/tests/guests/dirty.elf' bash '$BENCH_DIR/save-restore.sh' --in-l1 -n $N --mib '$sizes' --guests '$guests'" \
	>"$log" 2>&1 || bench_fail "the test-host run failed (see $log)"
if grep -aq '^save-restore: FAILED' "$log"; then
	grep -a '^save-restore: FAILED' "$log" | sed 's/^/   /'
	BENCH_FAILED=1
fi
runs=$out/runs.txt
grep -a '^save-restore run ' "$log" | tr -d '\r' >"$runs"
median() { # VMM GUEST MIB FIGURE
	grep " vmm=$1 guest=$2 mib=$3 " "$runs" | tr ' ' '\n' | sed -n "s/^$4=//p" | grep -v '^missing$' | "$KB" stats |
		tr ' ' '\n' | sed -n 's/^median=//p'
}
bench_row "figure (median of $N)" kdom QEMU kdom/QEMU target
for g in $guests; do
	for mib in $sizes; do
		for figure in save_s restore_s bytes; do
			k=$(median kdom "$g" "$mib" "$figure") q=$(median qemu "$g" "$mib" "$figure")
			ratio=$(bench_ratio "$k" "$q")
			target="-" verdict="-"
			case $figure in save_s | restore_s) target="<= 0.5x" verdict=$(bench_verdict "$ratio" 0.5) ;; esac
			decimals=3
			[ "$figure" = bytes ] && decimals=0
			bench_row "$g $mib MiB: $figure" "$(bench_fmt "$k" $decimals)" "$(bench_fmt "$q" $decimals)" "$ratio" "$target $verdict"
			[ "$figure" = bytes ] || bench_summary save-restore "$g $mib MiB $figure kdom/QEMU" "$ratio" "<= 0.5" "$verdict"
		done
	done
done
exit "$BENCH_FAILED"
