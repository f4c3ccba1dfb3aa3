#!/bin/bash
# Live migration's sending side, with the probe guest "dirty" (dirty.elf): it rewrites its
# memory at CPL 3 at a set rate, checks every page after each pass, and prints
# `PROBE dirty: tick N pages=P` with a counter kept in guest memory. The stream goes to a
# regular file (the control socket's migrate-send takes any fd; a stream in a file is a
# snapshot `kdom run --restore` takes).
#
#   1. `kdom run` the probe (console to a file, a control socket); wait for a few ticks;
#   2. a cancel during the rounds: migrate-send paced to 2 MiB/s (round 1 takes seconds),
#      then migrate-cancel: the migration's reply says cancelled, the domain runs on
#      (status running) and its ticks go on;
#   3. a migration: migrate-send with a small downtime and a bandwidth limit, so that several
#      rounds run while the guest dirties memory; the reply has rounds >= 3 and figures, the
#      events show the rounds and the stop-and-copy, and the domain is left paused (status
#      paused, no tick for a while); then it is stopped; the reply says which KVM dirty log
#      the VMM used ("dirty ring" where KVM has it, "dirty bitmap" otherwise);
#   4. `kdom run --restore FILE`: the ticks carry on from the last one before the pause (the
#      console before and after, joined, holds every tick 1..T once), every page check
#      passes, the probe ends with PASS and kdom with status 1 (debug exit 0).
#
# Usage: migrate-send-probe.sh [--dirty-log bitmap|ring] KDOM DIRTY_ELF
#   --dirty-log bitmap  KVM's dirty bitmap even where it has the ring (KDOM_DIRTY_LOG=bitmap
#                       for both kdoms), and the reply must say so: both paths proven on a
#                       host with the ring
#   --dirty-log ring    KVM's dirty ring wherever KVM offers it, kvm_pvm included (where kdom
#                       keeps the bitmap by default), and the reply must say so
# Environment: DIRTY_TICKS (200: 40 s of guest time; in the test host the steps before the
# restore take some 25 s of it), DIRTY_MIB (32), DIRTY_RATE_MIB (8).
# Needs python3 (its socket.send_fds is the client that passes the fd); without it: exit 77.
set -u

want_dirty_log=
if [ "${1:-}" = --dirty-log ]; then
    case ${2:-} in bitmap | ring) ;; *) echo "$0: --dirty-log takes 'bitmap' or 'ring'" >&2; exit 2 ;; esac
    export KDOM_DIRTY_LOG=$2
    want_dirty_log="dirty $2"
    shift 2
