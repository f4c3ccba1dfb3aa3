#!/bin/bash
# Host side of the end-to-end tests: boots the nested test host once (scripts/test-host.sh)
# and runs the named scenarios of tests/e2e/scenarios.sh in it, then prints one line per
# check and per scenario, with timings. Exits 0 only if every scenario was reported and passed.
#
#   tests/e2e/run-e2e.sh [--build-dir DIR] [--kdom PATH] [--vmm kdom|qemu] [--timeout S]
#                        [--guest-timeout S] SCENARIO...
#
# --vmm qemu runs the same scenarios with QEMU/KVM in the test host instead of kdom: a
# reference that checks the guest image and the test host themselves.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$src/build
kdom=
vmm=kdom
timeout_s=900
guest_timeout=180
while [ $# -gt 0 ]; do
	case "$1" in
	--build-dir) build=$2; shift 2 ;;
	--kdom) kdom=$2; shift 2 ;;
	--vmm) vmm=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--guest-timeout) guest_timeout=$2; shift 2 ;;
	-*) echo "run-e2e.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: $0 [options] SCENARIO..." >&2; exit 2; }
scenarios=("$@")

args=(--build-dir "$build" --timeout "$timeout_s" --add "$here/scenarios.sh:e2e/scenarios.sh")
# A fresh 64 MiB ext4 image for the disk scenario (virtio-blk): L1's /dev/vda, which kdom
# gives its guest; afterwards this host checks what the guest wrote (e2fsck, debugfs).
PATH=$PATH:/sbin:/usr/sbin
disk_image=$(mktemp "${TMPDIR:-/tmp}/kdom-e2e-disk.XXXXXX")
truncate -s 64M "$disk_image"
mkfs.ext4 -q -F "$disk_image"
args+=(--disk "$disk_image")
# The host side of the vsock scenario (a static tool built with kdom).
[ ! -x "$build/vsock-client" ] || args+=(--add "$build/vsock-client:build/vsock-client")
case "$vmm" in
kdom)
	kdom=${kdom:-$build/kdom}
	if [ ! -x "$kdom" ]; then
		echo "run-e2e.sh: FAIL: no kdom binary at $kdom (build the project first)" >&2
		exit 1
	fi
	args+=(--kdom "$kdom")
	;;
qemu) args+=(--with-qemu) ;;
*) echo "run-e2e.sh: --vmm must be kdom or qemu" >&2; exit 2 ;;
esac

log=$(mktemp "${TMPDIR:-/tmp}/kdom-e2e.XXXXXX")
dumps=$(mktemp -d "${TMPDIR:-/tmp}/kdom-e2e-files.XXXXXX")
trap 'rm -rf "$log" "$disk_image" "$dumps"' EXIT
t0=$(date +%s)
# The whole test host may stop answering (every guest run inside has its own, shorter, limit)
# or its own kernel may crash (seen: "stack guard page was hit" in L1's page-fault entry):
# seen now and then with nested SVM under TCG, whatever the VMM, and then no scenario reached
# a verdict. Say so and run everything again on a fresh disk, three test hosts at most; a
# failure caused by the VMM comes back. (A scenario whose guest died of the same emulation's
# CPU faults runs again inside scenarios.sh, E2E-RETRY; any other failure is final.)
set +e
for attempt in 1 2 3; do
	if [ "$attempt" -gt 1 ]; then
		truncate -s 0 "$disk_image" && truncate -s 64M "$disk_image" && mkfs.ext4 -q -F "$disk_image"
		: >"$log"
	fi
	"$src/scripts/test-host.sh" "${args[@]}" --log "$log" -- \
		sh e2e/scenarios.sh "$vmm" "$guest_timeout" "${scenarios[@]}"
	host_rc=$?
	{ [ "$host_rc" = 124 ] || [ "$host_rc" = 125 ]; } && [ "$attempt" -lt 3 ] || break
	if [ "$host_rc" = 124 ]; then
		echo "run-e2e.sh: WARNING: the test host hung (its time limit, a soft lockup or a stopped heartbeat: see test-host.sh's error line above); running the scenarios again" >&2
	else
		echo "run-e2e.sh: WARNING: the test host itself failed (L1 crashed or /dev/kvm unusable); running the scenarios again" >&2
	fi
