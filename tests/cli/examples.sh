#!/usr/bin/env bash
# The xl.cfg files shipped under examples/ parse and check as they are: `kdom create -n` (xl's
# dry run, no daemon needed) prints each one's domain config with its name.
#   examples.sh KDOM_BINARY EXAMPLES_DIR
set -uo pipefail
kdom=$1
examples=$2
failed=0
count=0
for cfg in "$examples"/*.cfg; do
  count=$((count + 1))
  name=$(sed -n 's/^name *= *"\(.*\)"$/\1/p' "$cfg")
  if out=$("$kdom" create -n "$cfg" 2>&1) && grep -q "\"name\": \"$name\"" <<<"$out"; then
    echo "PASS $(basename "$cfg"): kdom create -n shows domain '$name'"
  else
    echo "FAIL $(basename "$cfg"): kdom create -n said:"
    sed 's/^/    /' <<<"$out"
    failed=$((failed + 1))
  fi
done
[ "$count" -gt 0 ] || { echo "FAIL: no .cfg under $examples"; exit 1; }
[ "$failed" -eq 0 ]
