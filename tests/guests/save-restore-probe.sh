#!/bin/bash
# Save and restore of a running domain, with the probe guest "dirty" (dirty.elf):
# it rewrites its memory at CPL 3 at a set rate, checks every page after each pass,
# and prints `PROBE dirty: tick N pages=P` with a counter kept in guest memory.
#
#   1. `kdom run` the probe (console to a file, a control socket, a virtio-rng device); wait
#      for a few ticks;
#   2. `kdom save -c --control SOCK FILE1A`, then at once `... FILE1B`: the domain runs
#      on, its ticks go on without a break in their numbers and no page check fails;
#   3. `kdom save --control SOCK FILE2`: the domain stops, kdom exits 0 saying saved;
#   4. `kdom run --restore FILE2`: the ticks carry on from the last one before the save
#      (the console output before and after, joined, holds every tick 1..T once), every
#      page check passes, the probe ends with PASS and kdom with status 1 (debug exit 0);
#   5. `kdom run --restore FILE1B --paused`: nothing runs until the control socket's
#      `unpause` (sent with python3; skipped without it), then the same from where
#      FILE1B was taken;
#   6. a copy of FILE2 cut to half its size is refused at once: a non-zero status and
#      one error line that names the truncation;
#   7. a copy of FILE2 whose config record puts a device on another PCI slot than its pci
#      record does (CRCs made right; python3) is refused: the devices are placed from the
#      config record, and the bus at the end must be that one.
#
# Usage: save-restore-probe.sh KDOM DIRTY_ELF
# Environment: DIRTY_TICKS (250: 50 s of guest time; in the test host each kdom command and
# each poll of the log takes seconds, so the ticks must outlast them), DIRTY_MIB (32), DIRTY_RATE_MIB (8).
set -u

