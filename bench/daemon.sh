#!/usr/bin/env bash
# kdomd's figures: domains created per second through the daemon (create request to the VMM
# saying it is ready, several clients at once), the API's latency (p50/p99 of GET /v1/domains and
# GET /v1/domains/{dom}, measured with curl over the Unix socket) with 100 probe domains running,
# and the daemon's memory per domain (its RSS growth over those 100). Probe guests (idle after
# touching their RAM), so the figures are the toolstack's, not a guest's boot.
# Runs on this machine's /dev/kvm when it opens, otherwise inside the nested test host, where
# every figure is TCG-slowed (compare them only with each other).
# No peer yet: libvirt's virsh with QEMU is not measured beside it (see bench/README.md).
#   bench/daemon.sh [-n DOMAINS] [-c CLIENTS]     (defaults: 100 domains, 4 clients)
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
domains=100
clients=4
inner=0
while [ $# -gt 0 ]; do
  case $1 in
  -n) domains=$2; shift 2 ;;
  -c) clients=$2; shift 2 ;;
  --inner) inner=1; shift ;;
  *) echo "usage: bench/daemon.sh [-n DOMAINS] [-c CLIENTS]" >&2; exit 2 ;;
  esac
done
kdom=$repo/build/kdom
kdomd=$repo/build/kdomd
probe=$repo/build/tests/guests/idle-after-touch.elf
for f in "$kdom" "$kdomd" "$probe"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "bench/daemon.sh: $f is missing; run scripts/setup.sh" >&2; exit 1; }
done

if [ "$inner" = 0 ]; then
  if [ -c /dev/kvm ] && (: <>/dev/kvm) 2>/dev/null; then
    echo "daemon bench: on this machine's /dev/kvm"
    exec "$0" --inner -n "$domains" -c "$clients"
  fi
  echo "daemon bench: no usable /dev/kvm here; in the nested test host (figures are TCG-slowed)"
  exec "$repo/scripts/test-host.sh" --host-root --timeout 1500 -- "$0" --inner -n "$domains" -c "$clients"
fi

work=$(mktemp -d /tmp/kdomd-bench.XXXXXX)
socket=$work/kdomd.sock
export KDOM_SOCKET=$socket
cleanup() {
  [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null
  pkill -9 -f -- "--config $work/" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
# percentile P of the numbers in FILE (one a line)
percentile() { sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int((NR - 1) * p / 100) + 1; printf "%.2f", v[i] * 1000 }'; }

"$kdomd" --foreground --socket "$socket" --state-dir "$work/state" --run-dir "$work/run" --log-dir "$work/log" \
  --vmm "$kdom" >"$work/kdomd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do "$kdom" list >/dev/null 2>&1 && break; sleep 0.1; done
rss_empty=$(rss_kib "$daemon_pid")
for i in $(seq 1 "$domains"); do
  printf 'name = "d%s"\nkernel = "%s"\nmemory = 8\non_crash = "preserve"\n' "$i" "$probe" >"$work/d$i.cfg"
done

# Creation: CLIENTS clients, each creating its share one after another.
client() {
  local first=$1 step=$2 i
  for ((i = first; i <= domains; i += step)); do
    "$kdom" create "$work/d$i.cfg" >/dev/null 2>>"$work/create-errors" || echo "d$i" >>"$work/create-failed"
  done
}
start=$(now)
pids=()
for c in $(seq 1 "$clients"); do
  client "$c" "$clients" &
  pids+=($!)
done
wait "${pids[@]}"
end=$(now)
failed=$(wc -l <"$work/create-failed" 2>/dev/null || echo 0)
running=$("$kdom" list | awk '$1 ~ /^d[0-9]+$/ && $5 == "r-----"' | wc -l)
awk -v n="$domains" -v c="$clients" -v s="$start" -v e="$end" -v r="$running" -v f="$failed" 'BEGIN {
  printf "daemon.create: %d domains by %d clients in %.2f s: %.1f domains/s (%d running, %d failed)\n", n, c, e - s, n / (e - s), r, f }'
[ "$failed" -eq 0 ] || { echo "daemon bench: creates failed:"; head -5 "$work/create-errors"; }

# Latency with every domain running: 200 requests each, one at a time.
for _ in $(seq 200); do
  curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$socket" http://kdomd/v1/domains >>"$work/list.times"
done
for i in $(seq 200); do
  curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$socket" "http://kdomd/v1/domains/d$(( (i % domains) + 1 ))" >>"$work/info.times"
done
echo "daemon.api: with $running domains: GET /v1/domains p50 $(percentile 50 "$work/list.times") ms, p99 $(percentile 99 "$work/list.times") ms; GET /v1/domains/{dom} p50 $(percentile 50 "$work/info.times") ms, p99 $(percentile 99 "$work/info.times") ms"
rss_full=$(rss_kib "$daemon_pid")
awk -v a="$rss_empty" -v b="$rss_full" -v n="$running" 'BEGIN {
  printf "daemon.rss: kdomd %d KiB with no domain, %d KiB with %d: %.1f KiB per domain\n", a, b, n, n > 0 ? (b - a) / n : 0 }'
start=$(now)
"$kdom" list | awk '$1 ~ /^d[0-9]+$/ {print $1}' | xargs -P "$clients" -n 1 "$kdom" destroy
end=$(now)
awk -v n="$running" -v s="$start" -v e="$end" 'BEGIN { printf "daemon.destroy: %d domains in %.2f s\n", n, e - s }'
