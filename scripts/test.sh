#!/usr/bin/env bash
# Runs every test tier: unit (also under ASan/UBSan), guests (probe guests on this host's
# /dev/kvm), e2e (stock Linux guests on hardware virtualization: the nested test host) and a
# short run of the libFuzzer targets (KDOM_FUZZ_SECONDS each, default 20).
# Pass ctest arguments to narrow it, e.g. scripts/test.sh -L unit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x build/kdom ] || { echo "test.sh: build/kdom is missing; run scripts/setup.sh first" >&2; exit 1; }
if [ $# -gt 0 ]; then
  exec ctest --test-dir build --output-on-failure "$@"
fi
echo "== unit tests and bad-input tests under AddressSanitizer/UBSan"
ctest --test-dir build-asan --output-on-failure -L unit
echo "== fuzz targets (tests/fuzz), ${KDOM_FUZZ_SECONDS:-20} s each"
tests/fuzz/run-fuzzers.sh build-fuzz "${KDOM_FUZZ_SECONDS:-20}"
echo "== all tiers: unit, guests, e2e"
ctest --test-dir build --output-on-failure
