#!/usr/bin/env bash
# Live migration of a stock Linux guest between two kdomds (the nested test host, through
# with-kvm.sh, where this machine has no KVM): hosts A and B are two network namespaces, each
# with a kdomd accepting migrations and a bridge kdombr0; the two bridges are one LAN (a veth
# pair between them) and a third namespace, C, is a client on it. The guest's disk is one ext4
# image both hosts reach at the same path (shared storage). The guest counts every 0.5 s on its
# disk and console and over a TCP connection to C; it is migrated A -> B, then back B -> A:
# the count never goes back nor skips, the guest never reboots, the TCP connection carries on
# with every tick once and in order, B's VMM sent the NIC's RARP five times, the image is clean
# (e2fsck) and holds the last count.
#   linux-migration.sh KDOM KDOMD GUEST_DIR
set -uo pipefail
kdom=$1
kdomd=$2
guest=$3
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
wait_for() { wait_wall "$@"; }  # bounded by wall-clock time (lib.sh)
setup_work linux-migration

suffix=$$
ns_a=kdom-lm-a-$suffix ns_b=kdom-lm-b-$suffix ns_c=kdom-lm-c-$suffix
pids=()
extra_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in "$ns_a" "$ns_b" "$ns_c"; do ip netns del "$ns" 2>/dev/null; done
}
A() { KDOM_SOCKET=$work/a.sock "$kdom" "$@"; }
B() { KDOM_SOCKET=$work/b.sock "$kdom" "$@"; }
die() {
  echo "FAIL linux-migration: $*"
  dump_stalled_guests
  for f in "$work"/*.log "$work"/*.out "$work"/a/log/*.log "$work"/b/log/*.log "$work"/*/run/*/vmm.log; do
    [ -s "$f" ] && { echo "----- $f"; tail -n 25 "$f" | cat -v; }
  done
  if cause=$(test_host_fault "$work"/*.log "$work"/a/log/*.log "$work"/b/log/*.log); then
    echo "linux-migration: $cause: the test host's emulated CPU (docs/testing.md); status 125, so that with-kvm.sh starts another test host"
    exit 125
  fi
  exit 1
}

# ------------------------------------------------------------ the LAN and two hosts
for ns in "$ns_a" "$ns_b" "$ns_c"; do
  ip netns add "$ns" || die "cannot make network namespaces (root needed)"
  ip -n "$ns" link set lo up
done
for ns in "$ns_a" "$ns_b"; do
  ip -n "$ns" link add kdombr0 type bridge
  ip -n "$ns" link set kdombr0 up
done
ip link add lm-ab type veth peer name lm-ba
ip link set lm-ab netns "$ns_a" && ip link set lm-ba netns "$ns_b"
ip -n "$ns_a" link set lm-ab master kdombr0 up && ip -n "$ns_b" link set lm-ba master kdombr0 up
ip link add lm-ca type veth peer name lm-c
ip link set lm-ca netns "$ns_a" && ip link set lm-c netns "$ns_c"
ip -n "$ns_a" link set lm-ca master kdombr0 up && ip -n "$ns_c" link set lm-c up
ip -n "$ns_a" addr add 10.0.9.1/24 dev kdombr0
ip -n "$ns_b" addr add 10.0.9.2/24 dev kdombr0
ip -n "$ns_c" addr add 10.0.9.5/24 dev lm-c
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
start_host() { # start_host NAME NS ADDRESS
  ip netns exec "$2" "$kdomd" --foreground --socket "$work/$1.sock" --state-dir "$work/$1/state" \
    --run-dir "$work/$1/run" --log-dir "$work/$1/log" --vmm "$kdom" --token-file "$work/token" \
    --migration-listen "$3:8003" >>"$work/$1.log" 2>&1 &
  pids+=("$!")
  host_socket=$work/$1.sock
  wait_for 30 eval 'KDOM_SOCKET=$host_socket "$kdom" list >/dev/null 2>&1' || die "kdomd $1 did not start"
}
start_host a "$ns_a" 10.0.9.1
start_host b "$ns_b" 10.0.9.2

# The client: busybox nc in C ends the connection when its stdin ends: a FIFO held open keeps it.
truncate -s 64M "$work/counter.img"
mkfs.ext4 -q -F "$work/counter.img"
mkfifo "$work/ticks-hold"
exec 9<>"$work/ticks-hold"
ip netns exec "$ns_c" busybox nc -l -p 7000 <"$work/ticks-hold" >"$work/ticks.out" 2>/dev/null &
pids+=("$!")
cat >"$work/lm.cfg" <<EOF
name = "lm"
memory = 256
kernel = "$guest/vmlinuz"
ramdisk = "$guest/initramfs.cpio.gz"
extra = "console=ttyS0 kdom.action=counter kdom.ip=10.0.9.3/24 kdom.peer=10.0.9.5"
disk = [ '$work/counter.img,raw,xvda,rw' ]
vif = [ 'mac=52:54:00:12:34:77,bridge=kdombr0' ]
on_poweroff = "destroy"
EOF
check create "kdom create on host A" -- A create "$work/lm.cfg"
# The console of the domain: host A's log, then B's, then A's again (offsets where each began).
counts() { cat "$@" 2>/dev/null | sed -n 's/.*kdom-guest: counter \([0-9]*\) epoch=.*/\1/p'; }
all_counts() { { head -c "$back_at" "$work/a/log/lm.log"; cat "$work/b/log/lm.log"; tail -c +"$((back_at + 1))" "$work/a/log/lm.log"; } 2>/dev/null | sed -n 's/.*kdom-guest: counter \([0-9]*\) epoch=.*/\1/p'; }
back_at=999999999
last_count() { all_counts | tail -n 1; }
counted_to() { [ "$(last_count)" -ge "$1" ] 2>/dev/null; }
consecutive() { awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad || NR == 0 }'; }
ticks_grew() { [ "$(wc -l <"$work/ticks.out")" -ge $(($1 + 5)) ]; }
wait_for 150 counted_to 4 || die "the guest never counted to 4 on A"  # 20-60 s in the test host
wait_for 60 ticks_grew 0 || die "no ticks reached C over TCP"
check counts "the counting guest runs on A, its TCP connection to C up" -- eval 'counted_to 4 && ticks_grew 0'

# ------------------------------------------------------------ A -> B
ticks_before=$(wc -l <"$work/ticks.out")
before=$(last_count)
A migrate lm 10.0.9.2 >"$work/a-to-b.out" 2>&1
rc=$?
check a-to-b "kdom migrate lm 10.0.9.2: $(tail -n 1 "$work/a-to-b.out")" -- [ $rc -eq 0 ]
check a-to-b-where "lm is gone from A and runs on B" -- eval '! A list lm >/dev/null 2>&1 && B list lm | grep -q "^lm .* r-----"'
check a-to-b-counts "it counts on on B from $before" -- wait_for 60 counted_to $((before + 6))
check a-to-b-tcp "its TCP connection to C carries on" -- wait_for 60 ticks_grew "$ticks_before"
announcements() { cat "$work"/b/run/domains/*/vmm.log 2>/dev/null | grep -c "announced 1 NIC(s) (RARP)"; }
check a-to-b-announced "B's VMM announced the NIC five times (RARP)" -- wait_for 10 eval '[ "$(announcements)" -eq 5 ]'

# ------------------------------------------------------------ B -> A
back_at=$(stat -c %s "$work/a/log/lm.log")
ticks_before=$(wc -l <"$work/ticks.out")
before=$(last_count)
B migrate lm 10.0.9.1 >"$work/b-to-a.out" 2>&1
rc=$?
check b-to-a "kdom migrate lm 10.0.9.1 back: $(tail -n 1 "$work/b-to-a.out")" -- [ $rc -eq 0 ]
check b-to-a-where "lm runs on A again, B has nothing" -- eval 'A list lm | grep -q "^lm .* r-----" && ! B list lm >/dev/null 2>&1'
check b-to-a-counts "it counts on on A from $before" -- wait_for 60 counted_to $((before + 6))
check b-to-a-tcp "its TCP connection to C carries on" -- wait_for 60 ticks_grew "$ticks_before"

# ------------------------------------------------------------ nothing lost
check no-reboot "the guest never rebooted" -- \
  eval '[ "$(cat "$work/a/log/lm.log" "$work/b/log/lm.log" | grep -c "kdom-guest: init reached")" -eq 1 ]'
all_counts | consecutive
rc=$?
check never-back "the console's count never went back nor skipped ($(all_counts | head -n 1)..$(last_count))" -- [ $rc -eq 0 ]
sed 's/^tick //' "$work/ticks.out" | consecutive
rc=$?
check tcp-whole "every tick reached C once, in order ($(head -n 1 "$work/ticks.out")..$(tail -n 1 "$work/ticks.out"))" -- [ $rc -eq 0 ]
guest_epoch=$(sed -n 's/.*kdom-guest: counter [0-9]* epoch=\([0-9]*\).*/\1/p' "$work/a/log/lm.log" | tail -n 1)
skew=$(($(date +%s) - guest_epoch))
check date "the guest's date is right after the migrations (${skew#-} s off)" -- [ "${skew#-}" -le 5 ]
A shutdown -w lm >/dev/null 2>&1
final=$(last_count)
check disk-count "the guest stopped at $final and unmounted its disk" -- \
  wait_for 30 eval 'grep -q "counter stopped at $final, disk unmounted" "$work/a/log/lm.log"'
check disk-file "the shared image's counter file says $final" -- \
  [ "$(debugfs -R 'cat /counter' "$work/counter.img" 2>/dev/null)" = "$final" ]
check fsck "the shared image is clean (e2fsck -fn)" -- e2fsck -fn "$work/counter.img"
exec 9>&-

if [ "$failed" -gt 0 ]; then
  dump_stalled_guests
  for f in "$work"/a.log "$work"/b.log "$work"/*.out "$work"/a/log/*.log "$work"/b/log/*.log; do
    [ -f "$f" ] && { echo "$f:"; tail -n 30 "$f" | sed 's/^/    /'; }
  done
  if cause=$(test_host_fault "$work"/*.log "$work"/a/log/*.log "$work"/b/log/*.log); then
    echo "linux-migration: $cause: the test host's emulated CPU (docs/testing.md); status 125, so that with-kvm.sh starts another test host"
    exit 125
  fi
fi
echo "linux-migration: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
