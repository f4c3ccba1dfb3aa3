# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts in bench/ (bash). Source it; it
# defines variables and functions only.
#
# Conventions of the scripts:
# - raw per-run lines come from build/bench/kdom-bench ("<label> run i/n: key=value ...");
#   every statistic is computed here from those lines (median, p90 nearest-rank);
# - each script prints its figures as a table and, for bench/run-all.sh, one line per
#   headline figure: "SUMMARY|<benchmark>|<figure>|<value>|<target>|<verdict>";
# - a measurement that itself fails (guest did not exit as expected, marker missing,
#   wrong hash...) makes the script say so and exit non-zero; a target that is not
#   met does not (benchmarks report, they do not judge).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
BUILD=${KDOM_BUILD_DIR:-$REPO/build}
KB=$BUILD/bench/kdom-bench
KDOM=$BUILD/kdom
GUESTS=$BUILD/tests/guests
FIRST_MARK=$BUILD/bench/first-mark.elf
RESULTS=${KDOM_BENCH_RESULTS:-$BUILD/bench/results}
BENCH_FAILED=0

bench_die() {
	echo "${0##*/}: error: $*" >&2
	exit 1
}

# bench_fail MESSAGE: a failed measurement: say so, remember it (exit status 1 at the end).
bench_fail() {
	echo "${0##*/}: FAILED: $*" >&2
	echo "FAILED: $*"
	# shellcheck disable=SC2034 # read by the scripts that source this file
	BENCH_FAILED=1
}

# bench_binaries: sets BENCH_BINARIES to the files the benchmarks run (kdom, kdom-bench, the
# probe guests, compute-host), wherever KDOM, KB, GUESTS and FIRST_MARK point now.
bench_binaries() {
	BENCH_BINARIES=("$KDOM" "$KB" "$FIRST_MARK" "$GUESTS/first-instruction.elf" "$GUESTS/idle-after-touch.elf"
		"$GUESTS/compute.elf" "$GUESTS/compute-host" "$GUESTS/virtio-blk-bench.elf")
}

# bench_usage: prints the comment block at the top of the running script (its --help), exits.
bench_usage() {
	sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
}

# bench_need_count VALUE OPTION: dies unless VALUE is a positive whole number.
bench_need_count() {
	[[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] || bench_die "$2 wants a positive number"
}

# bench_start NAME: builds, makes this run's results directory (in $out) and snapshots the
# binaries there.
bench_start() {
	bench_build
	out=$(bench_results_dir "$1")
	bench_snapshot "$out"
}

# bench_build: builds what the benchmarks run (only those targets: the rest of the tree
# may be mid-change). If that fails but every binary is there (from an earlier build),
# says so and goes on with those. Skipped with BENCH_NO_BUILD=1.
bench_build() {
	local f missing=0
	[ "${BENCH_NO_BUILD:-0}" = 1 ] && return 0
	mkdir -p "$BUILD/bench"
	if ! { cmake -S "$REPO" -B "$BUILD" && cmake --build "$BUILD" -j2 --target kdom kdom-bench \
		bench-first-mark probe-first-instruction probe-idle-after-touch probe-compute compute-host probe-virtio-blk-bench; } \
		>"$BUILD/bench/build.log" 2>&1; then
		bench_binaries
		for f in "${BENCH_BINARIES[@]}"; do
			[ -e "$f" ] || missing=1
		done
		grep -m 3 -e 'error' "$BUILD/bench/build.log" | sed 's/^/   build: /' >&2
		[ "$missing" = 0 ] || bench_die "building the benchmark targets failed (log: $BUILD/bench/build.log)"
		echo "${0##*/}: warning: the build failed (log: $BUILD/bench/build.log); measuring the binaries" \
			"already in $BUILD (kdom built $(date -u -r "$KDOM" '+%Y-%m-%d %H:%M UTC'))" >&2
	fi
}

# bench_snapshot DIR: copies the binaries a benchmark runs (kdom, kdom-bench, the guests,
# compute-host) into DIR/bin and points KDOM, KB, GUESTS, FIRST_MARK there, so that a
# rebuild of build/ by someone else during the run cannot swap them mid-measurement.
# The copies are removed when the script exits. With BENCH_SNAPSHOT_BIN set (by
# bench/run-all.sh, for all its benchmarks) that directory is used as it is.
bench_snapshot() {
	local bin=$1/bin f
	if [ -n "${BENCH_SNAPSHOT_BIN:-}" ]; then
		bin=$BENCH_SNAPSHOT_BIN
		KDOM=$bin/kdom KB=$bin/kdom-bench GUESTS=$bin FIRST_MARK=$bin/first-mark.elf
		[ -x "$KDOM" ] && [ -x "$KB" ] || bench_die "BENCH_SNAPSHOT_BIN=$bin lacks kdom or kdom-bench"
		return 0
	fi
	mkdir -p "$bin"
	bench_binaries
	for f in "${BENCH_BINARIES[@]}"; do
		[ -e "$f" ] || bench_die "$f is missing (build it: cmake --build $BUILD)"
		cp -p "$f" "$bin/" || bench_die "cannot copy $f"
	done
	KDOM=$bin/kdom KB=$bin/kdom-bench GUESTS=$bin FIRST_MARK=$bin/first-mark.elf
	# shellcheck disable=SC2064
	trap "rm -rf '$bin'" EXIT
}

# bench_results_dir NAME: a fresh directory for this run's raw logs; prints its path.
bench_results_dir() {
	local d
	d=$RESULTS/$(date -u +%Y%m%dT%H%M%SZ)-$1
	mkdir -p "$d"
	echo "$d"
}

# bench_header TITLE: what, when, where.
bench_header() {
	echo "== $1"
	echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname): $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1), $(nproc) CPUs, Linux $(uname -r), kdom $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)')"
	echo "   /dev/kvm here: $(if [ ! -c /dev/kvm ]; then echo 'none (local rounds fail; see bench/README.md)'; elif [ -d /sys/module/kvm_pvm ]; then echo 'kvm_pvm (nested software KVM: ring 3 native, ring 0 emulated)'; elif [ -d /sys/module/kvm_amd ] || [ -d /sys/module/kvm_intel ]; then echo 'hardware KVM'; else echo 'unknown'; fi); load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_values FILE LABEL FIGURE: the FIGURE values of LABEL's run lines, one a line
# ("missing" ones left out).
bench_values() {
	grep -a "^$2 run [0-9]*/[0-9]*: " "$1" | tr ' ' '\n' | sed -n "s/^$3=//p" | grep -v '^missing$' || true
}

# bench_missing FILE LABEL FIGURE: how many of LABEL's runs lack FIGURE.
bench_missing() {
	grep -a "^$2 run [0-9]*/[0-9]*: " "$1" | grep -c " $3=missing" || true
}

# bench_runs FILE LABEL: how many run lines LABEL has.
bench_runs() {
	grep -a -c "^$2 run [0-9]*/[0-9]*: " "$1" || true
}

# bench_stat FILE LABEL FIGURE FIELD: one statistic (n, median, p90, min, max, mean) of a
# figure, or empty when there are no values.
bench_stat() {
	local values
	values=$(bench_values "$1" "$2" "$3")
	[ -n "$values" ] || return 0
	echo "$values" | "$KB" stats | tr ' ' '\n' | sed -n "s/^$4=//p"
}