done
set -e
t1=$(date +%s)

echo
echo "==== e2e summary ($vmm; $(( t1 - t0 ))s in all) ===="
l1_ready=$(sed -n 's/^KDOM-TESTHOST: \/dev\/kvm ready at \([0-9.]*\)s.*/\1/p' "$log" | tail -n1)
echo "test host: L1 booted and /dev/kvm ready after ${l1_ready:-?}s (L1 uptime)"
sed -n 's/^E2E-TIME /time: /p' "$log"
# In order, so that a retried scenario's first checks stand before the retry's.
grep -E '^E2E-(CHECK|RETRY) ' "$log" | sed -e 's/^E2E-CHECK /check: /' -e 's/^E2E-RETRY /retry: /' || true
ok=1

# host_check NAME DETAIL TEST...: a check made on this host after the test host ended.
host_check() {
	local name=$1 detail=$2
	shift 2
	if "$@"; then
		echo "check: $name PASS $detail"
	else
		echo "check: $name FAIL $detail"
		ok=0
	fi
}
# The files the guest wrote in the disk scenario, as this host sees them in the image.
check_disk_on_host() {
	local fsck_out fsck_rc sums_file name sum got=0 bad=0
	fsck_out=$(e2fsck -fn "$disk_image" 2>&1) && fsck_rc=0 || fsck_rc=$?
	host_check disk.host-e2fsck "e2fsck -fn on this host: status $fsck_rc, $(echo "$fsck_out" | tail -n1)" \
		[ "$fsck_rc" = 0 ]
	sums_file=$dumps/SUMS
	debugfs -R "dump /SUMS $sums_file" "$disk_image" >/dev/null 2>&1 || true
	if [ -s "$sums_file" ]; then
		while read -r sum name; do
			debugfs -R "dump /$name $dumps/$name" "$disk_image" >/dev/null 2>&1 || true
			got=$((got + 1))
			# The same sum as the guest computed and printed on its console.
			if [ "$(sha256sum <"$dumps/$name" 2>/dev/null | cut -d' ' -f1)" != "$sum" ] ||
				! grep -q "kdom-guest: disk wrote $name $sum" "$log"; then
				bad=$((bad + 1))
			fi
		done <"$sums_file"
	fi
	host_check disk.host-debugfs "$got files read out of the image with debugfs, $bad with a checksum other than the guest's" \
		[ "$got:$bad" = 3:0 ]
}
for s in "${scenarios[@]}"; do
	[ "$s" = disk ] && [ "$vmm" = kdom ] && check_disk_on_host
done
for s in "${scenarios[@]}"; do
	r=$(sed -n "s/^E2E-SCENARIO $s \\(PASS\\|FAIL\\) .*/\\1/p" "$log" | tail -n1)
	case "$r" in
	PASS) echo "scenario $s: PASS" ;;
	FAIL) echo "scenario $s: FAIL"; ok=0 ;;
	*) echo "scenario $s: FAIL (not reported: the test host or the run ended early)"; ok=0 ;;
	esac
done
if grep -q '^E2E-CHECK setup\.[a-z]* FAIL' "$log"; then
	ok=0
fi
if [ "$host_rc" -ne 0 ]; then
	case "$host_rc" in
	124) echo "test host: FAIL (three test hosts in a row hung or failed; the last one hung: its ${timeout_s}s limit, a soft lockup or a stopped heartbeat)" ;;
	125) echo "test host: FAIL (three test hosts in a row hung or failed; the last one failed itself: /dev/kvm unusable or L1 crashed)" ;;
	*) echo "test host: the scenarios exited with status $host_rc" ;;
	esac
	ok=0
fi
[ "$ok" = 1 ] && echo "e2e ($vmm): ALL PASSED" && exit 0
echo "e2e ($vmm): FAILED"
exit 1
