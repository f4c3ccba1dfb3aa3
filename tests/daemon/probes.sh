#!/usr/bin/env bash
# kdomd and the kdom CLI with real VMMs and probe guests, on this host's /dev/kvm (or in the
# nested test host, through with-kvm.sh): many domains created at once, listed, paused (the
# guest's ticks stop) and unpaused, kdomd subscribed to each VMM's events, a killed VMM
# settled by its on_crash action, a guest's poweroff and reboot settled by on_poweroff /
# on_reboot, kdomd killed with -9 and restarted (every domain found again and controllable,
# its console log continuing, its events listened to again), racing clients, and nothing left
# behind at the end. `kdom events` follows it all: each domain's lifecycle, in order.
#   probes.sh KDOM KDOMD IDLE_PROBE_ELF TICKER_PROBE_ELF
set -uo pipefail
kdom=$1
kdomd=$2
idle=$3
ticker=$4
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_work probes

# cfg NAME KERNEL [LINE...]: an xl.cfg for a probe guest
cfg() {
  local name=$1 kernel=$2
  shift 2
  {
    echo "name = \"$name\""
    echo "kernel = \"$kernel\""
    echo "memory = 32"
    for line in "$@"; do echo "$line"; done
  } >"$work/$name.cfg"
  echo "$work/$name.cfg"
}

state_of() { "$kdom" list "$1" 2>/dev/null | awk -v n="$1" '$1 == n { print $5 }'; }
pid_of() { "$kdom" list --json "$1" 2>/dev/null | grep -o '"pid": *[0-9]*' | head -n1 | grep -o '[0-9]*$'; }
ticks_of() { grep -c '^tick ' "$work/log/$1.log" 2>/dev/null || echo 0; }
has_state() { [ "$(state_of "$1")" = "$2" ]; }
ticks_above() { [ "$(ticks_of "$1")" -gt "$2" ]; }

start_daemon || exit 1

# Every lifecycle change as it happens: `kdom events` follows from before the first create.
event_readers() { "$kdom" info | awk '$1 == "event_readers" {print $3}'; }
readers_are() { [ "$(event_readers)" = "$1" ]; }
"$kdom" events --json >"$work/events.jsonl" 2>"$work/events.err" &
events_pid=$!
"$kdom" store watch /local/domain >"$work/store-watch.out" 2>&1 &
check events-following "kdom events is subscribed (kdom info: event_readers 1)" -- wait_for 30 readers_are 1
"$kdom" events --domain tick --count 3 >"$work/tick-events.txt" 2>&1 &
tick_events_pid=$!
wait_for 30 readers_are 2
# events_in_order NAME EVENT...: NAME's events in events.jsonl include these, in this order.
events_in_order() {
  local name=$1
  shift
  grep "\"name\":\"$name\"" "$work/events.jsonl" | grep -o '"event":"[a-z-]*"' | cut -d'"' -f4 |
    awk -v want="$*" 'BEGIN { n = split(want, w, " "); i = 1 } $0 == w[i] { i++ } END { exit !(i > n) }'
}

# 20 domains created by 20 clients at once.
creates=()
for i in $(seq 1 20); do
  "$kdom" create "$(cfg "idle$i" "$idle")" >"$work/create$i.out" 2>&1 &
  creates+=($!)
done
wait "${creates[@]}"  # not kdomd, also a child of this shell
created=$("$kdom" list | awk '$1 ~ /^idle[0-9]+$/ && $5 ~ /^r/' | wc -l)
check create-20 "20 concurrent creates: $created of 20 listed running" -- [ "$created" -eq 20 ]
ids=$("$kdom" list | awk '$1 ~ /^idle/ {print $2}' | sort -n | uniq | wc -l)
check distinct-ids "20 distinct domain ids ($ids)" -- [ "$ids" -eq 20 ]
check events-subscribed "kdomd listens to every idle domain's VMM events" -- \
  bash -c "! grep \"'idle[0-9]*': no events from its VMM\" '$work/kdomd.log'"
check domain-0 "the host is listed as Domain-0 with id 0" -- \
  bash -c "'$kdom' list | awk '\$1 == \"Domain-0\" && \$2 == 0' | grep -q ."
check domid "domid idle7 is the id list shows" -- \
  [ "$("$kdom" domid idle7)" = "$("$kdom" list idle7 | awk '$1 == "idle7" {print $2}')" ]

