# Shell helpers of the scripts that run the probe guest "dirty" (save-restore-probe.sh,
# migrate-send-probe.sh, incoming-probe.sh): reading its console log (whole lines, tick numbers, consecutive
# ticks), waiting for a tick or for a process, and failing with the logs shown. Sourced; the
# script defines say() (its prefix) and $work (the directory holding its logs) first.

show_logs() {
    for f in "$work"/*.log "$work"/*.err "$work"/*.events "$work"/*.json; do
        [ -s "$f" ] || continue
        echo "----- $(basename "$f") (last 40 lines)"
        tail -n 40 "$f" | cat -v
    done
    echo "-----"
}
fail() {
    say "FAIL: $*"
    show_logs
    exit 1
}
ok() { say "ok: $*"; }

# The newline-terminated lines of a console log (a line being written is left out).
whole_lines() {
    local n
    n=$(tr -dc '\n' <"$1" | wc -c)
    [ "$n" -gt 0 ] && head -n "$n" "$1"
}
# The tick numbers of whole `PROBE dirty: tick N pages=P` lines, in order.
tick_numbers() { whole_lines "$1" | tr -d '\r' | sed -n 's/^PROBE dirty: tick \([0-9][0-9]*\) pages=[0-9][0-9]*$/\1/p'; }
last_tick() { tick_numbers "$1" | tail -n 1; }
first_tick() { tick_numbers "$1" | head -n 1; }
# Whether the ticks in stdin are consecutive, from $1 to $2.
ticks_run() {
    awk -v from="$1" -v to="$2" '
        NR == 1 && $1 != from { print "starts at " $1 ", not " from; bad = 1; exit }
        NR > 1 && $1 != prev + 1 { print "tick " $1 " follows tick " prev; bad = 1; exit }
        { prev = $1 }
        END { if (!bad && prev != to) { print "ends at tick " (NR ? prev : "none") ", not " to; bad = 1 }; exit bad }'
}

# wait_for_tick LOG N SECONDS PID: until LOG has a whole tick line >= N; fails if PID
# ends or the time runs out.
wait_for_tick() {
    local log=$1 want=$2 limit=$(($(date +%s) + $3)) pid=$4 t
    while :; do
        t=$(last_tick "$log" 2>/dev/null)
        [ -n "$t" ] && [ "$t" -ge "$want" ] && return 0
        kill -0 "$pid" 2>/dev/null || fail "kdom (pid $pid) ended before tick $want (last tick ${t:-none})"
        [ "$(date +%s)" -lt "$limit" ] || fail "no tick $want within $3 s (last tick ${t:-none})"
        sleep 0.1
    done
}

# wait_exit PID SECONDS: waits for PID (a child) to end and sets $status; fails on time-out.
wait_exit() {
    local pid=$1 limit=$(($(date +%s) + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(date +%s)" -lt "$limit" ] || fail "pid $pid still running after $2 s"
        sleep 0.1
    done
    wait "$pid"
    status=$?
}

no_fail_line() {
    if grep -a -q '^PROBE dirty: FAIL' "$1"; then
        fail "$2: the probe failed: $(grep -a -m1 '^PROBE dirty: FAIL' "$1")"
    fi
}
