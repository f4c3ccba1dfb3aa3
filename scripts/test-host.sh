#!/bin/bash
# Runs a command inside the nested test host: a QEMU TCG machine with emulated AMD SVM
# running Debian's cloud kernel with kvm-amd, so that /dev/kvm there is real hardware-style
# KVM (the build machines' own /dev/kvm cannot boot a stock Linux kernel, see
# /work/shared/test-hosts.md).
#
#   scripts/test-host.sh [OPTIONS] -- COMMAND...
#
# COMMAND (joined into one shell command line) runs in the test host ("L1") once /dev/kvm
# is ready, as root, in /kdom, with PATH=/kdom/build:... and KDOM_GUEST_DIR=/kdom/build/guest.
# L1 holds: busybox, L1 kernel modules (kvm, tun, veth, bridge, vsock, vhost...),
#   /kdom/build/kdom               the static kdom binary, if the build has one
#   /kdom/build/guest/             vmlinuz, vmlinux, initramfs.cpio.gz (scripts/build-guest.sh)
#   /kdom/build/tests/guests/      the probe-guest ELF files, if built
#   QEMU (with --with-qemu)        /usr/bin/qemu-system-x86_64, its libraries and firmware
#   anything given with --add
# L1's console streams to stdout. The script exits with COMMAND's exit status;
# 124 if the time limit was hit, or L1's kernel reports a CPU stuck for 50 s or more (a soft
# lockup), or one of L1's CPUs stopped sending its heartbeat (every 5 s, on L1's second serial
# port) for 60 s: the test host hung; QEMU is killed either way. 125 if the test host itself failed
# (L1 did not come up, /dev/kvm unusable in L1, L1 crashed before reporting a status).
#
# Options:
#   --timeout S         wall-clock limit in seconds for the whole run (default 300)
#   --with-qemu         include QEMU in L1 (for comparisons and for testing the guest)
#   --build-dir DIR     where kdom's build is (default: <repo>/build)
#   --kdom PATH         the kdom binary (default: BUILD-DIR/kdom, if it exists)
#   --add SRC[:DEST]    copy a host file or directory into L1 (DEST relative to /kdom,
#                       default its base name); may be repeated
#   --smp N             L1 vCPUs (default 2)
#   --memory MIB        L1 memory (default 3072)
#   --log FILE          also write L1's console to FILE
#   --disk FILE         attach FILE (a raw image on this machine) to L1 as a virtio disk,
#                       /dev/vda in L1; what L1 writes to it is in FILE afterwards, the one
#                       way to get data back out of the test host
#   --host-root         run COMMAND with this machine's own files instead: L1 mounts this
#                       machine's root filesystem read-only (virtiofs, QEMU's virtiofsd) under
#                       an overlay whose writes stay in L1's memory, and runs COMMAND chrooted
#                       into it (bash, same paths, same tools, the current directory kept),
#                       with L1's /dev (/dev/kvm), /proc, /sys and an empty /run. Nothing L1
#                       writes reaches this machine. For tests written for a build machine
#                       with a usable /dev/kvm (tests/with-kvm.sh)
# Environment: KDOM_TESTHOST_CPU overrides the QEMU CPU model (default EPYC,+svm);
# KDOM_TESTHOST_HEARTBEAT_S (default 60, at least 10) how long a CPU of L1 may go without a
# heartbeat before the test host counts as hung;
# KDOM_TESTHOST_TCG_THREAD=single runs all of L1's vCPUs in one host thread (default multi):
# the emulated CPU's own faults then come within minutes, a way to study them (docs/testing.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
. "$here/lib-initramfs.sh"

timeout_s=300
with_qemu=0
build=$src/build
kdom=
smp=2
mem=3072
log=
adds=()
disk=
host_root=0
usage() {
	sed -n '/^#   scripts\/test-host.sh/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=${2:?}; shift 2 ;;
	--with-qemu) with_qemu=1; shift ;;
	--build-dir) build=${2:?}; shift 2 ;;
	--kdom) kdom=${2:?}; shift 2 ;;
	--add) adds+=("${2:?}"); shift 2 ;;
	--smp) smp=${2:?}; shift 2 ;;
	--memory) mem=${2:?}; shift 2 ;;
	--log) log=${2:?}; shift 2 ;;
	--disk) disk=${2:?}; shift 2 ;;
	--host-root) host_root=1; shift ;;
	--) shift; break ;;
	-h | --help) usage ;;
	*) echo "test-host.sh: unknown option '$1'" >&2; usage ;;
	esac
