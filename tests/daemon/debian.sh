#!/usr/bin/env bash
# The guest users run, under kdomd on hardware virtualization (the nested test host, through
# with-kvm.sh, where this machine has none): Debian 12 with systemd as init, booted from its
# virtio disk (root=/dev/vda, the image scripts/build-debian-rootfs.sh made), a vif on a Linux
# bridge (in a network namespace of this test's own). `kdom create -c` in a terminal (tmux)
# shows its login prompt; root logs in and runs a command, Ctrl-] detaches, `kdom console`
# attaches to the same shell again; the host pings the guest over the bridge; `kdom mem-set`
# shrinks it through its balloon, `kdom list` following; `kdom shutdown -w` powers it off
# through systemd-logind, and on_poweroff=destroy leaves no process, run directory or TAP.
#   debian.sh KDOM KDOMD GUEST_DIR
set -uo pipefail
if [ -z "${KDOM_IN_NETNS:-}" ]; then
  KDOM_IN_NETNS=1 exec unshare --net -- "$0" "$@"
fi
kdom=$1
kdomd=$2
guest=$3
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_work debian
tmux_socket=$work/tmux
extra_cleanup() { tmux -S "$tmux_socket" kill-server 2>/dev/null; }
log_has() { grep -q -- "$1" "$work/log/debian.log" 2>/dev/null; }

image=$guest/debian-rootfs.ext4
if [ ! -f "$image" ]; then
  echo "FAIL setup: $image is missing (scripts/setup.sh builds it with scripts/build-debian-rootfs.sh)"
  exit 1
fi
# The guest writes to its root file system: it gets a copy, the built image stays as it is.
cp --sparse=always "$image" "$work/root.ext4"

ip link set lo up
ip link add kdombr0 type bridge
ip addr add 10.99.0.1/24 dev kdombr0
ip link set kdombr0 up

start_daemon || exit 1

# As examples/debian-guest.cfg, with this test's copy of the image and its bridge.
cat >"$work/debian.cfg" <<EOF
name = "debian"
memory = 512
vcpus = 2
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
root = "/dev/vda"
extra = "console=ttyS0 net.ifnames=0 ip=10.99.0.2::10.99.0.1:255.255.255.0:kdom-debian:eth0:off"
disk = [ '$work/root.ext4,raw,xvda,rw' ]
vif = [ 'mac=52:54:00:99:00:02,bridge=kdombr0' ]
on_poweroff = "destroy"
EOF
# An operator at a terminal (tmux): `kdom create -c` creates the domain and attaches to its
# console at once; root logs in there and runs a command; Ctrl-] detaches, the domain runs on.
tmux_in() { tmux -S "$tmux_socket" "$@"; }
pane_has() { tmux_in capture-pane -p -t "$1" | grep -q -- "$2"; }
tmux_in new-session -d -s create -x 160 -y 40 \
  "KDOM_SOCKET=$KDOM_SOCKET $kdom create -c $work/debian.cfg 2>$work/create.out; echo console-ended; sleep 600"
check create "kdom create -c of the Debian guest" -- wait_for 60 "$kdom" domid debian
debian_id=$("$kdom" domid debian 2>/dev/null)
tap=kdom$debian_id.0
# The guest's scenario, stopped at its first check whose failure leaves the rest nothing to
# see (a boot the test host's emulated CPU failed), so a test host that failed costs minutes less.
scenario() {
check switch-root "the initramfs hands over to the disk's init" -- \
  wait_for 120 log_has "kdom-guest: switching to root=/dev/vda" || return
check systemd "systemd runs as init" -- wait_for 120 log_has "Welcome to .*Debian GNU/Linux 12" || return
check login-prompt "a login prompt on the serial console, in create -c's terminal" -- \
  wait_for 300 pane_has create "kdom-debian login:" || return
tmux_in send-keys -t create root Enter
check login "root logs in (a shell prompt)" -- wait_for 60 log_has "root@kdom-debian:~#"
tmux_in send-keys -t create 'echo kdom-says-$((6 * 7)) pid1=$(cat /proc/1/comm)' Enter
check command "a command typed there runs in the guest" -- wait_for 30 log_has "kdom-says-42 pid1=systemd"
check terminal "its output reaches the terminal" -- wait_for 10 pane_has create "kdom-says-42 pid1=systemd"
tmux_in send-keys -t create C-]
check detach "Ctrl-] detaches" -- wait_for 10 pane_has create console-ended

# Attach again with kdom console: the same shell, still logged in.
tmux_in new-session -d -s console -x 160 -y 40 "KDOM_SOCKET=$KDOM_SOCKET $kdom console debian; echo console-ended; sleep 600"
sleep 1
tmux_in send-keys -t console 'echo again-$((7 * 6)) user=$(id -un)' Enter
check reattach "kdom console reaches the same logged-in shell" -- wait_for 30 pane_has console "again-42 user=root"
tmux_in send-keys -t console C-]
check detach-again "Ctrl-] detaches kdom console" -- wait_for 10 pane_has console console-ended
listed_state() { "$kdom" list debian 2>/dev/null | awk '$1 == "debian" { print $5 }'; }
check still-running "the domain runs on after both detached" -- [ "$(listed_state)" = r----- ]

check tap-on-bridge "TAP $tap on kdombr0" -- bash -c "ip link show master kdombr0 | grep -q '$tap'"
check ping "the host pings the guest over the bridged vif (systemd-networkd, ip=)" -- \
  wait_for 120 ping -c 1 -W 2 10.99.0.2

# xl mem-set: the guest's balloon driver takes 128 MiB back, and kdom list's Mem follows once
# the VMM says the balloon reached the target (its event channel).
listed_mib() { [ "$("$kdom" list debian 2>/dev/null | awk '$1 == "debian" { print $3 }')" = "$1" ]; }
check listed-before "kdom list shows 512 MiB" -- listed_mib 512
check mem-set "kdom mem-set debian 384m" -- "$kdom" mem-set debian 384m
check mem-reached "kdom list shows 384 MiB once the guest's balloon holds 128 MiB" -- wait_for 60 listed_mib 384

"$kdom" shutdown -w debian >"$work/shutdown.out" 2>&1
shutdown_rc=$?
check shutdown-w "kdom shutdown -w returned 0 once the guest powered off" -- [ "$shutdown_rc" = 0 ]
check through-systemd "systemd powered the guest off (power button, logind)" -- log_has "reboot: Power down"
check destroyed "on_poweroff=destroy: the domain is gone" -- domain_absent debian
no_vmm() { ! pgrep -f -- "--config $work/run/domains/$1/" >/dev/null; }
check no-process "no VMM process left" -- no_vmm "$debian_id"
check no-tap "no TAP left" -- bash -c "! ip link show '$tap' >/dev/null 2>&1"
}
scenario

if [ "$failed" -gt 0 ]; then
  dump_stalled_guests
  echo "kdomd log:"
  tail -n 40 "$work/kdomd.log" | sed 's/^/    /'
  for f in "$work"/log/*.log "$work"/*.out; do
    [ -f "$f" ] && { echo "$f:"; tail -n 60 "$f" | sed 's/^/    /'; }
  done
  for pane in create console; do
    echo "terminal of $pane:"
    tmux -S "$tmux_socket" capture-pane -p -t "$pane" 2>/dev/null | sed 's/^/    /'
  done
  if cause=$(test_host_fault "$work/kdomd.log" "$work"/log/*.log); then
    echo "daemon-debian: $cause: the test host's emulated CPU (docs/testing.md); status 125, so that with-kvm.sh starts another test host"
    exit 125
  fi
fi
echo "daemon-debian: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
