# shellcheck shell=bash
# The bad-input tests' judge, sourced by bad-input.sh and bad-input-kvm.sh; they set $work (a
# scratch directory) first and print "bad-input...: $passed passed, $failed failed" at the end.
passed=0
failed=0

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
