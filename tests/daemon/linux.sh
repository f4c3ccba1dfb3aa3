#!/usr/bin/env bash
# kdomd with Debian's stock kernel and the default guest initramfs, on hardware virtualization
# (the nested test host, through with-kvm.sh, where this machine has none): `kdom create` from an
# xl.cfg with an ext4 disk and a vif on a Linux bridge (in a network namespace of this test's
# own), the guest's console in the log and through the API, `kdom shutdown -w` through the
# guest's power button with on_poweroff=destroy leaving no process, run directory or TAP, and
# `kdom reboot` with on_reboot=restart booting the same domain again.
#   linux.sh KDOM KDOMD GUEST_DIR
set -uo pipefail
if [ -z "${KDOM_IN_NETNS:-}" ]; then
  # Bridges and TAPs only in a network namespace made for this run.
  KDOM_IN_NETNS=1 exec unshare --net -- "$0" "$@"
fi
kdom=$1
kdomd=$2
guest=$3
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_work linux
log_has() { grep -q -- "$2" "$work/log/$1.log" 2>/dev/null; }
log_count() { grep -c -- "$2" "$work/log/$1.log" 2>/dev/null || echo 0; }

ip link set lo up
ip link add kdombr0 type bridge
ip link set kdombr0 up
truncate -s 64M "$work/disk.img"
mkfs.ext4 -q -F "$work/disk.img"

start_daemon || exit 1

cat >"$work/web.cfg" <<EOF
name = "web"
memory = 256
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
extra = "console=ttyS0 kdom.action=power-button"
disk = [ '$work/disk.img,raw,xvda,rw' ]
vif = [ 'mac=52:54:00:12:34:56,bridge=kdombr0' ]
on_poweroff = "destroy"
EOF
"$kdom" create "$work/web.cfg" >"$work/create.out" 2>&1
check create "kdom create of an xl.cfg with a disk and a bridged vif" -- "$kdom" domid web
web_id=$("$kdom" domid web 2>/dev/null)
tap=kdom$web_id.0
check tap-on-bridge "TAP $tap made and put on kdombr0" -- bash -c "ip link show master kdombr0 | grep -q '$tap'"
check boots "the guest's init runs (console log)" -- wait_for 240 log_has web "kdom-guest: power-button ready"
check guest-sees-devices "the guest sees its disk and NIC" -- log_has web "kdom-guest: devices .*vda.*eth0"
check console-api "the console reaches kdom console --log" -- bash -c "'$kdom' console --log web | grep -q 'Linux version'"
"$kdom" shutdown -w web >"$work/shutdown.out" 2>&1
check shutdown-w "kdom shutdown -w returns once the guest powered off" -- log_has web "power button pressed"
check destroyed "on_poweroff=destroy: the domain is gone" -- domain_absent web
no_vmm() { ! pgrep -f -- "--config $work/run/domains/$1/" >/dev/null; }  # not in a bash -c: it would match itself
check no-process "no VMM process left" -- no_vmm "$web_id"
check no-run-dir "no run directory left" -- [ ! -e "$work/run/domains/$web_id" ]
check no-tap "no TAP left" -- bash -c "! ip link show '$tap' >/dev/null 2>&1"

cat >"$work/boots.cfg" <<EOF
name = "boots"
memory = 256
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
extra = "console=ttyS0 kdom.action=power-button"
on_reboot = "restart"
EOF
"$kdom" create "$work/boots.cfg" >/dev/null 2>&1
boots_id=$("$kdom" domid boots 2>/dev/null)
wait_for 240 log_has boots "kdom-guest: power-button ready"
"$kdom" reboot boots >"$work/reboot.out" 2>&1
check reboot-same-id "kdom reboot with on_reboot=restart keeps id $boots_id" -- [ "$("$kdom" domid boots 2>/dev/null)" = "$boots_id" ]
booted_twice() { [ "$(log_count boots 'kdom-guest: init reached')" -ge 2 ]; }
check reboot-boots-again "the guest boots again" -- wait_for 240 booted_twice
"$kdom" destroy boots
check destroy "kdom destroy: gone" -- domain_absent boots

if [ "$failed" -gt 0 ]; then
  echo "kdomd log:"
  tail -n 40 "$work/kdomd.log" | sed 's/^/    /'
  for f in "$work"/log/*.log "$work"/*.out; do
    [ -f "$f" ] && { echo "$f:"; tail -n 30 "$f" | sed 's/^/    /'; }
  done
fi
echo "daemon-linux: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
