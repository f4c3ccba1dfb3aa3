#!/bin/bash
# Runs the virtio-blk probe under kdom with a fresh 1 MiB raw disk image and
# checks the image on the host afterwards.
#
# Usage: run-virtio-blk.sh functional|hostile KDOM PROBE_ELF
#   functional: the host puts a pattern in sector 7 (the guest must read it:
#     check7=1); the guest writes "kdom-vblk-sec05\n" x 32 to sector 5, which
#     must be in the file afterwards, with sectors 4 and 6 still zero; the disk
#     has serial=kdom-probe, which the guest's GET_ID must return.
#   hostile: hostile=1; the guest's final write to sector 5 must be in the file.
#   bench: PROBE_ELF is virtio-blk-bench.elf: on a 1 MiB image numbered like
#     `kdom-bench disk-pattern` (each 4 KiB block starts with its number) all five
#     phases must pass with every block checked; on an all-zero image the probe
#     must fail with "wrong data" (its check can fail).
set -u
mode=$1 kdom=$2 elf=$3
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/run-virtio-blk.XXXXXX)
trap 'rm -rf "$dir"' EXIT
img=$dir/disk.img

pattern() { for _ in $(seq 32); do printf '%s\n' "$1"; done; }

truncate -s 1M "$img" || exit 1
pattern host-sector-07. | dd of="$img" bs=512 seek=7 conv=notrunc status=none || exit 1

# pattern_image FILE: 1 MiB, block b's first 8 bytes are b (little endian).
pattern_image() {
    truncate -s 1M "$1" || return 1
    for b in $(seq 0 255); do
        # shellcheck disable=SC2059 # the format is the escaped bytes themselves
        printf "$(printf '\\x%02x' $((b & 255)) $((b >> 8)))" |
            dd of="$1" bs=1 seek=$((b * 4096)) conv=notrunc status=none || return 1
    done
}

case $mode in
bench)
    pattern_image "$img" || exit 1
    "$here/run-probe.sh" --timeout 60 --name virtio-blk-bench --status 1 --expect "every block checked" -- \
        "$kdom" run --kernel "$elf" --console stdio --memory 64 --disk "$img" --cmdline "rand=500 qd=8" |
        tee "$dir/out.txt" || exit 1
    [ "$(grep -c '^vblk-bench [a-z0-9]* qd=[18] ops=[0-9]* bytes=[0-9]* cycles=[0-9]*' "$dir/out.txt")" = 5 ] ||
        { echo "run-virtio-blk: FAIL: want five phase lines"; exit 1; }
    truncate -s 0 "$img" && truncate -s 1M "$img" || exit 1
    "$kdom" run --kernel "$elf" --console stdio --memory 64 --disk "$img" --cmdline "rand=500 qd=8" \
        >"$dir/zero.txt" 2>&1
    grep -q 'PROBE virtio-blk-bench: FAIL rand4k qd=1: wrong data' "$dir/zero.txt" ||
        { cat "$dir/zero.txt"; echo "run-virtio-blk: FAIL: the probe accepted an all-zero disk"; exit 1; }
    echo "run-virtio-blk: PASS (bench probe: all phases on a numbered disk, FAIL on a zero disk)"
    exit 0
    ;;
functional)
    "$here/run-probe.sh" --timeout 60 --name virtio-blk --status 1 --expect "id=kdom-probe" -- \
        "$kdom" run --kernel "$elf" --console stdio --memory 64 --disk "$img,serial=kdom-probe" \
        --cmdline check7=1 || exit 1
    ;;
hostile)
    "$here/run-probe.sh" --timeout 90 --name virtio-blk --status 1 --expect "final write/read ok" -- \
        "$kdom" run --kernel "$elf" --console stdio --memory 64 --disk "$img" --cmdline hostile=1 || exit 1
    ;;
*) echo "run-virtio-blk: unknown mode $mode" >&2; exit 2 ;;
esac

fail() { echo "run-virtio-blk: FAIL: $*"; exit 1; }
dd if="$img" bs=512 skip=5 count=1 status=none | cmp -s - <(pattern kdom-vblk-sec05) ||
    { dd if="$img" bs=512 skip=5 count=1 status=none | od -c | head -4; fail "sector 5 of the image lacks the guest's pattern"; }
for s in 4 6; do
    dd if="$img" bs=512 skip=$s count=1 status=none | cmp -s - <(head -c 512 /dev/zero) ||
        fail "sector $s of the image is not zero"
done
dd if="$img" bs=512 skip=7 count=1 status=none | cmp -s - <(pattern host-sector-07.) ||
    fail "sector 7 (the host's pattern) changed"
[ "$(stat -c %s "$img")" = 1048576 ] || fail "the image changed size"
echo "run-virtio-blk: PASS (image: sector 5 holds the guest's pattern, sectors 4, 6, 7 as expected)"
