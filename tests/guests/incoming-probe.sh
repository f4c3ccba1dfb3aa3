#!/bin/bash
# The receiving side of a live migration, with the probe guest "dirty" (dirty.elf, see
# save-restore-probe.sh): a domain read from a socket by `kdom run --incoming-fd`, its disk
# handed over from the source VMM with the control socket's disk-locks op.
#
#   1. `kdom run` the probe with a disk (the source); wait for a few ticks; `kdom save -p
#      --control SOCK FILE`: FILE holds the domain, the source stays paused, its disk locked;
#   2. FILE and then some trailer bytes go into one end of a socketpair (non-blocking, as a
#      daemon may hand it on), `kdom run --incoming-fd N --paused` gets the other: it says
#      ready, the trailer bytes are still in the socket, unread, and kdom holds no fd of it;
#   3. the destination is paused, its disk not locked: `unpause` is refused, and
#      `disk-locks hold:true` fails naming the disk, which the source still holds;
#   4. the source lets go (`disk-locks hold:false`; its own `unpause` is refused from then on),
#      the destination takes the lock (`hold:true`), announces (no NIC: 0) and unpauses; the
#      source can no longer take its lock back; the probe's ticks carry on from the last one
#      before the save, every page check passes, it ends with PASS (exit-file status 1);
#   5. half of FILE and then the end of the connection: kdom fails to start at once, with one
#      error line naming the truncation and an exit file saying start-failure.
#
# Usage: incoming-probe.sh KDOM DIRTY_ELF
# Environment: DIRTY_TICKS (60: 12 s of guest time, all but a few after the migration; the
# probe stands still while paused), DIRTY_MIB (16), DIRTY_RATE_MIB (8).
set -u

[ $# -eq 2 ] || { echo "usage: $0 KDOM DIRTY_ELF" >&2; exit 2; }
kdom=$1 elf=$2
ticks=${DIRTY_TICKS:-60} mib=${DIRTY_MIB:-16} rate=${DIRTY_RATE_MIB:-8}
probe_cmdline="mib=$mib rate_mib=$rate ticks=$ticks"
trailer='TRAILER: the daemons talk on after the stream'

python=$(command -v python3 || true)
[ -n "$python" ] || { echo "incoming: SKIP: no python3 for the socketpair and the control socket"; exit 0; }

work=$(mktemp -d /tmp/kdom-incoming.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

say() { echo "incoming: $*"; }
# shellcheck source=tests/guests/dirty-probe-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/dirty-probe-lib.sh"

# control SOCK REQUEST...: each request on one connection, one reply line each, printed.
control() {
    "$python" - "$@" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rb")
for request in sys.argv[2:]:
    s.sendall(request.encode() + b"\n")
    print(f.readline().decode().strip())
EOF
}
# expect_reply WHAT REPLY PATTERN: the reply must match the shell pattern (kdom writes a
# reply's keys in order: "error" before "ok").
expect_reply() {
    # shellcheck disable=SC2254
    case $2 in $3) ok "$1: $2" ;; *) fail "$1: the reply '$2' is not $3" ;; esac
}

