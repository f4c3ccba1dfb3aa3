#!/bin/bash
# Runs a test that needs KVM where KVM is: on this machine when its /dev/kvm can be opened,
# otherwise inside the nested test host (scripts/test-host.sh --host-root), which has a real
# /dev/kvm and sees this machine's files at the same paths. Says loudly which one it chose.
# Used by the ctest tests that start domains (labels `guests` and `kvm`).
#
# Usage: tests/with-kvm.sh [--timeout S] [--hardware] -- COMMAND [ARGS...]
#   --timeout S   the test host's wall-clock limit (default 240); unused on this machine
#   --hardware    the command boots a stock Linux kernel: it needs hardware virtualization, so
#                 a /dev/kvm that is kvm_pvm (software-assisted: a stock kernel stops early in
#                 its boot) sends it to the test host as a missing /dev/kvm does; there its L1
#                 has one CPU (--smp 1): with two, the emulated SVM failed a stock guest's boot
#                 in about half the test hosts on 2026-12-07, with one in none (docs/testing.md)
# Exit status: COMMAND's. In the test host, 124 when its limit was hit and 125 when the
# test host itself failed. Either is tried again, four test hosts at most: the limit is a
# minute above what the command itself allows (its own time-outs end it first), so reaching it
# means the test host hung, which it does now and then whatever runs in it (docs/testing.md).
# KDOM_TEST_KVM=local or =test-host forces a place (local fails the test where /dev/kvm
# cannot be opened).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=240 hardware=0
while [ $# -gt 0 ]; do
	case $1 in
	--timeout) timeout_s=$2; shift 2 ;;
	--hardware) hardware=1; shift ;;
	--) shift; break ;;
	*) echo "with-kvm: unknown option $1" >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || { echo "with-kvm: no command given" >&2; exit 2; }

place=${KDOM_TEST_KVM:-}
if [ -z "$place" ]; then
	# Opening it read-write is what kdom does first; a node without a driver fails here.
	if [ -c /dev/kvm ] && (: <>/dev/kvm) 2>/dev/null && { [ "$hardware" = 0 ] || [ ! -e /sys/module/kvm_pvm ]; }; then
		place=local
	else
		place=test-host
	fi
fi
case $place in
local) exec "$@" ;;
test-host) ;;
*) echo "with-kvm: KDOM_TEST_KVM must be local or test-host, not '$place'" >&2; exit 2 ;;
esac

if [ -c /dev/kvm ] && [ -e /sys/module/kvm_pvm ] && [ "$hardware" = 1 ]; then
	echo "with-kvm: NOTE: this machine's /dev/kvm is kvm_pvm, on which a stock kernel does not boot; this test runs inside the nested test host"
else
	echo "with-kvm: NOTE: /dev/kvm cannot be opened on this machine; this test runs inside the nested test host"
fi
# KDOM_IN_TEST_HOST tells the command where it runs (tests/daemon/lib.sh's test_host_fault).
command_line=$(printf '%q ' env KDOM_IN_TEST_HOST=1 "$@")
l1_cpus=()
[ "$hardware" = 0 ] || l1_cpus=(--smp 1)
# Four test hosts at most: one that failed or hung itself gave no verdict on the test. (Three
# were not enough: on 2026-12-06 CI's daemon.probes lost all three to L1 kernel panics.)
attempts=4
for attempt in $(seq "$attempts"); do
	"$here/../scripts/test-host.sh" --host-root --timeout "$timeout_s" "${l1_cpus[@]}" -- "$command_line"
	rc=$?
	{ [ "$rc" = 124 ] || [ "$rc" = 125 ]; } && [ "$attempt" -lt "$attempts" ] || exit "$rc"
	echo "with-kvm: WARNING: the test host itself failed or hung (status $rc, not the test's verdict); trying again"
done
