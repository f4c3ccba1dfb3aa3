# shellcheck shell=bash
# What the daemon tier's scripts share: the PASS/FAIL judge and a bounded wait.
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

# domain_absent NAME: kdom list ($kdom) does not show NAME
domain_absent() { ! "$kdom" list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }
