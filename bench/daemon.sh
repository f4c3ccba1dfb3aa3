#!/usr/bin/env bash
# The toolstack's figures, kdomd beside libvirt (libvirtd + virsh, QEMU with KVM), in the same run:
# - create rate: DOMAINS probe domains created by CLIENTS concurrent clients (`kdom create CFG`,
#   `virsh create DOMAIN.xml`: transient domains); a domain counts once the create call returned
#   (kdomd answers when the VMM said it is ready; virsh when QEMU was started and let run). Also
#   each create call's own latency (p50/p99) under that concurrency.
# - API latency with every domain running: list and one domain's info, p50/p99 of 200 requests
#   each in one client session (curl over kdomd's Unix socket, one request a transfer; `virsh -t`
#   timing each command of one virsh session), and the command lines' own wall time (fork to
#   exit) of `kdom list` / `kdom list DOM` against `virsh list` / `virsh dominfo DOM`.
# - memory: the daemon's anonymous RSS growth per domain (kdomd, libvirtd; baseline taken after
#   one warm-up domain was created and destroyed), and the VMM processes' RSS and Pss per domain
#   (kdom, QEMU; the guest's RAM, which the probe touches whole, included).
# The guest is the probe build/tests/guests/idle-after-touch.elf (writes every page of its RAM,
# then halts): kdom boots it directly, QEMU through its PVH note (-kernel, machine pc), so the
# figures are the toolstacks', not a guest's boot. Same memory (MIB) and 1 vCPU on both sides.
# Runs on this machine's /dev/kvm when it opens, otherwise inside the nested test host, where
# every figure is TCG-slowed: compare the ratios kdom/libvirt, not the absolute figures.
#   bench/daemon.sh [-n DOMAINS] [-c CLIENTS] [-m MIB] [--no-libvirt] [--timeout S]
#     (defaults: 100 domains, 4 clients, 32 MiB; --timeout: the test host's limit, default 900 + 24 s a domain)
# libvirt's side needs Debian's libvirt-daemon, libvirt-daemon-driver-qemu and libvirt-clients
# (scripts/setup.sh); without them it is skipped with a note. It runs its own libvirtd in a private
# mount namespace (its own /etc/libvirt, /run/libvirt, /var/{lib,log,cache}/libvirt), so a
# system libvirtd, if any, is neither used nor touched.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
domains=100
clients=4
mib=32
libvirt=1
timeout_s=
inner=
bin=
usage() { echo "usage: bench/daemon.sh [-n DOMAINS] [-c CLIENTS] [-m MIB] [--no-libvirt] [--timeout S]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
  -n) domains=${2:-}; shift 2 ;;
  -c) clients=${2:-}; shift 2 ;;
  -m) mib=${2:-}; shift 2 ;;
  --no-libvirt) libvirt=0; shift ;;
  --timeout) timeout_s=${2:-}; shift 2 ;;
  --inner | --libvirt-part) inner=$1; bin=${2:-}; shift 2 ;;
  -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) usage ;;
  esac
done
for v in domains clients mib; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || { echo "bench/daemon.sh: -${v:0:1} wants a positive number" >&2; exit 2; }
done
die() { echo "bench/daemon.sh: error: $*" >&2; exit 1; }

