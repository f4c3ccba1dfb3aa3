# shellcheck shell=bash
# What the daemon tier's scripts share: a work directory cleaned up with everything started in
# it, starting kdomd there, the PASS/FAIL judge and a bounded wait. Needs $kdom and $kdomd.
passed=0
failed=0

# check NAME TEXT -- COMMAND...: passes when COMMAND succeeds
check() {
  local name=$1 text=$2
  shift 3
  if "$@"; then
    echo "PASS $name: $text"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $text"
    failed=$((failed + 1))
  fi
}

# wait_for SECONDS COMMAND...: until COMMAND succeeds; false if it never did
wait_for() {
  local limit=$(($1 * 10))
  shift
  for _ in $(seq "$limit"); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

# wait_wall SECONDS COMMAND...: as wait_for, bounded by wall-clock time: in the test host a
# try takes far longer than its 0.1 s pause, so wait_for's "N seconds" of tries can last many
# minutes. (The older scripts keep wait_for's count, which their time limits were set by.)
wait_wall() {
  local deadline=$((SECONDS + $1))
  shift
  while :; do
    "$@" && return 0
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# domain_absent NAME: kdom list ($kdom) does not show NAME
domain_absent() { ! "$kdom" list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

# setup_work NAME: this test's work directory ($work) with kdomd's socket in it ($KDOM_SOCKET);
# on exit kdomd ($daemon_pid) and every VMM started with a config under $work are killed and
# the directory removed (after extra_cleanup, which a test may define again).
setup_work() {
  work=$(mktemp -d "/tmp/kdomd-$1.XXXXXX")
  export KDOM_SOCKET=$work/kdomd.sock
  daemon_pid=
  trap cleanup_work EXIT
}
extra_cleanup() { :; }
cleanup_work() {
  extra_cleanup
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null
  pkill -9 -f -- "--config $work/" 2>/dev/null
  rm -rf "$work"
}

# start_daemon: kdomd in the foreground on $work's socket and directories, its log appended to
# $work/kdomd.log; returns once it answers, or 1 (its log printed) after 30 s.
start_daemon() {
  "$kdomd" --foreground --socket "$KDOM_SOCKET" --state-dir "$work/state" --run-dir "$work/run" \
    --log-dir "$work/log" --vmm "$kdom" >>"$work/kdomd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 300); do
    [ -S "$KDOM_SOCKET" ] && "$kdom" list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "kdomd did not start; its log:"
  sed 's/^/    /' "$work/kdomd.log"
  return 1
}
