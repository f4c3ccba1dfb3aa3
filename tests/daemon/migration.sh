#!/usr/bin/env bash
# Live migration with probe guests (kdom migrate): two kdomds, each in a network namespace of
# its own joined to the other by a veth pair, each accepting migrations on its address with a
# shared token. The `dirty` probe rewrites 32 MiB at a set rate at CPL 3, checks every page
# after each pass and prints a tick counter kept in guest memory: after each migration its
# console (the source's log, then the destination's, joined) holds every tick once and in
# order, and no page check failed. Checked:
#   a wrong token is refused and the domain runs on; A -> B; B -> A with --json events;
#   A -> localhost (a new domain id, no network); a cancel during the rounds, the destination
#   killed during them, and the link cut during them: each time the domain runs on the source,
#   its pages and ticks intact, and the destination is left with nothing.
#   migration.sh KDOM KDOMD DIRTY_ELF
set -uo pipefail
kdom=$1
kdomd=$2
dirty=$3
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
wait_for() { wait_wall "$@"; }  # bounded by wall-clock time (lib.sh)
setup_work migration

ns_a=kdom-mig-a-$$ ns_b=kdom-mig-b-$$
addr_a=10.77.0.1 addr_b=10.77.0.2
pids=()
extra_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  ip netns del "$ns_a" 2>/dev/null
  ip netns del "$ns_b" 2>/dev/null
}
A() { KDOM_SOCKET=$work/a.sock "$kdom" "$@"; }
B() { KDOM_SOCKET=$work/b.sock "$kdom" "$@"; }

# start_host NAME NS ADDRESS: a kdomd in NS, its files under $work/NAME, migrations on ADDRESS
start_host() {
  local name=$1 ns=$2 address=$3
  ip netns exec "$ns" "$kdomd" --foreground --socket "$work/$name.sock" --state-dir "$work/$name/state" \
    --run-dir "$work/$name/run" --log-dir "$work/$name/log" --vmm "$kdom" --token-file "$work/token" \
    --migration-listen "$address:8003" >>"$work/$name.log" 2>&1 &
  eval "pid_$name=$!"
  pids+=("$!")
  for _ in $(seq 300); do
    [ -S "$work/$name.sock" ] && KDOM_SOCKET=$work/$name.sock "$kdom" list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "kdomd $name did not start; its log:"
  sed 's/^/    /' "$work/$name.log"
  return 1
}

