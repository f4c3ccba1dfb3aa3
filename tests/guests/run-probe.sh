#!/bin/bash
# Runs one probe guest (under kdom, QEMU or anything that prints the guest's
# serial console on stdout) and judges the result. Used by the ctest tests
# labelled `guests`.
#
# Usage: run-probe.sh [options] -- COMMAND [ARGS...]
#   --name NAME           require a line `PROBE NAME: PASS ...` (and no FAIL line)
#   --status N            expected exit status (default 1: debug-exit code 0)
#   --timeout S           stop the command after S seconds (default 60): a failure,
#                         unless --keep-running
#   --keep-running        the guest keeps running after its PASS line (halts
#                         forever): pass if it is still running 2 s after it
#                         printed that line; the command is then stopped (SIGTERM)
#   --expect TEXT         the PASS line must contain TEXT
#   --check-rtc SECONDS   the PASS line starts with YYYY-MM-DDTHH:MM:SS: it must be
#                         within SECONDS of the host clock (UTC or local time)
#   --check-compute BIN   run BIN MIB ROUNDS SEED with the values on the PASS line
#                         and require the same hash
#   --no-vmm-errors       fail if a `kdom: ` line mentions an error or failure
#                         (for guests that print nothing themselves)
# The command's output is echoed (for the ctest log) before the verdict.
set -u

detail= name= status=1 timeout_s=60 keep_running=0 expect= rtc_tol= compute_bin= no_vmm_errors=0
while [ $# -gt 0 ]; do
    case $1 in
    --name) name=$2; shift 2 ;;
    --status) status=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --keep-running) keep_running=1; shift ;;
    --expect) expect=$2; shift 2 ;;
    --check-rtc) rtc_tol=$2; shift 2 ;;
    --check-compute) compute_bin=$2; shift 2 ;;
    --no-vmm-errors) no_vmm_errors=1; shift ;;
    --) shift; break ;;
    *) echo "run-probe: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "run-probe: no command given" >&2; exit 2; }

log=$(mktemp /tmp/run-probe.XXXXXX)
trap 'rm -f "$log"' EXIT

fail() {
    echo "run-probe: FAIL: $*"
    exit 1
}

echo "run-probe: $*"
start=$(date +%s.%N)
"$@" >"$log" 2>&1 </dev/null &
pid=$!

pass_re="^PROBE ${name}: PASS"
fail_re="^PROBE ${name}: FAIL"
deadline=$(($(date +%s) + timeout_s))
timed_out=0 still_running=0
while kill -0 "$pid" 2>/dev/null; do
    if [ "$keep_running" = 1 ] && grep -q -a "$pass_re" "$log"; then
        sleep 2
        if kill -0 "$pid" 2>/dev/null; then
            still_running=1
        fi
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        break
    fi
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
fi
wait "$pid"
rc=$?
end=$(date +%s.%N)

cat -v "$log"
echo "run-probe: exit status $rc after $(awk "BEGIN { printf \"%.2f\", $end - $start }") s"

[ "$timed_out" = 0 ] || fail "still running after ${timeout_s} s"
if [ -n "$name" ]; then
    grep -q -a "$fail_re" "$log" && fail "the probe reported a failure"
    line=$(grep -a -m1 "$pass_re" "$log") || fail "no line 'PROBE ${name}: PASS'"
    detail=${line#"PROBE ${name}: PASS"}
    detail=${detail# }
fi
if [ "$keep_running" = 1 ]; then
    [ "$still_running" = 1 ] || fail "the guest did not keep running after its PASS line (status $rc)"
else
    [ "$rc" = "$status" ] || fail "exit status $rc, expected $status"
fi
if [ -n "$expect" ]; then
    case $detail in *"$expect"*) ;; *) fail "PASS line lacks '$expect'" ;; esac
fi
if [ "$no_vmm_errors" = 1 ]; then
    grep -a -i '^kdom: .*\(error\|fail\)' "$log" && fail "kdom reported an error"
fi
if [ -n "$rtc_tol" ]; then
    stamp=${detail%% *}
    guest_utc=$(date -u -d "${stamp/T/ }" +%s 2>/dev/null) || fail "cannot parse RTC time '$stamp'"
    guest_local=$(date -d "${stamp/T/ }" +%s)
    now=$(date +%s)
    d1=$((guest_utc - now)); d1=${d1#-}
    d2=$((guest_local - now)); d2=${d2#-}
    [ "$d1" -le "$rtc_tol" ] || [ "$d2" -le "$rtc_tol" ] ||
        fail "RTC $stamp is $d1 s from the host's UTC time and $d2 s from its local time (tolerance $rtc_tol s)"
    echo "run-probe: RTC $stamp is within $rtc_tol s of the host clock ($d1 s from UTC)"
fi
if [ -n "$compute_bin" ]; then
    field() { echo "$detail" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    hash=$(field hash) mib=$(field mib) rounds=$(field rounds) seed=$(field seed)
    [ -n "$hash" ] && [ -n "$mib" ] && [ -n "$rounds" ] && [ -n "$seed" ] ||
        fail "PASS line lacks hash/mib/rounds/seed"
    host=$("$compute_bin" "$mib" "$rounds" "$seed") || fail "$compute_bin failed"
    echo "run-probe: $host"
    case $host in *"hash=$hash "*) ;; *) fail "guest hash $hash differs from the host's" ;; esac
fi
echo "run-probe: PASS"