fi
[ $# -eq 2 ] || { echo "usage: $0 [--dirty-log bitmap|ring] KDOM DIRTY_ELF" >&2; exit 2; }
kdom=$1 elf=$2
ticks=${DIRTY_TICKS:-200} mib=${DIRTY_MIB:-32} rate=${DIRTY_RATE_MIB:-8}
probe_cmdline="mib=$mib rate_mib=$rate ticks=$ticks"
python=$(command -v python3 || true)
[ -n "$python" ] || { echo "migrate-send: SKIP: no python3 to pass the stream's fd"; exit 77; }

work=$(mktemp -d /tmp/kdom-migrate-send.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

say() { echo "migrate-send: $*"; }
. "$(dirname "${BASH_SOURCE[0]}")/dirty-probe-lib.sh"

# The control socket's client: `control SOCK JSON` prints the reply line; `migrate SOCK FILE
# JSON` sends JSON with FILE's fd (opened for writing) and prints the reply, which comes when
# the migration ends; `events SOCK` prints event lines until the socket closes.
cat >"$work/client.py" <<'EOF'
import os, socket, sys

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(300)
    s.connect(path)
    return s

def reply_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()

what, path = sys.argv[1], sys.argv[2]
if what == "control":
    s = connect(path)
    s.sendall(sys.argv[3].encode() + b"\n")
    print(reply_line(s), flush=True)
elif what == "migrate":
    fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    s = connect(path)
    socket.send_fds(s, [sys.argv[4].encode() + b"\n"], [fd])
    os.close(fd)
    print(reply_line(s), flush=True)
elif what == "events":
    s = connect(path)
    s.settimeout(None)
    s.sendall(b'{"op":"events"}\n')
    f = s.makefile("rb")
    for line in f:
        sys.stdout.write(line.decode())
        sys.stdout.flush()
EOF
client() { "$python" "$work/client.py" "$@"; }
# A JSON reply's number field: `field REPLY NAME`.
field() { "$python" -c 'import json, sys; v = json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }

# ------------------------------------------------------------------ 1. start
say "kdom $kdom, probe $elf ($probe_cmdline), in $work"
"$kdom" run --kernel "$elf" --memory 128 --cmdline "$probe_cmdline" \
    --control "$work/dom1.sock" --console "file:$work/dom1.log" 2>"$work/dom1.err" </dev/null &
pid1=$!
pids+=("$pid1")
wait_for_tick "$work/dom1.log" 3 120 "$pid1"
no_fail_line "$work/dom1.log" "before the migrations"
ok "the probe runs: tick $(last_tick "$work/dom1.log")"

# --------------------------------------------------- 2. a cancel in the rounds
client migrate "$work/dom1.sock" "$work/cancelled.snap" \
    '{"op":"migrate-send","downtime_ms":5,"max_rounds":10,"max_bandwidth_mib":2}' >"$work/cancel-migrate.out" 2>&1 &
mpid=$!
pids+=("$mpid")
sleep 2
kill -0 "$mpid" 2>/dev/null || fail "the paced migration ended within 2 s: $(cat "$work/cancel-migrate.out")"
reply=$(client control "$work/dom1.sock" '{"op":"migrate-cancel"}') || fail "migrate-cancel failed"
case $reply in *'"cancelled":true'*) ;; *) fail "migrate-cancel: '$reply'" ;; esac
t0=$(date +%s.%N)
wait_exit "$mpid" 30
secs=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }")
reply=$(cat "$work/cancel-migrate.out")
case $reply in *'"ok":false'*) ;; *) fail "the cancelled migration's reply: '$reply'" ;; esac
case $reply in *'"error":"migrate-send: cancelled'*) ;; *) fail "the cancelled migration's reply: '$reply'" ;; esac
status_reply=$(client control "$work/dom1.sock" '{"op":"status"}')
case $status_reply in *'"state":"running"'*) ;; *) fail "after the cancel, status says '$status_reply'" ;; esac
after_cancel=$(last_tick "$work/dom1.log")
wait_for_tick "$work/dom1.log" $((after_cancel + 3)) 60 "$pid1"
no_fail_line "$work/dom1.log" "after the cancel"
ok "a cancel in the rounds: its reply ($reply) $secs s after migrate-cancel; the domain runs on: ticks $after_cancel -> $(last_tick "$work/dom1.log")"

# ------------------------------------------------------------ 3. a migration
client events "$work/dom1.sock" >"$work/dom1.events" 2>/dev/null &
epid=$!
pids+=("$epid")
sleep 0.5
before=$(last_tick "$work/dom1.log")
t0=$(date +%s.%N)
reply=$(client migrate "$work/dom1.sock" "$work/migrated.snap" \
    '{"op":"migrate-send","downtime_ms":5,"max_rounds":10,"max_bandwidth_mib":16,"toolstack":{"test":"migrate-send"}}') ||
    fail "migrate-send failed to run"
secs=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }")
say "migrate-send: $secs s: $reply"
case $reply in *'"ok":true'*) ;; *) fail "migrate-send: '$reply'" ;; esac
rounds=$(field "$reply" rounds)
[ -n "$rounds" ] && [ "$rounds" -ge 3 ] || fail "migrate-send ran $rounds rounds; expected at least 3 (round 1, a dirty round, the stop-and-copy)"
for f in sent_bytes pages seconds downtime_ms zero_pages; do
    [ -n "$(field "$reply" $f)" ] || fail "the reply has no $f"