# bench_stat_values FIELD < numbers: a statistic of numbers on stdin.
bench_stat_values() {
	"$KB" stats | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# bench_fmt NUMBER [DECIMALS]: a number for a table ("-" when empty; non-numbers as they are).
bench_fmt() {
	[ -n "$1" ] || { echo "-"; return; }
	[[ "$1" =~ ^-?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] || { echo "$1"; return; }
	awk -v v="$1" -v d="${2:-2}" 'BEGIN { printf "%.*f", d, v }'
}

# bench_ratio A B: A/B with 2 decimals ("-" when either is empty or B is 0).
bench_ratio() {
	if [ -z "$1" ] || [ -z "$2" ] || awk -v b="$2" 'BEGIN { exit !(b == 0) }'; then
		echo "-"
		return
	fi
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'
}

# bench_verdict VALUE LIMIT: "met" when VALUE <= LIMIT, "NOT met" otherwise, "n/a" if no value.
bench_verdict() {
	if [ -z "$1" ] || [ "$1" = "-" ]; then
		echo "n/a"
	elif awk -v v="$1" -v l="$2" 'BEGIN { exit !(v <= l) }'; then
		echo "met"
	else
		echo "NOT met"
	fi
}

# bench_summary BENCHMARK FIGURE VALUE TARGET VERDICT: a line for bench/run-all.sh.
bench_summary() {
	echo "SUMMARY|$1|$2|$3|$4|$5"
}

# bench_row FIGURE COLUMNS...: one table row, the figure left-aligned in 56 columns.
bench_row() {
	local name=$1
	shift
	printf '   %-56s' "$name"
	printf ' %14s' "$@"
	printf '\n'
}

# bench_run_l1 LOG PARTS...: runs bench/l1-suite.sh PARTS in one nested test host
# (scripts/test-host.sh --with-qemu) and writes L1's console to LOG. The environment's
# BENCH_START_N, BENCH_MEM_N, BENCH_LINUX_N, BENCH_DISK_N, BENCH_VMMS, BENCH_QEMU_CPU are passed on.
# test-host.sh and its helpers are copied first, so that edits to them while the test
# host runs (other people work on scripts/) cannot break this run. Returns the suite's
# exit status (test-host.sh's: 124 timeout, 125 test host failure).
bench_run_l1() {
	local log=$1 snap rc vars="" v
	shift
	[ -x "$REPO/scripts/test-host.sh" ] || bench_die "scripts/test-host.sh is missing"
	for v in BENCH_START_N BENCH_MEM_N BENCH_LINUX_N BENCH_DISK_N BENCH_VMMS BENCH_QEMU_CPU; do
		[ -z "${!v:-}" ] || vars="$vars $v='${!v}'"
	done
	snap=$(mktemp -d "${TMPDIR:-/tmp}/kdom-bench-th.XXXXXX")
	cp -rp "$REPO/scripts" "$snap/scripts"
	ln -s "$REPO/guest" "$snap/guest"
	echo "   (test host: scripts/test-host.sh --with-qemu, running: bench/l1-suite.sh $*; console log: $log)"
	rc=0
	"$snap/scripts/test-host.sh" --with-qemu --build-dir "$BUILD" --timeout "${BENCH_L1_TIMEOUT:-1500}" \
		--kdom "$KDOM" \
		--add "$KB:build/bench/kdom-bench" \
		--add "$FIRST_MARK:build/bench/first-mark.elf" \
		--add "$GUESTS/first-instruction.elf:build/tests/guests/first-instruction.elf" \
		--add "$GUESTS/idle-after-touch.elf:build/tests/guests/idle-after-touch.elf" \
		--add "$BENCH_DIR/l1-suite.sh:bench/l1-suite.sh" \
		-- "env$vars sh bench/l1-suite.sh $*" >"$log" 2>&1 || rc=$?
	rm -rf "$snap"
	if grep -q '^l1-suite: FAILED' "$log"; then
		grep -a '^l1-suite: ' "$log" | sed 's/^/   /'
	fi
	case $rc in
	0) ;;
	124) echo "   test host hung or timed out (see $log)" ;;
	125) echo "   test host failed (see $log)" ;;
	*) echo "   test-host run exited with status $rc (see $log)" ;;
	esac
	return $rc
}

# bench_l1_info LOG: the lines describing the test host.
bench_l1_info() {
	grep -a '^l1.info: ' "$1" | sed 's/^l1.info: /   test host: /'
}