# 20 domains paused and unpaused at once: each one's events say so, in order.
all_idle_are() { [ "$("$kdom" list | awk -v s="$1" '$1 ~ /^idle/ && $5 == s' | wc -l)" -eq 20 ]; }
for i in $(seq 1 20); do "$kdom" pause "idle$i" >/dev/null 2>&1 & done
wait_for 60 all_idle_are "--p---"
for i in $(seq 1 20); do "$kdom" unpause "idle$i" >/dev/null 2>&1 & done
wait_for 60 all_idle_are "r-----"
in_order=0
for i in $(seq 1 20); do
  events_in_order "idle$i" created running paused running && in_order=$((in_order + 1))
done
check events-lifecycle "kdom events: created, running, paused, running for $in_order of 20 domains" -- [ "$in_order" -eq 20 ]
# The same lifecycle in the store: each domain's keys made, its state key written as it went
# (starting, running, paused, running), the value kdomd keeps there.
stored=0
for i in $(seq 1 20); do
  id=$("$kdom" domid "idle$i")
  [ "$(grep -c "^written /local/domain/$id/state$" "$work/store-watch.out")" -ge 4 ] &&
    grep -q "^written /local/domain/$id/name$" "$work/store-watch.out" &&
    [ "$("$kdom" store read "/local/domain/$id/state")" = running ] && stored=$((stored + 1))
done
check store-lifecycle "kdom store watch /local/domain saw each domain's keys and state changes ($stored of 20)" -- [ "$stored" -eq 20 ]

# Pause stops the guest's ticks; unpause lets them go on.
"$kdom" create "$(cfg tick "$ticker" 'extra = "period_ms=50"')" >/dev/null 2>&1
wait_for 60 ticks_above tick 3
"$kdom" pause tick
check paused-state "pause: list shows --p---" -- has_state tick "--p---"
before=$(ticks_of tick)
sleep 3
after=$(ticks_of tick)
check paused-stops "ticks while paused: $before -> $after (at most one in flight)" -- [ "$after" -le $((before + 1)) ]
"$kdom" unpause tick
check unpaused-goes-on "ticks after unpause go past $after" -- wait_for 30 ticks_above tick "$((after + 2))"

# A VMM killed with SIGKILL: on_crash=preserve keeps it, crashed, saying why.
"$kdom" create "$(cfg victim "$idle" 'on_crash = "preserve"')" >/dev/null 2>&1
victim_pid=$(pid_of victim)
kill -9 "$victim_pid"
check crash-preserved "killed VMM: state crashed" -- wait_for 30 has_state victim "----c-"
check crash-reason "killed VMM: the reason names SIGKILL" -- \
  bash -c "'$kdom' list --json victim | grep -q 'SIGKILL'"
# ... and with on_crash=destroy (the default) it is gone.
"$kdom" create "$(cfg victim2 "$idle")" >/dev/null 2>&1
kill -9 "$(pid_of victim2)"
check crash-destroyed "killed VMM with on_crash=destroy: removed" -- wait_for 30 domain_absent victim2

# The guest powers off: on_poweroff=destroy leaves no process, no run directory behind.
# (Its id from create's own output: the guest may be gone before a `kdom domid` could ask.)
off_id=$("$kdom" create "$(cfg off "$ticker" 'extra = "period_ms=20 stop_after=50"')" 2>&1 >/dev/null |
  sed -n 's/^created domain off (id \([0-9]*\))$/\1/p')
check poweroff-created "kdom create said the domain's id (${off_id:-none})" -- [ -n "$off_id" ]
off_id_dir=$work/run/domains/$off_id
check poweroff-destroyed "poweroff with on_poweroff=destroy: removed" -- wait_for 60 domain_absent off
check poweroff-clean "no run directory left ($off_id_dir)" -- [ ! -e "$off_id_dir" ]

# The guest reboots: on_reboot=restart starts it again, same id, new process.
"$kdom" create "$(cfg boots "$ticker" 'extra = "period_ms=50 stop_after=40 action=reboot"' 'on_reboot = "restart"' \
  'on_crash = "preserve"')" >/dev/null 2>&1