[ $# -eq 2 ] || { echo "usage: $0 KDOM DIRTY_ELF" >&2; exit 2; }
kdom=$1 elf=$2
ticks=${DIRTY_TICKS:-250} mib=${DIRTY_MIB:-32} rate=${DIRTY_RATE_MIB:-8}
probe_cmdline="mib=$mib rate_mib=$rate ticks=$ticks"

work=$(mktemp -d /tmp/kdom-save-restore.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

say() { echo "save-restore: $*"; }
. "$(dirname "${BASH_SOURCE[0]}")/dirty-probe-lib.sh"

# The control socket's ops, for pause/unpause of a `kdom run` domain (no kdom verb does
# that without kdomd). Prints the reply line.
control() {
    "$python" - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
reply = b""
while not reply.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode().strip())
EOF
}

# ------------------------------------------------------------------ 1. start
say "kdom $kdom, probe $elf ($probe_cmdline), in $work"
# With a virtio device (one the probe leaves alone) for the restores to place on its slot.
"$kdom" run --kernel "$elf" --memory 128 --cmdline "$probe_cmdline" --rng \
    --control "$work/dom1.sock" --console "file:$work/dom1.log" 2>"$work/dom1.err" </dev/null &
pid1=$!
pids+=("$pid1")
wait_for_tick "$work/dom1.log" 5 120 "$pid1"
no_fail_line "$work/dom1.log" "before the saves"
ok "the probe runs: tick $(last_tick "$work/dom1.log")"

# ------------------------------------------------------- 2. save -c twice
save() { # save OUT_NAME ARGS...: runs kdom save, output in $work/OUT_NAME.err
    local name=$1
    shift
    local t0 t1 rc
    t0=$(date +%s.%N)
    timeout 120 "$kdom" save "$@" >"$work/$name.err" 2>&1 </dev/null
    rc=$?
    t1=$(date +%s.%N)
    say "kdom save $*: status $rc after $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s: $(tr '\n' ' ' <"$work/$name.err")"
    return $rc
}
before_1a=$(last_tick "$work/dom1.log")
# The first on a terminal (script(1) gives kdom one and keeps what it drew): it shows its progress.
script -qec "timeout 120 '$kdom' save -c --control '$work/dom1.sock' '$work/file1a'" "$work/save1a.tty" \
    >/dev/null 2>&1 </dev/null || fail "kdom save -c (first, on a terminal) failed: $(tr '\r' ' ' <"$work/save1a.tty")"
tr '\r' '\n' <"$work/save1a.tty" | sed 's/\x1b\[K//g' |
    grep -v -e '^$' -e '^Script started on ' -e '^Script done on ' >"$work/save1a.err"
say "kdom save -c --control (on a terminal): $(tr '\n' '|' <"$work/save1a.err")"
save_seconds=$(sed -n 's/.* MiB in \([0-9.]*\) s .*/\1/p' "$work/save1a.err")
progress_lines=$(grep -cE '^saving: +([0-9]+% \([0-9]+ of 128 MiB\)|starting)$' "$work/save1a.err")
awk -v n="$progress_lines" -v s="${save_seconds:-0}" -v last="$(tail -n 1 "$work/save1a.err")" \
    'BEGIN { exit !((n > 0 || s < 0.3) && last ~ /^saved to /) }' ||
    fail "kdom save on a terminal showed no progress ($progress_lines lines in ${save_seconds:-?} s) or did not end with its figures"
ok "kdom save on a terminal: $progress_lines progress lines in $save_seconds s, then the figures"
after_1a=$(last_tick "$work/dom1.log")
save save1b -c --control "$work/dom1.sock" "$work/file1b" || fail "kdom save -c (second, right after the first) failed"
after_1b=$(last_tick "$work/dom1.log")
for f in file1a file1b; do
    [ -s "$work/$f" ] || fail "save -c wrote no $f"
    [ ! -e "$work/$f.partial" ] || fail "save -c left $f.partial behind"
done
kill -0 "$pid1" 2>/dev/null || fail "the domain did not run on after save -c"
ok "two saves with -c in a row: $(stat -c %s "$work/file1a") and $(stat -c %s "$work/file1b") bytes; the domain runs on (ticks $before_1a, $after_1a, $after_1b around them)"
wait_for_tick "$work/dom1.log" $((after_1b + 2)) 60 "$pid1"
no_fail_line "$work/dom1.log" "after the saves with -c"
ok "ticks go on after the saves with -c: tick $(last_tick "$work/dom1.log")"

# ----------------------------------------------------------- 3. save (stop)
before_2=$(last_tick "$work/dom1.log")
save save2 --control "$work/dom1.sock" "$work/file2" || fail "kdom save (stop) failed"
wait_exit "$pid1" 60
[ "$status" = 0 ] || fail "kdom run exited with status $status after the save, expected 0"
exit_line=$(tail -n 1 "$work/dom1.err")
case $exit_line in *[Ss]aved*) ;; *) fail "kdom run's last line, '$exit_line', does not say saved" ;; esac
[ -s "$work/file2" ] || fail "the save wrote no file2"
[ ! -e "$work/dom1.sock" ] || fail "the control socket is still there after kdom ended"
last1=$(last_tick "$work/dom1.log")
[ -n "$last1" ] && [ "$last1" -ge "$before_2" ] || fail "tick $last1 before the save's end, $before_2 before it began"
[ "$last1" -lt "$ticks" ] || fail "the probe reached tick $ticks before the save: nothing left to test (DIRTY_TICKS too low?)"
grep -a -q '^PROBE dirty: PASS' "$work/dom1.log" && fail "the probe passed before it was saved"
no_fail_line "$work/dom1.log" "up to the save"
why=$(tick_numbers "$work/dom1.log" | ticks_run 1 "$last1") || fail "ticks before the save: $why"
ok "saved and stopped at tick $last1: kdom exit status 0, '$exit_line', $(stat -c %s "$work/file2") bytes; ticks 1..$last1 each once"
grep -a '^dirty: tick gap' "$work/dom1.log" | sed 's/^/save-restore: before the save: /'

