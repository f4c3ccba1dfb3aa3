# shellcheck shell=bash
# The bad-input tests' judge, sourced by bad-input.sh and bad-input-kvm.sh; they set $work (a
# scratch directory) first and print "bad-input...: $passed passed, $failed failed" at the end.
passed=0
failed=0

# judge NAME PASS_TEXT FAIL_TEXT -- COMMAND...: a check of what a case left behind, passing
# when COMMAND succeeds.
judge() {
  local name=$1 pass_text=$2 fail_text=$3
  shift 4
  if "$@"; then
    echo "PASS $name: $pass_text"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $fail_text"
    failed=$((failed + 1))
  fi
}

# expect NAME EXPECTED_SUBSTRING -- COMMAND...
expect() {
  local name=$1 pattern=$2
  shift 3
  local status
  timeout 20 "$@" >"$work/out" 2>"$work/err" </dev/null
  status=$?
  local errors
  errors=$(grep -c '^kdom: error: ' "$work/err")
  if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && [ "$status" -lt 128 ] && [ "$errors" -eq 1 ] &&
    grep -q -- "$pattern" "$work/err"; then
    echo "PASS $name: $(grep '^kdom: error: ' "$work/err")"
    passed=$((passed + 1))
  else
    echo "FAIL $name: exit $status, expected one 'kdom: error:' line containing '$pattern'; stderr was:"
    sed 's/^/    /' "$work/err"
    failed=$((failed + 1))
  fi
}
