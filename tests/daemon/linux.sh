#!/usr/bin/env bash
# kdomd with Debian's stock kernel and the default guest initramfs, on hardware virtualization
# (the nested test host, through with-kvm.sh, where this machine has none): `kdom create` from an
# xl.cfg with an ext4 disk and a vif on a Linux bridge (in a network namespace of this test's
# own), the guest's console in the log and through the API, `kdom shutdown -w` through the
# guest's power button with on_poweroff=destroy leaving no process, run directory or TAP,
# `kdom reboot` with on_reboot=restart booting the same domain again, the store from inside a
# guest over vsock (its own keys, not another's, its quota, watches both ways), and the
# figures: kdom top (batch and on a tmux terminal), vcpu-list and vcpu-pin, /metrics (promtool),
# hot-plug: a second ext4 disk and a second NIC added to and taken from a running guest
# (block-/network-attach, -list, -detach, the NIC's forced), with the events, store keys and bad
# input; and save/restore: a guest counting on its disk, console and a TCP connection from the
# host saved (to a full file system first: refused, runs on), restored by a kdomd started
# again (with an on_crash setting) without a reboot, its count, TCP stream, date and disk
# (fsck) intact, then saved with -c and with -p.
# A part stops at a failed check that the rest of it needs (its guest's boot), so a guest that
# the test host's emulated CPU failed costs a test host minutes less (docs/testing.md).
#   linux.sh KDOM KDOMD GUEST_DIR [PART...]
#     PART: lifecycle, reboot, store, hotplug, save-restore (default: all)
set -uo pipefail
if [ -z "${KDOM_IN_NETNS:-}" ]; then
  # Bridges and TAPs only in a network namespace made for this run.
  KDOM_IN_NETNS=1 exec unshare --net -- "$0" "$@"
fi
kdom=$1
kdomd=$2
guest=$3
shift 3
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(lifecycle reboot store hotplug save-restore)
for part in "${parts[@]}"; do
  case $part in lifecycle | reboot | store | hotplug | save-restore) ;; *) echo "linux.sh: no part '$part'" >&2; exit 2 ;; esac
done
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

# on_terminal_output FILE: what script(1) kept of a terminal, a line for each line drawn
# (a carriage return starts one; the erase-line sequence and script's own lines dropped).
on_terminal_output() {
  tr '\r' '\n' <"$1" | sed 's/\x1b\[K//g' | grep -v -e '^$' -e '^Script started on ' -e '^Script done on '
}
refused() {  # refused OUTPUT_FILE TEXT -- COMMAND...: fails with a one-line error containing TEXT
  local out=$1 text=$2
  shift 3
  ! "$@" >"$out" 2>&1 && [ "$(wc -l <"$out")" -eq 1 ] && grep -q -- "$text" "$out"
}
# link_mac NAME: an interface's MAC (ip, not /sys/class/net, which shows another namespace's).
link_mac() { ip -o link show dev "$1" 2>/dev/null | sed -n 's|.* link/ether \([0-9a-f:]*\) .*|\1|p'; }
no_vmm() { ! pgrep -f -- "--config $work/run/domains/$1/" >/dev/null; }  # not in a bash -c: it would match itself
# The hot-plug and save-restore guests ping or connect to the host here.
ip addr add 10.0.9.1/24 dev kdombr0

start_daemon || exit 1
# What a part leaves when it stops early (a check the rest needs failed): the top's terminal,
# the full file system, the ticks' reader.
extra_cleanup() {
  [ -n "${tmux_socket:-}" ] && tmux -S "$tmux_socket" kill-server 2>/dev/null
  mountpoint -q "$work/full" && umount "$work/full"
  [ -n "${ticks_reader:-}" ] && kill "$ticks_reader" 2>/dev/null
  return 0
}