done
[ $# -gt 0 ] || usage
command_line="$*"
[[ "$timeout_s" =~ ^[0-9]+$ ]] && [ "$timeout_s" -gt 0 ] || die "--timeout wants a number of seconds"
heartbeat_s=${KDOM_TESTHOST_HEARTBEAT_S:-60}
[[ "$heartbeat_s" =~ ^[0-9]+$ ]] && [ "$heartbeat_s" -ge 10 ] ||
	die "KDOM_TESTHOST_HEARTBEAT_S wants a number of seconds, at least 10 (L1's CPUs beat every 5 s)"
need_tools qemu-system-x86_64 timeout cpio gzip
[ "$host_root" = 0 ] || [ "$with_qemu" = 0 ] || die "--host-root and --with-qemu do not go together"
disk_args=()
if [ -n "$disk" ]; then
	[ -f "$disk" ] && [ -w "$disk" ] || die "--disk $disk is not a writable file"
	disk_args=(-drive "file=$disk,format=raw,if=virtio,cache=writeback")
fi

# The build machine's own KVM is not used: L1 runs under QEMU's TCG, which emulates SVM.
start_ns=$(date +%s%N)
elapsed() { echo $((($(date +%s%N) - start_ns) / 1000000)) | sed 's/...$/.&/; s/^\./0./'; }

# --- Inputs: the guest kernel/initramfs and the L1 kernel modules (same Debian kernel) ---
mkdir -p "$build"
build=$(cd "$build" && pwd)
guest=$build/guest
# A --host-root run needs only L1's kernel and modules from it: skip the rebuild (seconds,
# once per test) while those are newer than the script that makes them.
if [ "$host_root" = 0 ] || [ ! "$guest/l1-modules.cpio" -nt "$here/build-guest.sh" ] || [ ! -f "$guest/vmlinuz" ]; then
	"$here/build-guest.sh" "$guest" || die "scripts/build-guest.sh $guest failed"
fi
# (--host-root copies nothing in: the command finds its own kdom among this machine's files)
[ "$host_root" = 1 ] || [ -n "$kdom" ] || { [ -x "$build/kdom" ] && kdom=$build/kdom; } || true
if [ "$host_root" = 0 ] && [ -n "$kdom" ]; then
	[ -x "$kdom" ] || die "--kdom $kdom is not an executable"
	readelf -lW "$kdom" 2>/dev/null | grep INTERP >/dev/null &&
		die "$kdom is dynamically linked; the test host needs a static kdom (cmake -DKDOM_STATIC=ON)"
fi

cache=$build/testhost
mkdir -p "$cache"
work=$(mktemp -d "$cache/.run.XXXXXX")
qemu_pid=
virtiofsd_pid=
cleanup() {
	[ -z "$qemu_pid" ] || kill -KILL "$qemu_pid" 2>/dev/null || true
	[ -z "$virtiofsd_pid" ] || kill -KILL "$virtiofsd_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- The cached base of L1's initramfs: busybox, modules, /init ---
base=$cache/l1-base.cpio
if [ ! -f "$base" ] || [ "$0" -nt "$base" ] || [ "$guest/l1-modules.cpio" -nt "$base" ] ||
	[ /bin/busybox -nt "$base" ] || [ "$here/lib-initramfs.sh" -nt "$base" ]; then
	stage=$work/base
	mkdir -p "$stage/bin" "$stage/proc" "$stage/sys" "$stage/tmp" "$stage/run" "$stage/root" "$stage/kdom"
	cp /bin/busybox "$stage/bin/busybox"
	cat >"$stage/init" <<'L1INIT'
#!/bin/busybox sh
# /init of the nested test host (written by scripts/test-host.sh): load KVM, then run
# /kdom/cmd.sh and report its exit status on the console as KDOM-TESTHOST-EXIT=<n>.
/bin/busybox --install -s /bin
export PATH=/kdom/build:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/net
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# What udev would make: bash's process substitution needs /dev/fd.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
# A heartbeat from each CPU on the second serial port, which test-host.sh watches: a CPU that
# stops beating is stuck (the emulated SVM has hung it), whether or not the kernel can say so.
# The process ids are in /run for tests/e2e/test-host-hang.sh.
cpu=0
while [ "$cpu" -lt "$(grep -c ^processor /proc/cpuinfo)" ]; do
	taskset -c "$cpu" sh -c "while :; do echo cpu$cpu; sleep 5; done" >/dev/ttyS1 2>/dev/null </dev/null &
	echo $! >"/run/kdom-heartbeat-cpu$cpu.pid"
	cpu=$((cpu + 1))
done
ip link set lo up
# As docs/architecture.md asks of a host that runs domains: huge pages for shared memory on
# request, so that kdom's guest RAM (a memfd, MADV_HUGEPAGE) gets them as QEMU's anonymous
# RAM does (Debian's default, never, makes a Linux guest's boot here ~30% slower).
echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null ||
	echo "KDOM-TESTHOST: warning: cannot set transparent_hugepage/shmem_enabled to advise"
report() { printf '\nKDOM-TESTHOST-%s\n' "$1"; sync; poweroff -f; }
read -r up _ </proc/uptime
echo "KDOM-TESTHOST: L1 user space up at ${up}s, $(grep -c ^processor /proc/cpuinfo) CPUs"
while read -r ko; do
	insmod "$ko" || echo "KDOM-TESTHOST: warning: insmod $ko failed"
done </lib/modules/l1-load-order
[ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200
if ! grep -qw svm /proc/cpuinfo; then
	echo "KDOM-TESTHOST: ERROR: L1's CPU has no svm flag (QEMU needs -cpu ...,+svm)"
	report "FAILED=no-svm"
elif [ ! -c /dev/kvm ]; then
	echo "KDOM-TESTHOST: ERROR: /dev/kvm is missing in L1 after loading kvm-amd:"
	dmesg | grep -i -e kvm -e svm | tail -n 20
	report "FAILED=no-kvm"
fi
read -r up _ </proc/uptime
echo "KDOM-TESTHOST: /dev/kvm ready at ${up}s; running: $(cat /kdom/cmd.txt)"
cd /kdom
export KDOM_GUEST_DIR=/kdom/build/guest
sh /kdom/cmd.sh </dev/console
rc=$?
read -r up _ </proc/uptime
echo "KDOM-TESTHOST: command finished at ${up}s"
report "EXIT=$rc"
L1INIT
	chmod 0755 "$stage/init"
	{
		cpio_console_node
		cpio_dir "$stage"
		cat "$guest/l1-modules.cpio"
	} >"$work/l1-base.cpio"
	mv -f "$work/l1-base.cpio" "$base"
	rm -rf "$stage"
fi

# --- QEMU for L1, cached: the binary, the libraries ldd names, its firmware ---
qemu_cpio=$cache/l1-qemu.cpio
if [ "$with_qemu" = 1 ]; then
	qbin=$(command -v qemu-system-x86_64)
	if [ ! -f "$qemu_cpio" ] || [ "$qbin" -nt "$qemu_cpio" ] || [ "$0" -nt "$qemu_cpio" ]; then
		stage=$work/qemu
		mkdir -p "$stage/usr/bin"
		cp -L "$qbin" "$stage/usr/bin/qemu-system-x86_64"
		ldd "$qbin" >"$work/ldd.txt" || die "ldd $qbin failed"
		while read -r a b c _; do
			lib=
			case "$b" in
			'=>') lib=$c ;;
			*) [ "${a#/}" != "$a" ] && lib=$a ;;
			esac
			[ -n "$lib" ] && [ -f "$lib" ] || continue
			mkdir -p "$stage$(dirname "$lib")"
			cp -L "$lib" "$stage$lib"
		done <"$work/ldd.txt"
		for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
			[ -d "$d" ] || continue
			mkdir -p "$stage$d"
			cp -rL "$d/." "$stage$d/"
		done
		cpio_dir "$stage" >"$work/l1-qemu.cpio"
		mv -f "$work/l1-qemu.cpio" "$qemu_cpio"
		rm -rf "$stage"
	fi
fi

# --- This run's part: kdom, guest files, probe guests, --add files, the command ---
# (with --host-root only the command: everything else is read from this machine's files)
run=$work/run
mkdir -p "$run/kdom/build/guest"
if [ "$host_root" = 0 ]; then
	for f in vmlinuz vmlinux initramfs.cpio.gz; do
		cp "$guest/$f" "$run/kdom/build/guest/"
	done
	[ -z "$kdom" ] || cp "$kdom" "$run/kdom/build/kdom"
	if [ -d "$build/tests/guests" ]; then
		while IFS= read -r -d '' f; do
			[ "$(head -c4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || continue
			rel=${f#"$build"/}
			mkdir -p "$run/kdom/build/$(dirname "$rel")"
			cp "$f" "$run/kdom/build/$rel"
		done < <(find "$build/tests/guests" -path '*/CMakeFiles' -prune -o -type f -print0)
	fi
fi
for a in "${adds[@]}"; do
	s=${a%%:*}
	d=${a#*:}
	[ "$d" != "$a" ] || d=$(basename "$s")
	[ -e "$s" ] || die "--add: $s does not exist"
	case "$d" in /*) d=${d#/} ;; *) d=kdom/$d ;; esac
	mkdir -p "$run/$(dirname "$d")"
	cp -rL "$s" "$run/$d"
done
if [ "$host_root" = 1 ]; then
	{
		printf 'cd %q || exit 125\n' "$PWD"
		printf '%s\n' "$command_line"
	} >"$run/kdom/host-cmd.sh"
	cat >"$run/kdom/cmd.sh" <<'HOSTROOT'
# L1's part of test-host.sh --host-root: this machine's root filesystem, read-only, under an
# overlay that keeps L1's writes in L1's memory, with L1's own /dev, /proc, /sys and an empty
# /run, then the command chrooted into it.
mkdir -p /host.ro /host.rw /host
if ! mount -t virtiofs -o ro hostroot /host.ro; then
	echo "KDOM-TESTHOST: ERROR: cannot mount the build machine's root filesystem (virtiofs)"
	exit 125
fi
if ! { mount -t tmpfs tmpfs /host.rw && mkdir /host.rw/upper /host.rw/work &&
	mount -t overlay overlay -o lowerdir=/host.ro,upperdir=/host.rw/upper,workdir=/host.rw/work /host; }; then
	echo "KDOM-TESTHOST: ERROR: cannot put a writable overlay over the build machine's root filesystem"
	exit 125
fi
if ! { mount -o rbind /dev /host/dev && mount -t proc proc /host/proc && mount -t sysfs sysfs /host/sys &&
	mount -t tmpfs tmpfs /host/run; }; then
	echo "KDOM-TESTHOST: ERROR: cannot mount /dev, /proc, /sys or /run over the build machine's files"
	exit 125
fi
cp /kdom/host-cmd.sh /host/run/.test-host-cmd.sh
exec chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root TERM=dumb LANG=C.UTF-8 /bin/bash /run/.test-host-cmd.sh
HOSTROOT
else
	printf '%s\n' "$command_line" >"$run/kdom/cmd.sh"
fi
cmd_text=${command_line:0:200}
printf '%s\n' "${cmd_text//$'\n'/ }" >"$run/kdom/cmd.txt"
initrd=$work/initrd.cpio
{
	cat "$base"
	[ "$with_qemu" = 0 ] || cat "$qemu_cpio"
	cpio_dir "$run"
} >"$initrd"
rm -rf "$run"

# --- Boot L1 and stream its console ---
l1_cpu=${KDOM_TESTHOST_CPU:-EPYC,+svm}
tcg_thread=${KDOM_TESTHOST_TCG_THREAD:-multi}
echo "test-host.sh: starting L1 (QEMU TCG $tcg_thread-threaded, -cpu $l1_cpu, $smp vCPUs, $mem MiB, $(($(stat -c %s "$initrd") / 1048576)) MiB initramfs), limit ${timeout_s}s, after $(elapsed)s of preparation" >&2
host_root_args=()
if [ "$host_root" = 1 ]; then
	# QEMU's virtiofsd serves this machine's root; vhost-user needs L1's RAM in shared memory.
	virtiofsd=/usr/lib/qemu/virtiofsd
	[ -x "$virtiofsd" ] || die "--host-root needs $virtiofsd (Debian's qemu-system-common)"
	"$virtiofsd" --socket-path="$work/virtiofs.sock" -o source=/ -o cache=auto -o sandbox=chroot \
		-o log_level=err 2>"$work/virtiofsd.err" &
	virtiofsd_pid=$!
	for _ in $(seq 100); do
		[ -S "$work/virtiofs.sock" ] || ! kill -0 "$virtiofsd_pid" 2>/dev/null && break
		sleep 0.05
	done
	[ -S "$work/virtiofs.sock" ] || die "virtiofsd did not start: $(cat "$work/virtiofsd.err")"
	host_root_args=(-object "memory-backend-memfd,id=l1ram,size=${mem}M,share=on" -machine memory-backend=l1ram
		-chardev "socket,id=hostroot,path=$work/virtiofs.sock" -device vhost-user-fs-pci,chardev=hostroot,tag=hostroot)
fi
console=$work/console.log
qemu_stdin=/dev/null
[ -t 0 ] && qemu_stdin=/dev/stdin
mkfifo "$work/fifo"
qemu-system-x86_64 -accel "tcg,thread=$tcg_thread" -cpu "$l1_cpu" -smp "$smp" -m "$mem" \
	-nodefaults -display none -no-user-config -serial stdio -serial "file:$work/heartbeat" -monitor none -no-reboot \
	-kernel "$guest/vmlinuz" -initrd "$initrd" -append "console=ttyS0 panic=-1 quiet" "${disk_args[@]}" "${host_root_args[@]}" \
	<"$qemu_stdin" >"$work/fifo" 2>"$work/qemu.err" &
qemu_pid=$!
# Strip the serial line's \r, copy to stdout (and --log), keep a copy to find the status.
sed -u 's/\r$//' <"$work/fifo" | tee "$console" ${log:+"$log"} &
reader_pid=$!
deadline=$(($(date +%s) + timeout_s))
timed_out=0 lockup= polls=0
# Per L1 CPU: heartbeats seen so far, and when that count last changed.
beats=() beat_at=()
while kill -0 "$qemu_pid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		timed_out=1
		kill -KILL "$qemu_pid" 2>/dev/null || true
		break
	fi
	# L1's own kernel saying that one of its CPUs has been stuck for most of a minute: the test
	# host hung (docs/testing.md), and no time limit need be waited out for that.
	if [ $((++polls % 10)) = 0 ]; then
		lockup=$(grep -a -m1 -E '^\[[ 0-9.]+\] watchdog: BUG: soft lockup - CPU#[0-9]+ stuck for ([5-9][0-9]|[0-9]{3,})s' \
			"$console" | sed 's/^.*watchdog: BUG: /its kernel reports a /' || true)
		# A CPU whose heartbeat stopped (see L1's /init): the same verdict, for hangs that leave
		# the kernel no way to report (seen: the whole test host silent for half an hour).
		now=$(date +%s)
		for ((cpu = 0; cpu < smp && ${#lockup} == 0; cpu++)); do
			n=$(grep -a -c "^cpu$cpu\b" "$work/heartbeat" 2>/dev/null || true)
			if [ "${n:-0}" != "${beats[cpu]:-0}" ]; then
				beats[cpu]=$n beat_at[cpu]=$now
			elif [ "${n:-0}" -gt 0 ] && [ $((now - beat_at[cpu])) -ge "$heartbeat_s" ]; then
				lockup="CPU#$cpu sent no heartbeat for $((now - beat_at[cpu]))s"
			fi
		done
		if [ -n "$lockup" ]; then
			timed_out=1
			kill -KILL "$qemu_pid" 2>/dev/null || true
			break
		fi
	fi
	sleep 0.5
done
wait "$qemu_pid" 2>/dev/null && qemu_rc=0 || qemu_rc=$?
qemu_pid=
wait "$reader_pid" 2>/dev/null || true

if [ -n "$lockup" ]; then
	echo "test-host.sh: error: the test host hung: $lockup; QEMU killed" >&2
	exit 124
fi
if [ "$timed_out" = 1 ]; then
	echo "test-host.sh: error: timed out after ${timeout_s}s (the test host or the command hung); QEMU killed" >&2
	exit 124
fi
status=$(sed -n 's/^KDOM-TESTHOST-EXIT=\([0-9][0-9]*\)$/\1/p' "$console" | tail -n1)
if [ -z "$status" ]; then
	failed=$(sed -n 's/^KDOM-TESTHOST-FAILED=//p' "$console" | tail -n1)
	grep -v "TCG doesn't support requested feature" "$work/qemu.err" >&2 || true
	if [ -n "$failed" ]; then
		echo "test-host.sh: error: the test host is unusable ($failed), see the console above" >&2
	else
		echo "test-host.sh: error: L1 ended (QEMU status $qemu_rc) without reporting the command's exit status; L1 crashed or the command killed it" >&2
	fi
	exit 125
fi
echo "test-host.sh: command exited with status $status; whole run took $(elapsed)s" >&2
exit "$status"