# --- This machine: snapshot the binaries, then run the measuring part here or in the test host ---
if [ -z "$inner" ]; then
  for f in "$repo/build/kdom" "$repo/build/kdomd" "$repo/build/tests/guests/idle-after-touch.elf"; do
    [ -f "$f" ] || die "$f is missing; run scripts/setup.sh"
  done
  out=$repo/build/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-daemon
  mkdir -p "$out/bin" || die "cannot make $out"
  # Copies, so that a rebuild of build/ by someone else during the run cannot swap the binaries
  # under the running domains (through the test host's virtiofs a replaced file reads as a stale
  # file handle); this script and the test host's scripts are copied for the same reason.
  cp -p "$repo/build/kdom" "$repo/build/kdomd" "$repo/build/tests/guests/idle-after-touch.elf" "$self" "$out/bin/" ||
    die "cannot copy the binaries to $out/bin"
  trap 'rm -rf "$out/bin" "${snap:-}"' EXIT
  args=(-n "$domains" -c "$clients" -m "$mib")
  [ "$libvirt" = 1 ] || args+=(--no-libvirt)
  echo "== daemon bench: $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname), $(nproc) CPUs, kdom $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); raw output: $out/console.log"
  if [ -c /dev/kvm ] && (: <>/dev/kvm) 2>/dev/null; then
    echo "daemon bench: on this machine's /dev/kvm"
    "$out/bin/daemon.sh" --inner "$out/bin" "${args[@]}" 2>&1 | tee "$out/console.log"
    exit "${PIPESTATUS[0]}"
  fi
  # L1's memory: both sides' domains (guest RAM + VMM), one side at a time, QEMU's the larger
  # (~40 MiB a process beyond the guest's RAM under KVM), plus L1 itself and the overlay.
  l1_mib=$((2048 + domains * (mib + 64)))
  [ "$l1_mib" -ge 3072 ] || l1_mib=3072
  avail=$(($(sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024))
  [ "$l1_mib" -lt "$avail" ] || die "the test host would need $l1_mib MiB for $domains domains of $mib MiB; $avail MiB available here (lower -n or -m)"
  timeout_s=${timeout_s:-$((900 + 24 * domains))}
  echo "daemon bench: no usable /dev/kvm here; in the nested test host ($l1_mib MiB, limit ${timeout_s}s): every figure is TCG-slowed, compare ratios"
  snap=$(mktemp -d /tmp/kdom-bench-th.XXXXXX)
  cp -rp "$repo/scripts" "$snap/scripts" || die "cannot copy scripts/"
  ln -s "$repo/guest" "$snap/guest"
  "$snap/scripts/test-host.sh" --host-root --build-dir "$repo/build" --memory "$l1_mib" --timeout "$timeout_s" -- \
    "$out/bin/daemon.sh" --inner "$out/bin" "${args[@]}" 2>&1 | tee "$out/console.log"
  exit "${PIPESTATUS[0]}"
fi

kdom=$bin/kdom
kdomd=$bin/kdomd
probe=$bin/idle-after-touch.elf
now() { date +%s.%N; }
# kib FIELD FILE: a "Field: N kB" line's N (VmRSS, RssAnon in /proc/PID/status; Pss in smaps_rollup).
kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "$2" 2>/dev/null; }
# sum_kib FIELD FILE_IN_PROC PID...: FIELD of those processes together, KiB.
sum_kib() { local f=$1 file=$2 p t=0 v; shift 2; for p in "$@"; do v=$(kib "$f" "/proc/$p/$file"); t=$((t + ${v:-0})); done; echo "$t"; }
# report_rss SIDE DAEMON PID RSS0 ANON0 RUNNING VMM PIDS...: the daemon's growth since its
# baseline (RSS0/ANON0: VmRSS and RssAnon then) per running domain, and the VMMs' RSS and Pss per
# process. The per-domain headline is the anonymous part: the daemon's file-backed pages (its
# code) come and go with L1's page cache, and VmRSS was seen to shrink while domains were added.
report_rss() {
  local side=$1 daemon=$2 pid=$3 rss0=$4 anon0=$5 n=$6 vmm=$7 rss anon vrss vpss
  shift 7
  rss=$(kib VmRSS "/proc/$pid/status")
  anon=$(kib RssAnon "/proc/$pid/status")
  vrss=$(sum_kib VmRSS status "$@")
  vpss=$(sum_kib Pss smaps_rollup "$@")
  awk -v side="$side" -v d="$daemon" -v r0="$rss0" -v a0="$anon0" -v r="$rss" -v a="$anon" -v n="$n" -v vmm="$vmm" \
    -v vr="$vrss" -v vp="$vpss" -v nv="$#" -v m="$mib" -v figures="$work/figures" 'BEGIN {
    per = (n > 0 ? (a - a0) / n : 0); vr1 = (nv > 0 ? vr / nv : 0); vp1 = (nv > 0 ? vp / nv : 0)
    printf "%s.rss: %s RssAnon %d KiB with no domain, %d KiB with %d: %.1f KiB per domain (VmRSS %d -> %d KiB); %s RSS %.0f KiB, Pss %.0f KiB per domain (%d processes; guest RAM %d MiB included)\n",
      side, d, a0, a, n, per, r0, r, vmm, vr1, vp1, nv, m
    printf "%s.daemon_rss %.1f\n%s.vmm_rss %.0f\n%s.vmm_pss %.0f\n", side, per, side, vr1, side, vp1 >>figures
  }'
}
# percentile P FILE: nearest-rank percentile of the numbers in FILE (one a line, ms).
percentile() { sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100); if (i < NR * p / 100) i++; if (i < 1) i = 1; printf "%.2f", v[i] }'; }
# wall_ms CMD...: one run's fork-to-exit time in ms (output discarded); empty if it failed.
wall_ms() { local s e; s=$(now); "$@" >/dev/null 2>&1 || return 1; e=$(now); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'; }
# wait_logs PATTERN SECONDS FILE...: waits until every FILE holds PATTERN; prints how many do.
wait_logs() {
  local pattern=$1 deadline=$(($(date +%s) + $2)) n
  shift 2
  while :; do
    n=$(grep -l -s -- "$pattern" "$@" | wc -l)
    [ "$n" -ge $# ] || [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 1
  done
  echo "$n"
}
# create_clients CMD_PREFIX: CLIENTS clients, each creating its share of d1..dDOMAINS one after
# another with CMD_PREFIX FILE; each call's time (ms) goes to $work/PREFIX.create.times.
create_clients() {
  local side=$1 c pids=()
  shift
  client() {
    local i s e
    for ((i = $1; i <= domains; i += clients)); do
      s=$(now)
      if "${@:2}" "$work/$side.d$i" >/dev/null 2>>"$work/$side.create-errors"; then
        e=$(now)
        awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }' >>"$work/$side.create.times"
      else
        echo "d$i" >>"$work/$side.create-failed"
      fi
    done
  }
  for c in $(seq 1 "$clients"); do
    client "$c" "$@" &
    pids+=($!)
  done
  wait "${pids[@]}"
}
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# report_create SIDE START END RUNNING
report_create() {
  local failed
  failed=$(lines "$work/$1.create-failed")
  awk -v side="$1" -v n="$domains" -v c="$clients" -v s="$2" -v e="$3" -v r="$4" -v f="$failed" \
    -v p50="$(percentile 50 "$work/$1.create.times")" -v p99="$(percentile 99 "$work/$1.create.times")" 'BEGIN {
    printf "%s.create: %d domains by %d clients in %.2f s: %.2f domains/s; each create call p50 %s ms, p99 %s ms (%d running, %d failed)\n",
      side, n, c, e - s, (n - f) / (e - s), p50, p99, r, f }'
  echo "$1.rate $(awk -v n="$domains" -v f="$failed" -v s="$2" -v e="$3" 'BEGIN { printf "%.3f", (n - f) / (e - s) }')" >>"$work/figures"
  if [ "$failed" -gt 0 ]; then
    echo "$1.create: FAILED: $failed creates failed; first errors:"
    head -n 5 "$work/$1.create-errors" | sed 's/^/   /'
  fi
}
figure() { echo "$1 $2" >>"$work/figures"; }

