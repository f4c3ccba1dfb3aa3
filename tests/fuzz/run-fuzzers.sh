#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for SECONDS each, starting from the seeds in
# tests/fuzz/seeds/<target>/ plus whatever corpus earlier runs left in BUILD_DIR/fuzz/corpus/.
# Exits non-zero if any target crashes, trips ASan/UBSan, times out on one input or leaks; the
# reproducer is left in BUILD_DIR/fuzz/artifacts/<target>/ and its hex is printed.
# Usage: tests/fuzz/run-fuzzers.sh BUILD_DIR [SECONDS]    (default 20)
set -uo pipefail

build=${1:?usage: run-fuzzers.sh BUILD_DIR [SECONDS]}
seconds=${2:-20}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
targets=(fuzz_virtqueue fuzz_block fuzz_entropy fuzz_vsock fuzz_balloon fuzz_net fuzz_console fuzz_virtio_pci
  fuzz_store_guest fuzz_snapshot_stream)

failed=()
for target in "${targets[@]}"; do
  bin="$build/fuzz/$target"
  if [ ! -x "$bin" ]; then
    echo "run-fuzzers: $bin is missing (cmake --build $build --target fuzzers)" >&2
    failed+=("$target(missing)")
    continue
  fi
  corpus="$build/fuzz/corpus/$target"
  artifacts="$build/fuzz/artifacts/$target"
  log="$build/fuzz/$target.log"
  mkdir -p "$corpus" "$artifacts"
  rm -f "$artifacts"/*
  seeds=()
  [ -d "$here/seeds/$target" ] && seeds=("$here/seeds/$target")
  echo "== $target: ${seeds:+seeds + }corpus $corpus, ${seconds}s"
  # One input may take at most 10 s; max_len covers the rings of a 256-entry queue and some data.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$log" | tr '\n' ' '
  echo
  if [ $rc -ne 0 ]; then
    failed+=("$target")
    echo "run-fuzzers: $target FAILED (exit $rc); log: $log" >&2
    tail -n 60 "$log" >&2
    for crash in "$artifacts"/*; do
      [ -f "$crash" ] || continue
      echo "reproducer $crash:" >&2
      od -An -tx1 -v "$crash" | tr -d ' \n' | fold -w 128 >&2
      echo >&2
    done
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "run-fuzzers: failed: ${failed[*]}" >&2
  exit 1
fi
echo "run-fuzzers: all ${#targets[@]} targets ran ${seconds}s without a finding"