part_lifecycle() {

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
tap_mac=$(link_mac "$tap")
check tap-mac "its own MAC is fe: and the guest's last five bytes, the bridge's now too ($tap_mac)" -- \
  [ "$tap_mac $(link_mac kdombr0)" = "fe:54:00:12:34:56 fe:54:00:12:34:56" ]
check boots "the guest's init runs (console log)" -- wait_wall 150 log_has web "kdom-guest: power-button ready" || return
check guest-sees-devices "the guest sees its disk and NIC" -- log_has web "kdom-guest: devices .*vda.*eth0"
check console-api "the console reaches kdom console --log" -- bash -c "'$kdom' console --log web | grep -q 'Linux version'"
# The domain's figures: kdom top in batch and on a terminal (tmux), vcpu-list and vcpu-pin,
# /metrics held against promtool.
"$kdom" top -b -i 1 -d 1 >"$work/top.out" 2>&1
check top-batch "kdom top -b: web with 1 vCPU, 1 NIC, 1 disk: $(grep '^web ' "$work/top.out")" -- \
  bash -c "awk '\$1 == \"web\" && \$8 == 1 && \$9 == 1 && \$12 == 1' '$work/top.out' | grep -q ."
tmux_socket=$work/tmux
tmux -S "$tmux_socket" new-session -d -s top -x 150 -y 20 \
  "KDOM_SOCKET='$KDOM_SOCKET' '$kdom' top -d 1; echo top-exited-\$?; sleep 60"
pane_has() { tmux -S "$tmux_socket" capture-pane -p -t top | grep -q -- "$1"; }
check top-terminal "kdom top on a terminal draws its table with web" -- \
  wait_wall 30 bash -c "tmux -S '$tmux_socket' capture-pane -p -t top | grep -q 'kdom top - 1 domains' &&
                       tmux -S '$tmux_socket' capture-pane -p -t top | grep -q '^web '"
tmux -S "$tmux_socket" send-keys -t top q
check top-quits "q quits kdom top (status 0)" -- wait_wall 30 pane_has top-exited-0
tmux -S "$tmux_socket" kill-server 2>/dev/null
curl -s --unix-socket "$KDOM_SOCKET" http://kdomd/metrics >"$work/metrics.txt"
check metrics-promtool "GET /metrics passes promtool check metrics" -- bash -c "promtool check metrics <'$work/metrics.txt'"
check metrics-disk "the metrics count web's disk reads" -- \
  grep -q "^kdom_block_reads_total{domain=\"web\",id=\"$web_id\",device=\"xvda\"} [1-9]" "$work/metrics.txt"
check metrics-vcpu "... and its vCPU's exits" -- \
  grep -q "^kdom_vcpu_exits_total{domain=\"web\",id=\"$web_id\",vcpu=\"0\",reason=\"io\"} [1-9]" "$work/metrics.txt"

"$kdom" shutdown -w web >"$work/shutdown.out" 2>&1
check shutdown-w "kdom shutdown -w returns once the guest powered off" -- log_has web "power button pressed"
check destroyed "on_poweroff=destroy: the domain is gone" -- domain_absent web
check no-process "no VMM process left" -- no_vmm "$web_id"
check no-run-dir "no run directory left" -- [ ! -e "$work/run/domains/$web_id" ]
check no-tap "no TAP left" -- bash -c "! ip link show '$tap' >/dev/null 2>&1"
}