boots_id=$("$kdom" domid boots)
first_pid=$(pid_of boots)  # create returns once the VMM is up; the guest reboots 2 s later
rebooted() { [ "$(grep -c '^ticker: reboot' "$work/log/boots.log" 2>/dev/null)" -ge 1 ]; }
new_pid() { local pid; pid=$(pid_of boots); [ -n "$pid" ] && [ "$pid" != "$first_pid" ]; }
check reboot-restart "reboot with on_reboot=restart: the guest rebooted" -- wait_for 60 rebooted
check reboot-new-pid "a new VMM process (was $first_pid)" -- wait_for 60 new_pid
check reboot-same-id "same id after restart" -- [ "$("$kdom" domid boots)" = "$boots_id" ]
# A domain that reboots over and over is left crashed after a few restarts, not restarted forever.
check restart-limit "restarted too often: left crashed" -- wait_for 120 has_state boots "----c-"
"$kdom" destroy boots

# Two clients rename two domains to one name: one wins, the other gets a clear conflict.
"$kdom" rename idle1 twin >"$work/r1" 2>&1 &
rename1=$!
"$kdom" rename idle2 twin >"$work/r2" 2>&1 &
wait $rename1 $!
twins=$("$kdom" list | awk '$1 == "twin"' | wc -l)
check rename-race "one domain named twin ($twins)" -- [ "$twins" -eq 1 ]
check rename-race-error "the loser was told the name is taken" -- grep -qh "exists already\|taken" "$work/r1" "$work/r2"

# Destroy while the create is in flight: afterwards it is either fully there or fully gone.
"$kdom" create "$(cfg racer "$idle")" >/dev/null 2>&1 &
create_pid=$!
for _ in $(seq 50); do "$kdom" destroy racer >/dev/null 2>&1 && break; sleep 0.05; done
wait "$create_pid"
racer_ok() {  # every VMM process belongs to a listed, running or paused domain
  local procs listed
  procs=$(pgrep -f -- "--config $work/run/domains/" | wc -l)
  listed=$("$kdom" list | awk 'NR > 1 && $1 != "Domain-0" && $5 ~ /^(r|--p)/' | wc -l)
  [ "$procs" -eq "$listed" ] && { domain_absent racer || has_state racer "r-----"; }
}
check destroy-during-create "racer is either running or gone, nothing half-made" -- racer_ok
"$kdom" destroy racer >/dev/null 2>&1

# What the events said of the crashes, the poweroff, the reboots and the rename.
check events-crashed "kdom events: victim crashed (reason crash, action preserve)" -- \
  grep -q '"action":"preserve".*"event":"crashed".*"name":"victim".*"reason":"crash"' "$work/events.jsonl"
check events-crash-destroyed "kdom events: victim2 crashed, then destroyed" -- events_in_order victim2 created running crashed destroyed
check events-poweroff "kdom events: off shut down (reason poweroff), then destroyed" -- \
  bash -c "grep '\"name\":\"off\"' '$work/events.jsonl' | grep '\"event\":\"shutdown\"' | grep -q '\"reason\":\"poweroff\"' &&
           grep '\"name\":\"off\"' '$work/events.jsonl' | grep -q '\"event\":\"destroyed\"'"
check events-reboot "kdom events: boots shut down (reason reboot) and ran again, until the restart limit" -- \
  events_in_order boots created running shutdown running crashed destroyed
check events-renamed "kdom events: the rename race's winner renamed to twin" -- \
  grep -q '"event":"renamed".*"name":"twin".*"old_name":"idle[12]"' "$work/events.jsonl"
check events-seq "kdom events: seq numbers without a gap" -- \
  bash -c "grep -o '\"seq\":[0-9]*' '$work/events.jsonl' | cut -d: -f2 | awk 'NR > 1 && \$1 != prev + 1 { exit 1 } { prev = \$1 }'"
