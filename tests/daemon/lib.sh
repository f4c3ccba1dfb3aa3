# shellcheck shell=bash
# What the daemon tier's scripts share: a work directory cleaned up with everything started in
# it, starting kdomd there, the PASS/FAIL judge and a bounded wait. Needs $kdom and $kdomd.
passed=0
failed=0

# check NAME TEXT -- COMMAND...: passes when COMMAND succeeds; returns its verdict, so that a
# script can stop a scenario whose later checks all need this one (`check ... || return`).
check() {
  local name=$1 text=$2
  shift 3
  if "$@"; then
    echo "PASS $name: $text"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $text"
    failed=$((failed + 1))
    return 1
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

# The nested test host's emulated CPU fails any VMM's guest now and then (docs/testing.md):
# a script whose checks failed asks test_host_fault whether that is what it met, and if so
# exits 125, as a test host that failed itself does, so that with-kvm.sh starts another (its
# WARNING line is counted in test.sh's closing list). Only in the test host (with-kvm.sh sets
# KDOM_IN_TEST_HOST); elsewhere a failure is a failure.
#
# dump_stalled_guests: every VMM still running under $work prints its vCPUs' registers to its
# log and stops (SIGQUIT), so that a guest stuck in its kernel leaves evidence.
dump_stalled_guests() {
  [ -n "${KDOM_IN_TEST_HOST:-}" ] || return 0
  pkill -QUIT -f -- "--config $work/" 2>/dev/null && sleep 2
  return 0
}
# spun_with_interrupts_off LOG: LOG's last SIGQUIT dump has every vCPU in the guest's kernel
# with interrupts off (IF, 0x200, clear in RFLAGS).
spun_with_interrupts_off() {
  local dump flags vcpus=0 off=0
  grep -q 'kdom: state at SIGQUIT' "$1" 2>/dev/null || return 1
  dump=$(tac "$1" | sed '/kdom: state at SIGQUIT/q')
  for flags in $(echo "$dump" | sed -n 's/.*kdom: vCPU [0-9]*: rip=ffff[0-9a-f]* rsp=[0-9a-f]* rflags=\([0-9a-f]*\)$/\1/p'); do
    vcpus=$((vcpus + 1))
    [ $((0x$flags & 0x200)) = 0 ] && off=$((off + 1))
  done
  [ "$vcpus" -gt 0 ] && [ "$off" = "$vcpus" ]
}
# test_host_fault LOG...: prints what ended a guest and succeeds when, in the test host, the
# logs (kdomd's and the domains') show one of the emulated CPU's known faults: a triple fault,
# a guest kernel's double fault or stack overrun, or a SIGQUIT dump with every vCPU in the
# guest's kernel with interrupts off (the dump comes only once every vCPU thread has left
# KVM_RUN, so none was stuck in kdom).
test_host_fault() {
  [ -n "${KDOM_IN_TEST_HOST:-}" ] || return 1
  local log
  for log in "$@"; do
    [ -f "$log" ] || continue
    if grep -q 'triple fault (KVM_EXIT_SHUTDOWN)' "$log"; then
      echo "a guest triple-faulted ($(basename "$log"): $(grep -m1 'triple fault (KVM_EXIT_SHUTDOWN)' "$log"))"
    elif grep -q 'PANIC: double fault' "$log"; then
      echo "a guest's kernel took a double fault ($(basename "$log"))"
    elif grep -q 'BUG: TASK stack guard page was hit' "$log"; then
      echo "a guest's kernel ran into its stack's guard page ($(basename "$log"))"
    elif spun_with_interrupts_off "$log"; then
      echo "a guest's kernel spun with interrupts off ($(basename "$log"), kdom's SIGQUIT dump)"
    else
      continue
    fi
    return 0
  done
  return 1
}