part_reboot() {
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
check reboot-boots "the guest boots" -- wait_wall 150 log_has boots "kdom-guest: power-button ready" || return
"$kdom" reboot boots >"$work/reboot.out" 2>&1
check reboot-same-id "kdom reboot with on_reboot=restart keeps id $boots_id" -- [ "$("$kdom" domid boots 2>/dev/null)" = "$boots_id" ]
booted_twice() { [ "$(log_count boots 'kdom-guest: init reached')" -ge 2 ]; }
check reboot-boots-again "the guest boots again" -- wait_wall 150 booted_twice
# CPU 0 of a host with one CPU (the test host, see with-kvm.sh) is all of them, as xl shows it.
pinned=0
[ "$(nproc --all)" -gt 1 ] || pinned=all
"$kdom" vcpu-pin boots 0 0 >"$work/pin.out" 2>&1
check vcpu-pin "kdom vcpu-pin boots 0 0: vcpu-list shows the affinity $(awk '$1 == "boots" {print $7}' <("$kdom" vcpu-list boots)) ($pinned expected)" -- \
  bash -c "'$kdom' vcpu-list boots | awk '\$1 == \"boots\" && \$3 == 0 && \$7 == \"$pinned\"' | grep -q ."
"$kdom" destroy boots
check destroy "kdom destroy: gone" -- domain_absent boots
}

part_store() {
# The store from inside a guest (vsock), as a guest agent uses xenstore: its own keys and not
# another domain's, its quota, a watch each way. The other domain is made paused (kdom create
# -p): it has its keys, and no guest of its own to boot in the test host.
cat >"$work/other.cfg" <<EOF
name = "other"
memory = 128
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
EOF
"$kdom" create -p "$work/other.cfg" >/dev/null 2>&1
other_id=$("$kdom" domid other 2>/dev/null)
"$kdom" store watch /local/domain >"$work/store-watch.out" 2>&1 &
store_watch=$!
cat >"$work/agent.cfg" <<EOF
name = "agent"
memory = 256
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
extra = "console=ttyS0 kdom.action=store kdom.other=$other_id"
vsock = 3
EOF
"$kdom" create "$work/agent.cfg" >/dev/null 2>&1
agent_id=$("$kdom" domid agent 2>/dev/null)
check store-guest-reads "the guest read its own name and domid over vsock" -- \
  wait_wall 150 log_has agent "kdom-guest: store name=agent domid=$agent_id" || return
guest_wrote() { [ "$("$kdom" store read "/local/domain/$agent_id/data/hello" 2>/dev/null)" = "from the guest" ]; }
check store-guest-writes "the guest wrote data/hello; the host reads it" -- wait_wall 30 guest_wrote
host_watch_saw() { grep -q "written /local/domain/$agent_id/data/hello" "$work/store-watch.out"; }
check store-host-watch "kdom store watch on the host saw the guest's write" -- wait_wall 30 host_watch_saw
check store-other-refused "the guest may not read another domain's name" -- \
  wait_wall 60 log_has agent "store another domain refused: kdom-store: domain $agent_id may not read /local/domain/$other_id/name"
check store-own-read-only "the guest may not write its own name (kdomd's)" -- \
  log_has agent "store own name read-only: kdom-store: domain $agent_id may not write /local/domain/$agent_id/name"
check store-quota "a guest flooding the store stops at its quota (1000 nodes)" -- \
  wait_wall 120 log_has agent "store flood: 997 written, then: ERR domain $agent_id would own more than 1000 store nodes"
check store-others-intact "the other domain's name is untouched" -- [ "$("$kdom" store read "/local/domain/$other_id/name")" = other ]
wait_wall 120 log_has agent "kdom-guest: store watching data/cmd"
"$kdom" store write "/local/domain/$agent_id/data/cmd" go
check store-guest-watch "the guest's watch saw the host's write" -- \
  wait_wall 60 log_has agent "store watch saw: written /local/domain/$agent_id/data/cmd value=go"
keys_gone() { ! "$kdom" store read "/local/domain/$agent_id" >/dev/null 2>&1; }
check store-keys-go "the guest powered off: the domain and its keys are gone" -- wait_wall 60 keys_gone
kill "$store_watch" 2>/dev/null
"$kdom" destroy other
}

