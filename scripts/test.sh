#!/usr/bin/env bash
# Runs every test tier: unit (also under ASan/UBSan), guests (probe guests on this host's
# /dev/kvm), e2e (stock Linux guests on hardware virtualization: the nested test host) and a
# short run of the libFuzzer targets (KDOM_FUZZ_SECONDS each, default 20).
# Pass ctest arguments to narrow it, e.g. scripts/test.sh -L unit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x build/kdom ] || { echo "test.sh: build/kdom is missing; run scripts/setup.sh first" >&2; exit 1; }

# ctest shows a passing test's output nowhere, so this says, test by test, what the nested test
# host's own faults cost the run just made: each scenario run again (E2E-RETRY) and each test
# host that hung or failed and was started again (docs/testing.md). Worth counting, even when
# everything passed.
ctest_then_report_retries() {
  local rc=0
  ctest --test-dir build --output-on-failure "$@" || rc=$?
  echo "== test-host faults met and retried in this run"
  awk '/^[0-9]+\/[0-9]+ Testing: / { test = $3 }
       /^(E2E-RETRY |run-e2e\.sh: WARNING|with-kvm: WARNING|test-host\.sh: error: the test host hung)/ {
         print "  " test ": " $0; n++ }
       END { if (n == 0) print "  none" }' build/Testing/Temporary/LastTest.log
  return "$rc"
}

if [ $# -gt 0 ]; then
  ctest_then_report_retries "$@"
  exit
fi
# The unit tier, a process for each of its ~850 tests, on both CPUs (it starts no domain).
echo "== unit tests and bad-input tests under AddressSanitizer/UBSan"
ctest --test-dir build-asan --output-on-failure -L unit -j 2
echo "== fuzz targets (tests/fuzz), ${KDOM_FUZZ_SECONDS:-20} s each"
tests/fuzz/run-fuzzers.sh build-fuzz "${KDOM_FUZZ_SECONDS:-20}"
echo "== unit tests"
ctest --test-dir build --output-on-failure -L unit -j 2
echo "== the tiers that start domains: guests, daemon, e2e"
ctest_then_report_retries -LE unit