show_logs() {
  for f in "$work"/a.log "$work"/b.log "$work"/*.out "$work"/a/run/*/vmm.log "$work"/b/run/*/vmm.log; do
    [ -s "$f" ] || continue
    echo "----- $f (last 25 lines)"
    tail -n 25 "$f" | cat -v
  done
}
die() {
  echo "FAIL migration: $*"
  show_logs
  exit 1
}

# The tick numbers of whole `PROBE dirty: tick N pages=P` lines of stdin, in order.
tick_numbers() { tr -d '\r' | sed -n 's/^PROBE dirty: tick \([0-9][0-9]*\) pages=[0-9][0-9]*$/\1/p'; }
last_tick() { tick_numbers 2>/dev/null <"$1" | tail -n 1; }
# consecutive: the numbers of stdin go up by one each, from the first
consecutive() { awk 'NR > 1 && $1 != prev + 1 { print "tick " $1 " follows tick " prev; bad = 1; exit } { prev = $1 } END { exit bad }'; }
state_on() { "$1" list 2>/dev/null | awk -v n="$2" '$1 == n { print $5 }'; }
id_on() { "$1" list 2>/dev/null | awk -v n="$2" '$1 == n { print $2 }'; }
# has_state HOST NAME STATE: xl list's state letters of NAME on HOST are STATE (running: r-----)
has_state() {
  local letters=$3
  case $3 in running) letters=r----- ;; paused) letters=--p--- ;; esac
  [ "$(state_on "$1" "$2")" = "$letters" ]
}
# ticking LOG: a new tick comes within 20 s
ticking() {
  tick_log=$1 tick_before=$(last_tick "$1")
  wait_for 20 ticked_since
}
ticked_since() { [ "$(last_tick "$tick_log")" -gt "${tick_before:-0}" ] 2>/dev/null; }
nothing_on() { [ -z "$("$1" list 2>/dev/null | awk 'NR > 1 && $1 != "Domain-0"')" ]; }
no_page_failure() { ! grep -a -q -e '^PROBE dirty: FAIL' -e 'dirty: mismatch' "$@"; }

# ----------------------------------------------------------------- two hosts
ip netns add "$ns_a" && ip netns add "$ns_b" || die "cannot make network namespaces (root needed)"
ip link add mig-a type veth peer name mig-b || die "cannot make a veth pair"
ip link set mig-a netns "$ns_a" && ip link set mig-b netns "$ns_b"
ip -n "$ns_a" addr add "$addr_a/24" dev mig-a && ip -n "$ns_b" addr add "$addr_b/24" dev mig-b
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set mig-a up && ip -n "$ns_b" link set mig-b up
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
echo "0123456789abcdef-not-it" >"$work/wrong-token"
start_host a "$ns_a" "$addr_a" || exit 1
start_host b "$ns_b" "$addr_b" || exit 1

cat >"$work/probe.cfg" <<EOF
name = "probe"
kernel = "$dirty"
memory = 64
cmdline = "mib=32 rate_mib=8 ticks=100000"
EOF
A create "$work/probe.cfg" >"$work/create.out" 2>&1 || die "kdom create of the probe on A: $(cat "$work/create.out")"
log_a=$work/a/log/probe.log log_b=$work/b/log/probe.log
wait_for 120 eval '[ "$(last_tick "$log_a")" -ge 5 ] 2>/dev/null' || die "the probe does not tick on A"

# ----------------------------------------------------------------- refusals
A migrate --token-file "$work/wrong-token" probe "$addr_b" >"$work/wrong-token.out" 2>&1
rc=$?
check wrong-token "a migration with the wrong token fails, saying so" -- \
  eval '[ $rc -ne 0 ] && grep -q "wrong token" "$work/wrong-token.out"'
check wrong-token-runs "the domain runs on at the source; the destination has nothing" -- \
  eval 'has_state A probe running && ticking "$log_a" && nothing_on B'
A migrate probe "$addr_b:1" >"$work/nowhere.out" 2>&1
rc=$?
check nowhere "a migration to a port nothing listens on fails at once, naming it" -- \
  eval '[ $rc -ne 0 ] && grep -q "cannot connect to the migration port $addr_b:1" "$work/nowhere.out"'

# ----------------------------------------------------------------- A -> B
A migrate probe "$addr_b" >"$work/a-to-b.out" 2>&1
rc=$?
cat "$work/a-to-b.out"
check a-to-b "kdom migrate probe $addr_b succeeds and says what it moved" -- \
  eval '[ $rc -eq 0 ] && grep -q "^migrated probe to $addr_b" "$work/a-to-b.out"'
check a-to-b-gone "the domain is gone from A and runs on B" -- \
  eval '! A list probe >/dev/null 2>&1 && has_state B probe running'
check a-to-b-ticks "its ticks go on on B" -- wait_for 60 eval '[ "$(last_tick "$log_b")" -ge "$(( $(last_tick "$log_a") + 5 ))" ] 2>/dev/null'
check a-to-b-order "A's console then B's hold every tick once, in order" -- \
  eval 'cat "$log_a" "$log_b" | tick_numbers | consecutive'
check a-to-b-pages "no page check failed" -- no_page_failure "$log_a" "$log_b"

# ----------------------------------------------------------------- B -> A, --json
offset_a=$(stat -c %s "$log_a")
# At 8 MiB/s (a few seconds): --json has rounds to show.
B migrate --json --max-bandwidth 8 probe "$addr_a" >"$work/b-to-a.out" 2>"$work/b-to-a.err"
rc=$?
check b-to-a "kdom migrate --json back to A succeeds, its last line the outcome" -- \
  eval '[ $rc -eq 0 ] && tail -n 1 "$work/b-to-a.out" | grep -q "\"event\":\"migrated\""'
check b-to-a-progress "--json printed the rounds as they went" -- grep -q '"event":"progress"' "$work/b-to-a.out"
check b-to-a-runs "the domain runs on A again, B has nothing" -- \
  eval 'has_state A probe running && nothing_on B && ticking "$log_a"'
check b-to-a-order "A's first part, B's, then A's second part hold every tick once, in order" -- \
  eval '{ head -c "$offset_a" "$log_a"; cat "$log_b"; tail -c +"$((offset_a + 1))" "$log_a"; } | tick_numbers | consecutive'

# ----------------------------------------------------------------- localhost
id_before=$(id_on A probe)
offset_a=$(stat -c %s "$log_a")
A migrate probe localhost >"$work/localhost.out" 2>&1
rc=$?
cat "$work/localhost.out"
check localhost "kdom migrate probe localhost succeeds" -- eval '[ $rc -eq 0 ]'
check localhost-id "the domain has a new id, its name (once the old one is gone), and runs" -- \
  wait_for 10 eval 'has_state A probe running && [ "$(id_on A probe)" != "$id_before" ] && [ "$(A list | grep -c probe)" = 1 ]'
check localhost-ticks "it ticks on in the same console log, every tick once and in order" -- \
  eval 'ticking "$log_a" && tail -c +"$((offset_a + 1))" "$log_a" | tick_numbers | consecutive'

# migrate_slowly NAME [tty]: a migration to B at 1 MiB/s (a few rounds of the probe's 32 MiB take
# half a minute), in the background; its output in $work/$1.out. With a second word "tty",
# on a terminal (script(1), which keeps what was drawn in $work/$1.out too).
migrate_slowly() {
  if [ "${2:-}" = tty ]; then
    script -qec "$(printf '%q ' env KDOM_SOCKET="$work/a.sock" "$kdom" migrate --max-bandwidth 1 probe "$addr_b")" \
      /dev/null >"$work/$1.out" 2>&1 &
  else
    A migrate --max-bandwidth 1 probe "$addr_b" >"$work/$1.out" 2>&1 &
  fi
  slow_pid=$!
  pids+=("$slow_pid")
  wait_for 60 eval 'B list probe 2>/dev/null | grep -q probe' || die "$1: the domain never began to arrive on B"
}
# source_unharmed NAME: the slow migration failed, the domain runs on A ticking, B is empty
source_unharmed() {
  local what=$1
  wait_for 120 eval '! kill -0 $slow_pid 2>/dev/null'
  wait "$slow_pid"
  local rc=$?
  check "$what-fails" "the migration ended with an error saying the domain runs on here: $(tail -n 1 "$work/$what.out")" -- \
    eval '[ $rc -ne 0 ] && grep -q "runs on here" "$work/$what.out"'
  check "$what-source" "the domain runs on A, ticking, no page check failed" -- \
    eval 'has_state A probe running && ticking "$log_a" && no_page_failure "$log_a"'
}

# ----------------------------------------------------------------- cancel
migrate_slowly cancel tty
sleep 2  # a few progress lines first
check cancel "kdom migrate --cancel stops it" -- A migrate --cancel probe
source_unharmed cancel
check cancel-progress "on a terminal it drew its rounds: $(tr '\r' '\n' <"$work/cancel.out" | grep -a 'round [0-9]' | tail -n 1)" -- \
  grep -aqE "migrating probe to $addr_b: round [0-9]+, [0-9]+ MiB sent, [0-9]+ MiB/s, dirtying [0-9]+ MiB/s" "$work/cancel.out"
check cancel-clean "B is left with nothing" -- wait_for 60 nothing_on B

# ----------------------------------------------------------------- destination killed
migrate_slowly killed
kill -9 "$pid_b"
pkill -9 -f -- "--config $work/b/" 2>/dev/null
source_unharmed killed
start_host b "$ns_b" "$addr_b" || exit 1
check killed-clean "B, restarted, has nothing" -- nothing_on B

# ----------------------------------------------------------------- link cut
migrate_slowly cut
ip -n "$ns_a" link set mig-a down
source_unharmed cut
check cut-clean "B gives up on it and is left with nothing" -- wait_for 120 nothing_on B
ip -n "$ns_a" link set mig-a up

check no-failure "no page check failed in any console" -- no_page_failure "$work"/a/log/*.log "$work"/b/log/*.log
A destroy probe
echo "migration: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