# exited PID: that child of this shell has ended (it may wait as a zombie until reaped).
exited() { [ ! -e "/proc/$1" ] || grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
check events-count-exits "kdom events --domain tick --count 3 exited after 3 events" -- wait_for 30 exited "$tick_events_pid"
check events-domain-filter "... and printed tick's created, running, paused: $(awk '{printf "%s ", $3 "/" $4}' "$work/tick-events.txt")" -- \
  bash -c "[ \$(wc -l <'$work/tick-events.txt') -eq 3 ] && ! grep -v ' tick ' '$work/tick-events.txt' &&
           [ \"\$(awk '{printf \"%s \", \$4}' '$work/tick-events.txt')\" = 'created running paused ' ]"

# kdomd killed with -9: its domains keep running; a new kdomd finds every one of them.
before_count=$("$kdom" list | awk 'NR > 1 && $1 != "Domain-0"' | wc -l)
tick_before=$(ticks_of tick)
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
daemon_pid=
check events-end "kdom events ends when kdomd goes, saying so" -- wait_for 30 exited "$events_pid"
check events-end-said "... on stderr: $(head -c 200 "$work/events.err")" -- grep -q "kdomd closed the connection while GET /v1/events" "$work/events.err"
alive=$(pgrep -f -- "--config $work/run/domains/" | wc -l)
check vmms-outlive-daemon "VMMs still running without kdomd: $alive" -- [ "$alive" -ge 10 ]
start_daemon || exit 1
after_count=$("$kdom" list | awk 'NR > 1 && $1 != "Domain-0"' | wc -l)
check restart-finds-all "after kdomd restart: $after_count of $before_count domains listed" -- [ "$after_count" -eq "$before_count" ]
check restart-running "tick is still running after the restart" -- has_state tick "r-----"
check restart-console "tick's console log goes on after the restart" -- wait_for 30 ticks_above tick "$((tick_before + 3))"
"$kdom" pause tick
check restart-controllable "tick can be paused through the new kdomd" -- has_state tick "--p---"
"$kdom" unpause tick
# A domain that died while no daemon ran is reported and its action (on_crash=destroy) applied.
# (One still running now: the test host's emulation sometimes triple-faults a probe.)
gone=$("$kdom" list | awk '$1 ~ /^idle[0-9]+$/ && $5 == "r-----" {print $1; exit}')
gone_pid=$(pid_of "$gone")
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
daemon_pid=
kill -9 "$gone_pid"
start_daemon || exit 1
check died-while-down "$gone (pid $gone_pid), killed while kdomd was down, is settled: removed" -- domain_absent "$gone"
check died-while-down-said "kdomd said so" -- grep -q "'$gone'.*while kdomd was not running" "$work/kdomd.log"
check events-resubscribed "the restarted kdomd listens to the idle domains' events again" -- \
  bash -c "! grep \"'idle[0-9]*': no events from its VMM\" '$work/kdomd.log'"

"$kdom" events --json >"$work/events2.jsonl" 2>&1 &
events_pid=$!
wait_for 30 readers_are 1
"$kdom" store watch /local/domain >"$work/store-watch2.out" 2>&1 &
store_watch=$!
wait_for 30 grep -q "^watch /local/domain$" "$work/store-watch2.out"

# Destroy everything: no VMM process, no run directory, no socket left.
destroys=()
for name in $("$kdom" list | awk 'NR > 1 && $1 != "Domain-0" {print $1}'); do
  "$kdom" destroy "$name" >/dev/null 2>&1 &
  destroys+=($!)
done
wait "${destroys[@]}"
left=$("$kdom" list | awk 'NR > 1 && $1 != "Domain-0"' | wc -l)
check destroy-all "every domain destroyed ($left left)" -- [ "$left" -eq 0 ]
procs=$(pgrep -f -- "--config $work/run/domains/" | wc -l)
check no-processes "no VMM process left ($procs)" -- [ "$procs" -eq 0 ]
dirs=$(find "$work/run/domains" -mindepth 1 -maxdepth 1 | wc -l)
check no-run-dirs "no run directory left ($dirs)" -- [ "$dirs" -eq 0 ]
destroyed_events() { [ "$(grep -c '"event":"destroyed"' "$work/events2.jsonl")" -ge "$1" ]; }
check events-destroyed "kdom events after the restart: a destroyed event for each of the $before_count domains" -- \
  wait_for 30 destroyed_events "$((before_count - 1))"
removed_keys() { [ "$(grep -c '^removed /local/domain/[0-9]*$' "$work/store-watch2.out")" -ge "$1" ]; }
check store-removed "kdom store watch: each destroyed domain's keys removed" -- wait_for 30 removed_keys "$((before_count - 1))"
check store-empty "no domain keys left in the store" -- bash -c "[ -z \"\$('$kdom' store ls /local/domain)\" ]"
kill "$events_pid" "$store_watch" 2>/dev/null

grep -h "triple fault" "$work/kdomd.log" | sed 's/^/NOTE (the test host'"'"'s emulation faults now and then): /'
if [ "$failed" -gt 0 ]; then
  echo "kdomd log:"
  tail -n 60 "$work/kdomd.log" | sed 's/^/    /'
fi
echo "daemon-probes: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