# feed NAME SNAPSHOT CUT KDOM_ARGS...: starts kdom with --incoming-fd on one end of a socketpair
# and --ready-fd on a pipe, sends SNAPSHOT (with CUT=1 only its first half, then ends the
# connection) and the trailer into the other end, and waits for ready (or for kdom's end). It
# prints one JSON object: kdom's pid, what it wrote to the ready fd, the bytes left unread in
# the socket, whether kdom still has an fd on it, and (when it ended) its status.
feed() {
    "$python" - "$@" "$trailer" <<'EOF'
import json, os, socket, subprocess, sys, threading, time
name, snapshot, cut, *args = sys.argv[1:]
trailer = args.pop().encode()
work = os.path.dirname(snapshot)
ours, theirs = socket.socketpair()
theirs.setblocking(False)  # as a daemon may hand it on: kdom must wait on it, not fail
ready_r, ready_w = os.pipe()
argv = args + ["--incoming-fd", str(theirs.fileno()), "--ready-fd", str(ready_w)]
with open(os.path.join(work, name + ".out"), "wb") as out, open(os.path.join(work, name + ".err"), "wb") as err:
    kdom = subprocess.Popen(argv, pass_fds=(theirs.fileno(), ready_w), stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, start_new_session=True)
os.close(ready_w)
data = open(snapshot, "rb").read()
def send():
    try:
        if cut == "1":
            ours.sendall(data[: len(data) // 2])
            ours.shutdown(socket.SHUT_WR)  # the source went away
        else:
            ours.sendall(data + trailer)
    except OSError:
        pass  # kdom refused the stream and closed it: its status says why
sender = threading.Thread(target=send, daemon=True)
start = time.monotonic()
sender.start()
ready = b""
while chunk := os.read(ready_r, 64):
    ready += chunk
seconds = time.monotonic() - start
sender.join(10)
left = b""
while True:
    try:
        chunk = theirs.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        break
    if not chunk:
        break
    left += chunk
inode = "socket:[%d]" % os.fstat(theirs.fileno()).st_ino
holds = []
try:
    for fd in os.listdir("/proc/%d/fd" % kdom.pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (kdom.pid, fd)) == inode:
                holds.append(int(fd))
        except OSError:
            pass
except OSError:
    pass
status = None
if not ready:
    status = kdom.wait(60)
print(json.dumps({"pid": kdom.pid, "ready": ready.decode(errors="replace"), "seconds": round(seconds, 2),
                  "left": left.decode(errors="replace"), "kdom_fds_on_socket": holds, "status": status}))
EOF
}
json_field() { "$python" -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print(json.dumps(v) if not isinstance(v, str) else v)' "$1" "$2"; }

# ------------------------------------------------------------------ 1. the source
truncate -s 1M "$work/disk.img"
say "kdom $kdom, probe $elf ($probe_cmdline), in $work"
"$kdom" run --kernel "$elf" --memory 128 --cmdline "$probe_cmdline" --disk "$work/disk.img" \
    --control "$work/src.sock" --console "file:$work/src.log" 2>"$work/src.err" </dev/null &
src=$!
pids+=("$src")
wait_for_tick "$work/src.log" 5 120 "$src"
no_fail_line "$work/src.log" "before the save"
timeout 120 "$kdom" save -p --control "$work/src.sock" "$work/dom.snap" >"$work/save.err" 2>&1 </dev/null ||
    fail "kdom save -p failed: $(cat "$work/save.err")"
last1=$(last_tick "$work/src.log")
[ -n "$last1" ] && [ "$last1" -lt "$ticks" ] || fail "the probe reached tick ${last1:-none} of $ticks before the save"
kill -0 "$src" 2>/dev/null || fail "the source ended after kdom save -p"
ok "saved at tick $last1 ($(stat -c %s "$work/dom.snap") bytes), the source paused: $(tr '\n' ' ' <"$work/save.err")"

# ---------------------------------------------------- 2. the stream on a socket
result=$(feed dst "$work/dom.snap" 0 "$kdom" run --paused --control "$work/dst.sock" \
    --console "file:$work/dst.log" --exit-file "$work/dst-exit.json") || fail "the feeder failed: $result"
say "feeder: $result"
dst=$(json_field "$result" pid)
pids+=("$dst")
[ "$(json_field "$result" ready)" = "ready" ] || fail "kdom --incoming-fd did not say ready: $(cat "$work/dst.err")"
[ "$(json_field "$result" left)" = "$trailer" ] ||
    fail "kdom --incoming-fd read past the end record: left in the socket '$(json_field "$result" left)', not the trailer"
[ "$(json_field "$result" kdom_fds_on_socket)" = "[]" ] ||
    fail "kdom still has fd(s) $(json_field "$result" kdom_fds_on_socket) on the incoming socket after ready"
ok "read to its end record in $(json_field "$result" seconds) s, the trailer left unread, the socket closed before ready"

# --------------------------------------- 3. paused, unlocked, the source's lock in the way
reply=$(control "$work/dst.sock" '{"op":"status"}')
expect_reply "the incoming domain's status" "$reply" '*"state":"paused"*'
expect_reply "its disks are not locked" "$reply" '*"disks_locked":false*'
reply=$(control "$work/dst.sock" '{"op":"unpause"}')
expect_reply "unpause before the locks" "$reply" "*the domain's disks are not locked*\"ok\":false*"
reply=$(control "$work/dst.sock" '{"op":"disk-locks","hold":true}')
expect_reply "hold:true while the source holds the disk" "$reply" "*disk 'disk0'*in use by another*\"ok\":false*"
sleep 1
[ ! -s "$work/dst.log" ] || fail "the incoming domain printed while paused: $(head -c 200 "$work/dst.log" | cat -v)"

# ----------------------------------------------------------------- 4. the hand-over
reply=$(control "$work/src.sock" '{"op":"disk-locks","hold":false}' '{"op":"unpause"}')
expect_reply "the source lets go, and cannot unpause" "$reply" \
    "{\"disks\":1,\"ok\":true}*the domain's disks are not locked*\"ok\":false*"
reply=$(control "$work/dst.sock" '{"op":"disk-locks","hold":true}' '{"op":"announce"}' '{"op":"unpause"}' '{"op":"status"}')
expect_reply "the destination takes the lock, announces and runs" "$reply" \
    '{"disks":1,"ok":true}*{"nics":0,"ok":true}*{"ok":true}*"disks_locked":true*"state":"running"*'
reply=$(control "$work/src.sock" '{"op":"disk-locks","hold":true}')
expect_reply "the source's hold:true now" "$reply" "*disk 'disk0'*in use by another*\"ok\":false*"
limit=$(($(date +%s) + 180))
while [ ! -e "$work/dst-exit.json" ]; do
    kill -0 "$dst" 2>/dev/null || break
    [ "$(date +%s)" -lt "$limit" ] || fail "the migrated domain did not end within 180 s (last tick $(last_tick "$work/dst.log"))"
    sleep 0.2
done
[ -e "$work/dst-exit.json" ] || fail "the migrated domain's kdom ended without an exit file"
exit_json=$(cat "$work/dst-exit.json")
no_fail_line "$work/dst.log" "after the migration"
first=$(first_tick "$work/dst.log")
[ -n "$first" ] || fail "no tick after the migration: $exit_json"
[ "$first" -ge $((last1 + 1)) ] && [ "$first" -le $((last1 + 2)) ] ||
    fail "the first tick after the migration is $first, expected $((last1 + 1))..$((last1 + 2))"
why=$(tick_numbers "$work/dst.log" | ticks_run "$first" "$ticks") || fail "ticks after the migration: $why"
grep -a -q "^PROBE dirty: PASS ticks=$ticks " "$work/dst.log" || fail "no line 'PROBE dirty: PASS ticks=$ticks ...': $exit_json"
[ "$(json_field "$exit_json" exit_status)" = 1 ] || fail "the exit file says $exit_json, expected exit_status 1 (debug exit 0)"
ok "the migrated probe ran ticks $first..$ticks, $(grep -a -m1 '^PROBE dirty: PASS' "$work/dst.log"); $exit_json"
grep -a '^dirty: tick gap' "$work/dst.log" | sed 's/^/incoming: /'
kill -TERM "$src"
wait "$src"
status=$?
[ "$status" = $((128 + 15)) ] || fail "the source, paused and unlocked, ended with status $status on SIGTERM"

# ------------------------------------------------------- 5. a stream cut short
result=$(feed cut "$work/dom.snap" 1 "$kdom" run --paused --control "$work/cut.sock" \
    --console "file:$work/cut.log" --exit-file "$work/cut-exit.json") || fail "the feeder failed: $result"
say "feeder, half the stream: $result"
[ -z "$(json_field "$result" ready)" ] || fail "kdom said ready on half a stream"
[ "$(json_field "$result" status)" = 1 ] || fail "half a stream: kdom's status $(json_field "$result" status), expected 1"
errors=$(grep -a -c -i 'error' "$work/cut.err")
[ "$errors" = 1 ] || fail "half a stream: $errors error lines on stderr, expected one"
grep -a -i 'error' "$work/cut.err" | grep -a -q "the incoming migration (fd [0-9]*)' is truncated" ||
    fail "half a stream: the error does not name the incoming stream's truncation: $(cat "$work/cut.err")"
grep -q '"reason":"start-failure"' "$work/cut-exit.json" 2>/dev/null ||
    fail "half a stream: the exit file says $(cat "$work/cut-exit.json" 2>/dev/null)"
[ ! -e "$work/cut.sock" ] || fail "half a stream: its control socket was left behind"
ok "half a stream is refused: $(grep -a -i error "$work/cut.err")"

say "PASS"