# --- libvirt's part, in its own mount namespace (the script runs itself under unshare -m) ---
if [ "$inner" = --libvirt-part ]; then
  work=$WORK
  lv=$work/libvirt
  mkdir -p "$lv/etc" "$lv/run" "$lv/lib" "$lv/log" "$lv/cache" /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt ||
    die "cannot make libvirt's directories"
  for d in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
    mount --bind "$lv/${d%%:*}" "${d#*:}" || die "cannot bind $lv/${d%%:*} over ${d#*:}"
  done
  # The QEMU driver resolves its default user, libvirt-qemu, before it reads qemu.conf (Debian's
  # libvirt-daemon-system makes that user; we do not install it): give this namespace one.
  if ! getent passwd libvirt-qemu >/dev/null; then
    { cat /etc/passwd; echo 'libvirt-qemu:x:64055:64055:libvirt (bench/daemon.sh):/var/lib/libvirt:/usr/sbin/nologin'; } >"$lv/passwd"
    { cat /etc/group; echo 'libvirt-qemu:x:64055:'; } >"$lv/group"
    mount --bind "$lv/passwd" /etc/passwd && mount --bind "$lv/group" /etc/group || die "cannot add the libvirt-qemu user"
  fi
  # QEMU as root, no cgroups (none set up in the test host), no per-domain /dev namespace or
  # relabelling, QEMU's stderr to a plain file (no virtlogd): the least machinery that runs a
  # domain, which is also the least work per create for libvirt.
  cat >/etc/libvirt/qemu.conf <<'CONF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