part_hotplug() {
# Hot-plug (ACPI PCI hot-plug, followed by the guest's own acpiphp): a guest with a disk and a
# NIC gets a second of each. kdom.action=hotplug waits for a new disk, mounts it and says its
# file, waits for it to go, then the same for a NIC (pinging the host's address on the bridge).
mkdir -p "$work/files"
echo "hello from the attached disk" >"$work/files/hotplug.txt"
truncate -s 32M "$work/extra.img"
mkfs.ext4 -q -F -d "$work/files" "$work/extra.img"
cat >"$work/hp.cfg" <<EOF
name = "hp"
memory = 256
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
extra = "console=ttyS0 kdom.action=hotplug kdom.ip=10.0.9.2/24 kdom.peer=10.0.9.1"
disk = [ '$work/disk.img,raw,xvda,rw' ]
vif = [ 'bridge=kdombr0' ]
EOF
"$kdom" events --json --domain hp >"$work/hp-events.out" 2>&1 &
hp_events=$!
"$kdom" create "$work/hp.cfg" >/dev/null 2>&1
hp_id=$("$kdom" domid hp 2>/dev/null)
check hp-boots "the guest boots" -- wait_wall 150 log_has hp "kdom-guest: hotplug ready" || return
"$kdom" block-attach hp "vdev=xvdb,access=ro,target=$work/extra.img" >"$work/block-attach.out" 2>&1
check block-attach "kdom block-attach of a second ext4 image to the running guest" -- [ $? -eq 0 ]
check block-list "kdom block-list shows xvdb connected, read-only" -- \
  bash -c "'$kdom' block-list hp | grep -q '^xvdb *ro *connected *$work/extra.img'"
check block-store "its keys are in the store" -- \
  [ "$("$kdom" store read "/local/domain/$hp_id/device/vbd/xvdb/state" 2>/dev/null)" = connected ]
check block-guest-reads "the guest mounts the new disk and reads its file" -- \
  wait_wall 120 log_has hp "kdom-guest: hotplug disk vdb says: hello from the attached disk"
check block-attach-again "attaching the same image again is refused" -- \
  refused "$work/bad1.out" "attached to domain hp already" -- "$kdom" block-attach hp "vdev=xvdc,target=$work/extra.img"
check block-attach-missing "attaching a missing image is refused" -- \
  refused "$work/bad2.out" "does not exist" -- "$kdom" block-attach hp "target=$work/missing.img"
check block-detach-unknown "detaching an unknown disk is refused" -- \
  refused "$work/bad3.out" "has no disk 'xvdz'" -- "$kdom" block-detach hp xvdz
"$kdom" block-detach -w 120 hp xvdb >"$work/block-detach.out" 2>&1
check block-detach "kdom block-detach returns once the guest let go" -- [ $? -eq 0 ]
check block-gone "the disk is gone from the guest, block-list and the store; xvda stays" -- bash -c \
  "grep -q 'kdom-guest: hotplug disk vdb gone' '$work/log/hp.log' && ! '$kdom' block-list hp | grep -q xvdb &&
   '$kdom' block-list hp | grep -q '^xvda *rw *connected' &&
   ! '$kdom' store read /local/domain/$hp_id/device/vbd/xvdb >/dev/null 2>&1"
"$kdom" network-attach hp bridge=kdombr0 >"$work/network-attach.out" 2>&1
check network-attach "kdom network-attach of a second NIC on kdombr0: $(cat "$work/network-attach.out")" -- \
  bash -c "ip link show master kdombr0 | grep -q 'kdom$hp_id.1'"
check network-list "kdom network-list shows devid 1 connected on kdombr0" -- \
  bash -c "'$kdom' network-list hp | grep -q '^1 *02:6b:64:..:..:.. *connected *kdombr0 *kdom$hp_id.1'"
check network-ping "the guest brings the new NIC up and pings the host over it" -- \
  wait_wall 120 log_has hp "kdom-guest: hotplug nic eth1 mac=02:6b:64:.* ping 10.0.9.1 replies=3/3"
# Forced: the NIC stops and leaves the domain at once; the guest is still asked to let go, and
# does (its driver resets the stopped device on the way out).
"$kdom" network-detach -f hp 1 >"$work/network-detach.out" 2>&1
check network-detach "kdom network-detach -f: the NIC and its TAP are gone at once, the first NIC stays" -- \
  bash -c "! ip link show 'kdom$hp_id.1' >/dev/null 2>&1 && ! '$kdom' network-list hp | grep -q '^1 ' &&
           '$kdom' network-list hp | grep -q '^0 .*connected *kdombr0 *kdom$hp_id.0'"
check network-gone "the guest let the forced NIC go too" -- wait_wall 60 log_has hp "kdom-guest: hotplug nic eth1 gone"
hp_events_seen() {
  grep -q '"event":"device-attached".*"kind":"disk"' "$work/hp-events.out" &&
    grep -q '"by":"request".*"event":"device-detached".*"kind":"disk"' "$work/hp-events.out" &&
    grep -q '"event":"device-attached".*"kind":"vif"' "$work/hp-events.out" &&
    grep -q '"by":"force".*"event":"device-detached".*"kind":"vif"' "$work/hp-events.out"
}
check hotplug-events "kdom events saw each device attached and detached" -- wait_wall 30 hp_events_seen
kill "$hp_events" 2>/dev/null
"$kdom" destroy hp >/dev/null 2>&1
}