# ------------------------------------------------------- 4. restore (FILE2)
# judge_restored LOG ERR STATUS LOW HIGH WHAT: the restored probe's log: its first tick
# within LOW..HIGH, consecutive from there to the last, PASS with ticks=T, status 1.
judge_restored() {
    local log=$1 err=$2 st=$3 low=$4 high=$5 what=$6 first
    no_fail_line "$log" "$what"
    first=$(first_tick "$log")
    [ -n "$first" ] || fail "$what: no tick after the restore (status $st): $(tr '\n' ' ' <"$err")"
    [ "$first" -ge "$low" ] || fail "$what: the first tick after the restore is $first, but tick $((low - 1)) was printed before the save: the counter went back"
    [ "$first" -le "$high" ] || fail "$what: the first tick after the restore is $first, expected $low..$high: ticks were lost"
    why=$(tick_numbers "$log" | ticks_run "$first" "$ticks") || fail "$what: ticks after the restore: $why"
    grep -a -q "^PROBE dirty: PASS ticks=$ticks " "$log" || fail "$what: no line 'PROBE dirty: PASS ticks=$ticks ...' (status $st)"
    [ "$st" = 1 ] || fail "$what: kdom exit status $st, expected 1 (debug-exit code 0)"
    ok "$what: ticks $first..$ticks, $(grep -a -m1 '^PROBE dirty: PASS' "$log"), kdom status 1"
    grep -a '^dirty: tick gap' "$log" | sed "s/^/save-restore: $what: /"
}

t0=$(date +%s.%N)
"$kdom" run --restore "$work/file2" --control "$work/dom2.sock" --console "file:$work/dom2.log" \
    2>"$work/dom2.err" </dev/null &
pid2=$!
pids+=("$pid2")
wait_exit "$pid2" 180
t1=$(date +%s.%N)
say "kdom run --restore file2: status $status after $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s"
[ -e "$work/dom2.log" ] || fail "restore of file2: no console log (status $status): $(tr '\n' ' ' <"$work/dom2.err")"
judge_restored "$work/dom2.log" "$work/dom2.err" "$status" $((last1 + 1)) $((last1 + 2)) "restore of the stopping save"
# Before and after, joined (a line cut by the save goes on after the restore): every tick once.
why=$(cat "$work/dom1.log" "$work/dom2.log" | tr -d '\r' | sed -n 's/^PROBE dirty: tick \([0-9][0-9]*\) pages=[0-9][0-9]*$/\1/p' |
    ticks_run 1 "$ticks") || fail "the console before the save and after the restore, joined: $why"
ok "the console before the save and after the restore, joined: ticks 1..$ticks each once"

# ---------------------------------------------- 5. paused restore (FILE1B)
python=$(command -v python3 || true)
if [ -z "$python" ]; then
    say "SKIP: paused restore of a save -c file: no python3 to send the control socket's unpause"
else
    "$kdom" run --restore "$work/file1b" --paused --control "$work/dom3.sock" --console "file:$work/dom3.log" \
        2>"$work/dom3.err" </dev/null &
    pid3=$!
    pids+=("$pid3")
    limit=$(($(date +%s) + 60))
    until [ -S "$work/dom3.sock" ]; do
        kill -0 "$pid3" 2>/dev/null || { wait "$pid3"; fail "restore --paused of file1b: kdom ended (status $?) before its control socket appeared"; }
        [ "$(date +%s)" -lt "$limit" ] || fail "restore --paused of file1b: no control socket within 60 s"
        sleep 0.1
    done
    sleep 3
    kill -0 "$pid3" 2>/dev/null || fail "restore --paused of file1b: kdom ended while paused"
    [ ! -s "$work/dom3.log" ] || fail "restore --paused of file1b: the guest printed while paused: $(head -c 200 "$work/dom3.log" | cat -v)"
    reply=$(control "$work/dom3.sock" '{"op":"status"}') || fail "status op on the paused domain failed"
    case $reply in *'"state":"paused"'*) ;; *) fail "restore --paused: status says '$reply', not paused" ;; esac
    ok "restore --paused of the second save -c file: nothing printed in 3 s, status $reply"
    reply=$(control "$work/dom3.sock" '{"op":"unpause"}') || fail "unpause op failed"
    case $reply in *'"ok":true'*) ;; *) fail "unpause: '$reply'" ;; esac
    wait_exit "$pid3" 180
    # FILE1B was taken after tick $after_1a was printed and before tick $after_1b + 1 was.
    judge_restored "$work/dom3.log" "$work/dom3.err" "$status" $((after_1a + 1)) $((after_1b + 2)) "paused restore of save -c"