done
dirty_log=$(field "$reply" dirty_log)
case $dirty_log in "dirty ring" | "dirty bitmap") ;; *) fail "the reply's dirty_log is '$dirty_log'" ;; esac
[ -z "$want_dirty_log" ] || [ "$dirty_log" = "$want_dirty_log" ] ||
    fail "KDOM_DIRTY_LOG=$KDOM_DIRTY_LOG, but the reply says KVM's $dirty_log was used"
[ "$(stat -c %s "$work/migrated.snap")" = "$(field "$reply" sent_bytes)" ] ||
    fail "the stream file has $(stat -c %s "$work/migrated.snap") bytes, the reply says $(field "$reply" sent_bytes)"
status_reply=$(client control "$work/dom1.sock" '{"op":"status"}')
case $status_reply in *'"state":"paused"'*) ;; *) fail "after the migration, status says '$status_reply', not paused" ;; esac
last1=$(last_tick "$work/dom1.log")
sleep 2
[ "$(last_tick "$work/dom1.log")" = "$last1" ] || fail "ticks went on after the migration left the domain paused"
kill "$epid" 2>/dev/null
grep -q '"event":"migrate-progress".*"phase":"precopy"' "$work/dom1.events" || fail "no precopy migrate-progress event"
grep -q '"event":"migrate-progress".*"phase":"stop-and-copy"' "$work/dom1.events" || fail "no stop-and-copy migrate-progress event"
grep -q "\"event\":\"migrate-progress\",.*\"round\":$rounds[,}]" "$work/dom1.events" ||
    fail "no migrate-progress event of round $rounds"
ok "migrated to a file in $rounds rounds with KVM's $dirty_log ($(grep -c migrate-progress "$work/dom1.events") progress events), ticks $before -> $last1; the domain is left paused: $status_reply"
kill -TERM "$pid1"
wait_exit "$pid1" 60
[ "$last1" -lt $((ticks - 10)) ] || fail "the probe reached tick $last1 of $ticks before the migration ended: too little left to test (DIRTY_TICKS too low?)"
no_fail_line "$work/dom1.log" "up to the migration"
why=$(tick_numbers "$work/dom1.log" | ticks_run 1 "$last1") || fail "ticks before the migration: $why"

# -------------------------------------------------- 4. restore the stream
t0=$(date +%s.%N)
"$kdom" run --restore "$work/migrated.snap" --control "$work/dom2.sock" --console "file:$work/dom2.log" \
    2>"$work/dom2.err" </dev/null &
pid2=$!
pids+=("$pid2")
wait_exit "$pid2" 180
say "kdom run --restore of the stream: status $status after $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }") s"
no_fail_line "$work/dom2.log" "after the restore"
first=$(first_tick "$work/dom2.log")
[ -n "$first" ] || fail "no tick after the restore (status $status): $(tr '\n' ' ' <"$work/dom2.err")"
[ "$first" -ge $((last1 + 1)) ] || fail "the first tick after the restore is $first, but tick $last1 was printed before: the counter went back"
[ "$first" -le $((last1 + 2)) ] || fail "the first tick after the restore is $first, expected $((last1 + 1))..$((last1 + 2)): ticks were lost"
why=$(tick_numbers "$work/dom2.log" | ticks_run "$first" "$ticks") || fail "ticks after the restore: $why"
grep -a -q "^PROBE dirty: PASS ticks=$ticks " "$work/dom2.log" || fail "no line 'PROBE dirty: PASS ticks=$ticks ...' (status $status)"
[ "$status" = 1 ] || fail "kdom exit status $status after the restore, expected 1 (debug-exit code 0)"
why=$(cat "$work/dom1.log" "$work/dom2.log" | tr -d '\r' | sed -n 's/^PROBE dirty: tick \([0-9][0-9]*\) pages=[0-9][0-9]*$/\1/p' |
    ticks_run 1 "$ticks") || fail "the console before the migration and after the restore, joined: $why"
ok "restored from the stream: ticks $first..$ticks, $(grep -a -m1 '^PROBE dirty: PASS' "$work/dom2.log"), kdom status 1"
grep -a '^dirty: tick gap' "$work/dom2.log" | sed 's/^/migrate-send: after the restore: /'

say "PASS"