CONF
  printf 'log_outputs = "3:file:%s/libvirtd.log"\n' "$lv" >/etc/libvirt/libvirtd.conf
  uri=qemu:///system
  virsh() { command virsh -q -c "$uri" "$@"; }
  libvirtd --pid-file "$lv/libvirtd.pid" >"$lv/libvirtd.out" 2>&1 &
  libvirtd_pid=$!
  stop_libvirt() {
    local p f
    for f in /run/libvirt/qemu/*.pid; do
      [ -f "$f" ] && p=$(cat "$f") && kill -9 "$p" 2>/dev/null
    done
    kill "$libvirtd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$libvirtd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$libvirtd_pid" 2>/dev/null
  }
  trap stop_libvirt EXIT
  # libvirtd answers once its drivers are up (the QEMU driver probes QEMU's capabilities first).
  for _ in $(seq 300); do
    virsh version >/dev/null 2>&1 && break
    kill -0 "$libvirtd_pid" 2>/dev/null || break
    sleep 1
  done
  if ! virsh version >/dev/null 2>&1; then
    echo "libvirt: FAILED: libvirtd did not come up; its log:"
    tail -n 8 "$lv/libvirtd.log" "$lv/libvirtd.out" 2>/dev/null | sed 's/^/   /'
    exit 1
  fi
  echo "libvirt.info: $(command virsh --version) / libvirtd $(libvirtd --version | awk '{print $NF}'), $(qemu-system-x86_64 --version | head -n 1)"
  for i in $(seq 0 "$domains"); do
    cat >"$work/libvirt.d$i" <<XML
<domain type='kvm'>
  <name>d$i</name>
  <memory unit='MiB'>$mib</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$probe</kernel></os>
  <on_crash>preserve</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <serial type='file'><source path='$lv/d$i.serial'/></serial>
  </devices>
</domain>
XML
  done
  # One warm-up domain, not counted (as on kdom's side), then libvirtd's baseline.
  if ! virsh create "$work/libvirt.d0" >/dev/null 2>"$lv/warmup.err"; then
    echo "libvirt: FAILED: the warm-up domain did not start: $(tail -n 2 "$lv/warmup.err" | tr '\n' ' ')"
    tail -n 5 /var/log/libvirt/qemu/d0.log 2>/dev/null | sed 's/^/   /'
    exit 1
  fi
  [ "$(wait_logs touched 120 "$lv/d0.serial")" = 1 ] || echo "libvirt: note: the warm-up probe did not print its line in 120 s"
  virsh destroy d0 >/dev/null
  sleep 2
  rss_empty=$(kib VmRSS "/proc/$libvirtd_pid/status")
  anon_empty=$(kib RssAnon "/proc/$libvirtd_pid/status")

  start=$(now)
  create_clients libvirt virsh create
  end=$(now)
  running=$(virsh list --state-running --name | grep -c '^d[0-9]')
  report_create libvirt "$start" "$end" "$running"
  virsh list --all | awk '$2 ~ /^d[0-9]+$/ && $3 != "running" { printf "libvirt: note: after its create returned, %s is in state %s\n", $2, $3 }'
  serials=()
  for i in $(seq 1 "$domains"); do serials+=("$lv/d$i.serial"); done
  touched=$(wait_logs touched 300 "${serials[@]}")
  [ "$touched" = "$domains" ] || echo "libvirt: note: $touched of $domains probes printed their line within 300 s"

  qemu_pids=()
  for i in $(seq 1 "$domains"); do
    [ -f "/run/libvirt/qemu/d$i.pid" ] && qemu_pids+=("$(cat "/run/libvirt/qemu/d$i.pid")")
  done
  report_rss libvirt libvirtd "$libvirtd_pid" "$rss_empty" "$anon_empty" "$running" QEMU "${qemu_pids[@]}"

  # API latency: one virsh session, -t times each command (its RPCs and printing).
  cmds=
  for _ in $(seq 200); do cmds="$cmds list;"; done
  command virsh -c "$uri" -t "$cmds" 2>&1 | sed -n 's/^(Time: \([0-9.]*\) ms)$/\1/p' >"$work/libvirt.list.times"
  cmds=
  for i in $(seq 200); do cmds="$cmds dominfo d$(((i % domains) + 1));"; done
  command virsh -c "$uri" -t "$cmds" 2>&1 | sed -n 's/^(Time: \([0-9.]*\) ms)$/\1/p' >"$work/libvirt.info.times"
  [ "$(lines "$work/libvirt.list.times")" = 200 ] && [ "$(lines "$work/libvirt.info.times")" = 200 ] ||
    echo "libvirt.api: FAILED: virsh -t gave $(lines "$work/libvirt.list.times") list and $(lines "$work/libvirt.info.times") dominfo timings of 200"
  for _ in $(seq 20); do wall_ms command virsh -c "$uri" list >>"$work/libvirt.list.wall"; done
  for i in $(seq 20); do wall_ms command virsh -c "$uri" dominfo "d$(((i % domains) + 1))" >>"$work/libvirt.info.wall"; done
  echo "libvirt.api: with $running domains: virsh list p50 $(percentile 50 "$work/libvirt.list.times") ms, p99 $(percentile 99 "$work/libvirt.list.times") ms; virsh dominfo p50 $(percentile 50 "$work/libvirt.info.times") ms, p99 $(percentile 99 "$work/libvirt.info.times") ms (200 commands each in one session, virsh -t)"
  echo "libvirt.cli: virsh list p50 $(percentile 50 "$work/libvirt.list.wall") ms, p99 $(percentile 99 "$work/libvirt.list.wall") ms; virsh dominfo DOM p50 $(percentile 50 "$work/libvirt.info.wall") ms, p99 $(percentile 99 "$work/libvirt.info.wall") ms (20 runs each, fork to exit)"
  for f in list.times info.times list.wall info.wall; do
    figure "libvirt.$f.p50" "$(percentile 50 "$work/libvirt.$f")"
    figure "libvirt.$f.p99" "$(percentile 99 "$work/libvirt.$f")"
  done

  start=$(now)
  virsh list --name | grep '^d[0-9]' | xargs -P "$clients" -n 1 virsh -q -c "$uri" destroy >/dev/null
  end=$(now)
  left=$(virsh list --name | grep -c '^d[0-9]')
  awk -v n="$running" -v s="$start" -v e="$end" -v l="$left" 'BEGIN { printf "libvirt.destroy: %d domains in %.2f s (%d left)\n", n, e - s, l }'
  exit 0
fi

# --- The measuring part: kdom's side, then libvirt's, in the same place ---
work=$(mktemp -d /tmp/kdomd-bench.XXXXXX)
socket=$work/kdomd.sock
export KDOM_SOCKET=$socket
cleanup() {
  [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null
  pkill -9 -f -- "--config $work/" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
echo "daemon bench: $domains domains (probe idle-after-touch, $mib MiB, 1 vCPU) by $clients clients; $(nproc) CPUs, $(awk '/MemTotal/ {printf "%d MiB", $2 / 1024}' /proc/meminfo), Linux $(uname -r)"

"$kdomd" --foreground --socket "$socket" --state-dir "$work/state" --run-dir "$work/run" --log-dir "$work/log" \
  --vmm "$kdom" >"$work/kdomd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do "$kdom" list >/dev/null 2>&1 && break; sleep 0.1; done
"$kdom" list >/dev/null 2>&1 || { echo "kdom: FAILED: kdomd did not answer; its log:"; tail -n 5 "$work/kdomd.log"; exit 1; }
for i in $(seq 0 "$domains"); do
  printf 'name = "d%s"\nkernel = "%s"\nmemory = %s\nvcpus = 1\non_crash = "preserve"\n' "$i" "$probe" "$mib" >"$work/kdom.d$i"
done
# One warm-up domain, not counted, then kdomd's baseline.
"$kdom" create "$work/kdom.d0" >/dev/null 2>"$work/warmup.err" ||
  { echo "kdom: FAILED: the warm-up domain did not start: $(tail -n 2 "$work/warmup.err" | tr '\n' ' ')"; exit 1; }
[ "$(wait_logs touched 120 "$work/log/d0.log")" = 1 ] || echo "kdom: note: the warm-up probe did not print its line in 120 s"
"$kdom" destroy d0 >/dev/null
sleep 2
rss_empty=$(kib VmRSS "/proc/$daemon_pid/status")
anon_empty=$(kib RssAnon "/proc/$daemon_pid/status")

start=$(now)
create_clients kdom "$kdom" create
end=$(now)
"$kdom" list >"$work/kdom.list.after-create" 2>&1
running=$(awk '$1 ~ /^d[0-9]+$/ && $5 == "r-----"' "$work/kdom.list.after-create" | wc -l)
report_create kdom "$start" "$end" "$running"
# A create that returned but whose domain is not running (yet, or any more): say which, and how.
awk '$1 ~ /^d[0-9]+$/ && $5 != "r-----" { printf "kdom: note: after its create returned, %s is in state %s\n", $1, $5 }' "$work/kdom.list.after-create"
logs=()
for i in $(seq 1 "$domains"); do logs+=("$work/log/d$i.log"); done
touched=$(wait_logs touched 300 "${logs[@]}")
[ "$touched" = "$domains" ] || echo "kdom: note: $touched of $domains probes printed their line within 300 s"

mapfile -t vmm_pids < <(pgrep -f -- "--config $work/")
report_rss kdom kdomd "$daemon_pid" "$rss_empty" "$anon_empty" "$running" "kdom VMM" "${vmm_pids[@]}"

# API latency: one curl session, 200 requests, each transfer's time_total (a new process per
# request would mostly time curl's own start, seconds each under TCG).
urls=()
for _ in $(seq 200); do urls+=(-o /dev/null http://kdomd/v1/domains); done
curl -s -w '%{time_total}\n' --unix-socket "$socket" "${urls[@]}" | awk '{ printf "%.3f\n", $1 * 1000 }' >"$work/kdom.list.times"
urls=()
for i in $(seq 200); do urls+=(-o /dev/null "http://kdomd/v1/domains/d$(((i % domains) + 1))"); done
curl -s -w '%{time_total}\n' --unix-socket "$socket" "${urls[@]}" | awk '{ printf "%.3f\n", $1 * 1000 }' >"$work/kdom.info.times"
for _ in $(seq 20); do wall_ms "$kdom" list >>"$work/kdom.list.wall"; done
for i in $(seq 20); do wall_ms "$kdom" list "d$(((i % domains) + 1))" >>"$work/kdom.info.wall"; done
echo "kdom.api: with $running domains: GET /v1/domains p50 $(percentile 50 "$work/kdom.list.times") ms, p99 $(percentile 99 "$work/kdom.list.times") ms; GET /v1/domains/{dom} p50 $(percentile 50 "$work/kdom.info.times") ms, p99 $(percentile 99 "$work/kdom.info.times") ms (200 requests each in one curl)"
echo "kdom.cli: kdom list p50 $(percentile 50 "$work/kdom.list.wall") ms, p99 $(percentile 99 "$work/kdom.list.wall") ms; kdom list DOM p50 $(percentile 50 "$work/kdom.info.wall") ms, p99 $(percentile 99 "$work/kdom.info.wall") ms (20 runs each, fork to exit)"
for f in list.times info.times list.wall info.wall; do
  figure "kdom.$f.p50" "$(percentile 50 "$work/kdom.$f")"
  figure "kdom.$f.p99" "$(percentile 99 "$work/kdom.$f")"
done

start=$(now)
"$kdom" list | awk '$1 ~ /^d[0-9]+$/ {print $1}' | xargs -P "$clients" -n 1 "$kdom" destroy >/dev/null
end=$(now)
for _ in $(seq 100); do pgrep -f -- "--config $work/" >/dev/null || break; sleep 0.2; done
left=$(pgrep -f -- "--config $work/" | wc -l)
awk -v n="$running" -v s="$start" -v e="$end" -v l="$left" 'BEGIN { printf "kdom.destroy: %d domains in %.2f s (%d VMMs left)\n", n, e - s, l }'
kill "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null
daemon_pid=

status=0
if [ "$libvirt" = 0 ]; then
  echo "libvirt: skipped (--no-libvirt)"
elif ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null ||
  [ ! -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ]; then
  echo "libvirt: skipped: libvirtd, virsh or libvirt's QEMU driver is not installed (scripts/setup.sh installs them)"
else
  WORK=$work unshare -m --propagation private "$0" --libvirt-part "$bin" -n "$domains" -c "$clients" -m "$mib" || status=1
fi

# kdom beside libvirt: rate ratio above 1 and latency/memory ratios below 1 favour kdom.
if [ "$libvirt" = 1 ] && grep -q '^libvirt.rate ' "$work/figures"; then
  echo "daemon bench: kdom vs libvirt ($domains domains, $clients clients, $mib MiB; medians are p50)"
  awk '{ v[$1] = $2 } END {
    n = split("rate:create rate (domains/s)|list.times.p50:list p50 (ms, in session)|list.times.p99:list p99 (ms, in session)|info.times.p50:info p50 (ms, in session)|info.times.p99:info p99 (ms, in session)|list.wall.p50:list CLI p50 (ms, fork to exit)|info.wall.p50:info CLI p50 (ms, fork to exit)|daemon_rss:daemon RssAnon per domain (KiB)|vmm_rss:VMM RSS per domain (KiB)|vmm_pss:VMM Pss per domain (KiB)", f, "|")
    printf "   %-36s %12s %12s %12s\n", "figure", "kdom", "libvirt", "kdom/libvirt"
    for (i = 1; i <= n; i++) {
      split(f[i], kv, ":"); k = "kdom." kv[1]; l = "libvirt." kv[1]
      r = (v[l] + 0 != 0) ? sprintf("%.2f", v[k] / v[l]) : "-"
      printf "   %-36s %12s %12s %12s\n", kv[2], v[k], v[l], r
    }
  }' "$work/figures"
fi
exit "$status"