# network_picture: what the host sees of the guests' network, twice 5 s apart (a check on a
# TCP connection failed): each TAP's counters, the bridge's forwarding table, the neighbours,
# the host's end of the connection and its TCP stack's counters of segments dropped or sent again.
network_picture() {
  local round
  for round in 1 2; do
    echo "-- $(date +%T)"
    ip link show kdombr0
    ip -s link show master kdombr0
    bridge fdb show br kdombr0 | grep -v permanent
    ip neigh show dev kdombr0
    ss -tnie
    nstat -az | grep -iE 'paws|retrans|drop|InErrs|OutRsts|InSegs|OutSegs|Challenge|OldAck|TSECR|DupAck' | grep -v ' 0 '
    [ "$round" = 2 ] || sleep 5
  done
}

part_save_restore() {
# Save and restore (xl save, xl restore): a guest counting on its disk, its console and a TCP
# connection the host opened to it is saved to a file, destroyed, restored by a kdomd started
# again (as after a host reboot), and counts on.
truncate -s 64M "$work/counter.img"
mkfs.ext4 -q -F "$work/counter.img"
cat >"$work/sr.cfg" <<EOF
name = "sr"
memory = 256
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
extra = "console=ttyS0 kdom.action=counter kdom.ip=10.0.9.3/24 kdom.peer=10.0.9.1 kdom.listen=7000"
disk = [ '$work/counter.img,raw,xvda,rw' ]
vif = [ 'bridge=kdombr0' ]
on_poweroff = "destroy"
EOF
"$kdom" create "$work/sr.cfg" >/dev/null 2>&1
counts() { sed -n 's/.*kdom-guest: counter \([0-9]*\) epoch=.*/\1/p' "$work/log/sr.log"; }
last_count() { counts | tail -n 1; }
counted_to() { [ "$(last_count)" -ge "$1" ] 2>/dev/null; }
consecutive() { awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad || NR == 0 }'; }
check sr-counts "the counting guest runs" -- wait_wall 150 counted_to 4 || return
# The host connects to the guest's port 7000 (busybox nc, busybox-static: there may be no nc),
# which sends its ticks. nc ends the connection when its stdin ends: a FIFO held open (fd 9)
# keeps it.
mkfifo "$work/ticks-hold"
exec 9<>"$work/ticks-hold"
busybox nc 10.0.9.3 7000 <"$work/ticks-hold" >"$work/ticks.out" 2>"$work/ticks.err" &
ticks_reader=$!
ticks_at_least() { [ "$(wc -l <"$work/ticks.out")" -ge "$1" ]; }
check sr-tcp "the host's TCP connection to the guest brings its ticks" -- wait_wall 30 ticks_at_least 3 || return
mkdir -p "$work/full"
mount -t tmpfs -o size=1m tmpfs "$work/full"
refused "$work/sr-full.out" "No space left on device" -- "$kdom" save sr "$work/full/sr.snap"
rc=$?
check sr-save-full "a save to a full file system is refused: $(cat "$work/sr-full.out")" -- [ $rc -eq 0 ]
check sr-save-full-clean "and leaves no file" -- [ -z "$(ls -A "$work/full")" ]
before=$(last_count)
check sr-save-full-runs "the domain counts on after the failed save" -- wait_wall 30 counted_to $((before + 3))
bridge_mac=$(link_mac kdombr0)
"$kdom" save sr "$work/sr.snap" >"$work/sr-save.out" 2>&1
rc=$?
check sr-save "kdom save: $(cat "$work/sr-save.out")" -- [ $rc -eq 0 ]
check sr-save-gone "the saved domain is gone" -- domain_absent sr
saved_at=$(last_count)
ticks_saved=$(wc -l <"$work/ticks.out")
# A host reboot, as far as kdomd sees one: it stops, its run directory goes, it starts again.
kill -9 "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null
rm -rf "$work/run"
check sr-kdomd-again "kdomd started again with an empty run directory" -- start_daemon
sleep 3
# On a terminal (script(1)), as the save -c below: kdom restore shows how far the VMM has read.
t0=$(date +%s%N)
script -qec "'$kdom' restore '$work/sr.snap' 'on_crash=\"preserve\"'; echo \"status \$?\"" "$work/sr-restore.tty" \
  >/dev/null 2>&1
restore_ms=$((($(date +%s%N) - t0) / 1000000))
on_terminal_output "$work/sr-restore.tty" >"$work/sr-restore.out"
check sr-restore "kdom restore: $(tail -n 2 "$work/sr-restore.out" | head -n 1)" -- \
  [ "$(tail -n 1 "$work/sr-restore.out")" = "status 0" ]
progress_lines=$(grep -cE '^restoring: +([0-9]+% \([0-9]+ of [0-9]+ MiB\)|starting)$' "$work/sr-restore.out")
check sr-restore-progress "on a terminal: $progress_lines progress lines in $restore_ms ms, then cleared" -- \
  awk -v n="$progress_lines" -v ms="$restore_ms" -v line="$(tail -n 2 "$work/sr-restore.out" | head -n 1)" \
  'BEGIN { exit !((n > 0 || ms < 500) && line ~ /^restored domain sr /) }'
"$kdom" list -l sr >"$work/sr-list.out" 2>&1
check sr-bridge-mac "kdombr0's MAC is the same with the restored domain's new TAP ($bridge_mac)" -- \
  [ "$(link_mac kdombr0)" = "$bridge_mac" ]
check sr-restore-override "the restore's setting on_crash=\"preserve\" is in its config" -- \
  grep -q '"on_crash": "preserve"' "$work/sr-list.out"
check sr-counts-on "the guest counts on from $saved_at" -- wait_wall 60 counted_to $((saved_at + 6))
check sr-no-reboot "without a reboot" -- [ "$(log_count sr 'kdom-guest: init reached')" -eq 1 ]
counts | consecutive
rc=$?
check sr-never-back "the console's count never went back nor skipped ($(counts | head -n 1)..$(last_count))" -- [ $rc -eq 0 ]
# Its TCP retransmissions back off until the new TAP is on the bridge: the next may be 25 s away.
check sr-tcp-on "the TCP connection from the host carries on ($ticks_saved ticks at the save)" -- wait_wall 90 ticks_at_least $((ticks_saved + 5)) ||
  network_picture >"$work/sr-net.out" 2>&1
sed 's/^tick //' "$work/ticks.out" | consecutive
rc=$?
check sr-tcp-whole "every tick arrived once, in order ($(head -n 1 "$work/ticks.out")..$(tail -n 1 "$work/ticks.out"))" -- [ $rc -eq 0 ]
guest_epoch=$(sed -n 's/.*kdom-guest: counter [0-9]* epoch=\([0-9]*\).*/\1/p' "$work/log/sr.log" | tail -n 1)
skew=$(($(date +%s) - guest_epoch))
check sr-date "the guest's date is right after the restore (${skew#-} s off)" -- [ "${skew#-}" -le 5 ]
# On a terminal (script(1) gives it one and keeps what it drew), kdom save shows its progress.
script -qec "'$kdom' save -c sr '$work/sr-c.snap'" "$work/sr-c.tty" >/dev/null 2>&1
on_terminal_output "$work/sr-c.tty" >"$work/sr-c.out"
check sr-save-c "kdom save -c: $(tail -n 1 "$work/sr-c.out")" -- [ -s "$work/sr-c.snap" ]
save_seconds=$(sed -n 's/.* MiB in \([0-9.]*\) s .*/\1/p' "$work/sr-c.out")
progress_lines=$(grep -cE '^saving sr: +([0-9]+% \([0-9]+ of 256 MiB\)|starting)$' "$work/sr-c.out")
check sr-save-progress "on a terminal: $progress_lines progress lines in ${save_seconds:-?} s, then cleared" -- \
  awk -v n="$progress_lines" -v s="${save_seconds:-0}" -v last="$(tail -n 1 "$work/sr-c.out")" \
  'BEGIN { exit !((n > 0 || s < 0.3) && last ~ /^saved domain sr: /) }'
before=$(last_count)
check sr-save-c-counts "and the domain counts on" -- wait_wall 30 counted_to $((before + 3))
# kdom save -p: saved and left paused; it counts on once unpaused.
"$kdom" save -p sr "$work/sr-p.snap" >"$work/sr-p.out" 2>&1
rc=$?
check sr-save-p "kdom save -p: $(tail -n 1 "$work/sr-p.out")" -- [ $rc -eq 0 ]
paused_at=$(last_count)
sleep 2
stood_still() {
  [ -s "$work/sr-p.snap" ] && [ "$(last_count)" = "$paused_at" ] &&
    "$kdom" list sr 2>/dev/null | awk '$1 == "sr" { print $5 }' | grep -q p
}
check sr-save-p-paused "it wrote its file, is left paused (kdom list) and counts no more (at $paused_at)" -- stood_still
"$kdom" unpause sr >/dev/null 2>&1
check sr-save-p-unpaused "kdom unpause: it counts on" -- wait_wall 30 counted_to $((paused_at + 3))
"$kdom" shutdown -w sr >/dev/null 2>&1
final=$(last_count)
check sr-disk-count "the guest stopped at $final and unmounted its disk" -- \
  wait_wall 30 log_has sr "counter stopped at $final, disk unmounted"
check sr-disk-file "the disk's counter file says $final" -- \
  [ "$(debugfs -R 'cat /counter' "$work/counter.img" 2>/dev/null)" = "$final" ]
check sr-fsck "the disk is clean (e2fsck -fn)" -- e2fsck -fn "$work/counter.img"
umount "$work/full"
kill "$ticks_reader" 2>/dev/null
exec 9>&-
}

for part in "${parts[@]}"; do
  "part_${part//-/_}"
done

if [ "$failed" -gt 0 ]; then
  dump_stalled_guests
  echo "kdomd log:"
  tail -n 40 "$work/kdomd.log" | sed 's/^/    /'
  for f in "$work"/log/*.log "$work"/*.out; do
    [ -f "$f" ] && { echo "$f:"; tail -n 30 "$f" | sed 's/^/    /'; }
  done
  if cause=$(test_host_fault "$work/kdomd.log" "$work"/log/*.log); then
    echo "daemon-linux: $cause: the test host's emulated CPU (docs/testing.md); status 125, so that with-kvm.sh starts another test host"
    exit 125
  fi
fi
echo "daemon-linux: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