fi

# ------------------------------------------------- 6. a cut file is refused
size=$(stat -c %s "$work/file2")
head -c $((size / 2)) "$work/file2" >"$work/cut"
t0=$(date +%s.%N)
timeout 60 "$kdom" run --restore "$work/cut" --control "$work/dom4.sock" --console "file:$work/dom4.log" \
    >"$work/dom4.out" 2>"$work/dom4.err" </dev/null
status=$?
t1=$(date +%s.%N)
secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
say "kdom run --restore of file2 cut to $((size / 2)) of $size bytes: status $status after $secs s: $(cat -v "$work/dom4.err")"
[ "$status" != 0 ] && [ "$status" != 124 ] || fail "the cut file: status $status, expected a failure"
[ "$status" != 1 ] || ! grep -a -q '^PROBE' "$work/dom4.log" 2>/dev/null || fail "the cut file: the guest ran"
awk "BEGIN { exit !($secs < 20) }" || fail "the cut file: refused only after $secs s"
# One error line (kdom's notes, such as where its control socket is, may come before it).
errors=$(grep -a -c -i 'error' "$work/dom4.err")
[ "$errors" = 1 ] || fail "the cut file: $errors error lines on stderr, expected one"
grep -a -i 'error' "$work/dom4.err" | grep -a -q -i 'truncat\|cut short' ||
    fail "the cut file: the error does not name the truncation"
[ "$(grep -c . "$work/dom4.err")" = 1 ] ||
    say "NOTE: the cut file: kdom also said, before refusing it: $(grep -a -v -i error "$work/dom4.err" | tr '\n' ' ')"
[ ! -e "$work/dom4.sock" ] || fail "the cut file: its control socket was left behind"
ok "a file cut to half is refused at once (status $status, $secs s) with one line naming the truncation"

# ------------------------------------------------- 7. slots that disagree are refused
if [ -z "$python" ]; then
    say "SKIP: the slots that disagree: no python3 to rewrite the config record"
else
    moved=$("$python" - "$work/file2" "$work/moved" <<'PYEOF'
import json, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
pos = 16  # the file header
def record(pos):
    kind, flags, length, _, _ = struct.unpack_from("<IIQII", data, pos)
    return kind, flags, length, pos + 24, pos + 24 + ((length + 7) & ~7)
_, _, _, _, pos = record(pos)  # host-facts
kind, flags, length, body, end = record(pos)
assert kind == 2, "the second record is not the config"
config = json.loads(data[body:body + length])
devices = config["pci_slots"]["devices"]
used = {d["slot"] for d in devices}
devices[0]["slot"] = max(set(range(1, 32)) - used)
new = json.dumps(config).encode()
head = struct.pack("<IIQI", kind, flags, len(new), zlib.crc32(new))
head += struct.pack("<I", zlib.crc32(head))
padded = new + bytes(-len(new) % 8)
open(sys.argv[2], "wb").write(data[:pos] + head + padded + data[end:])
print("%s to slot %d" % (devices[0]["id"], devices[0]["slot"]))
PYEOF
) || fail "could not rewrite file2's config record"
    timeout 60 "$kdom" run --restore "$work/moved" --control "$work/dom5.sock" --console "file:$work/dom5.log" \
        >"$work/dom5.out" 2>"$work/dom5.err" </dev/null
    status=$?
    say "kdom run --restore of file2 with $moved in its config record: status $status: $(cat -v "$work/dom5.err")"
    [ "$status" != 0 ] && [ "$status" != 124 ] || fail "the slots that disagree: status $status, expected a failure"
    ! grep -a -q '^PROBE' "$work/dom5.log" 2>/dev/null || fail "the slots that disagree: the guest ran"
    grep -a -i 'error' "$work/dom5.err" | grep -a -q "PCI bus .* is not the one its config record gave" ||
        fail "the slots that disagree: the error does not say so"
    ok "a file whose config record moves $moved is refused (status $status)"
fi

say "PASS"
