#!/bin/bash
# Builds kdom's default Linux guest from Debian's own packages.
#
#   scripts/build-guest.sh OUTDIR
#
# Produces in OUTDIR:
#   vmlinuz            Debian's cloud kernel (bzImage), as shipped
#   vmlinux            the ELF kernel cut out of that bzImage (has the Xen PVH entry note); LZ4,
#                      XZ, gzip and zstd payloads are unpacked (KDOM_KERNEL_DEB may be another flavour)
#   initramfs.cpio.gz  busybox-static + virtio/vsock/pvpanic/ACPI button/evdev modules + guest/init, with the
#                      guest helpers kdom-outb (guest/kdom-outb.c), kdom-vsock (guest/kdom-vsock.c)
#                      and kdom-store (guest/kdom-store.c)
#   l1-modules.cpio    for scripts/test-host.sh: KVM, networking, vsock, virtio-blk, virtiofs and overlay modules
#                      of the same kernel, with lib/modules/l1-load-order listing them in order
#   kernel-release     the kernel's release string (e.g. 6.1.0-56-cloud-amd64)
# The kernel package is downloaded once (apt-get download) and cached under
# OUTDIR/cache/, so later runs work offline. Set KDOM_KERNEL_DEB=/path/to/linux-image-*.deb
# to use a given package instead. Quiet on success; re-running is cheap and only
# replaces outputs whose content changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
. "$here/lib-initramfs.sh"

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
need_tools apt-cache apt-get dpkg-deb cpio gzip depmod modprobe readelf cc
[ -x /bin/busybox ] && /bin/busybox --list | grep -x cttyhack >/dev/null ||
	die "/bin/busybox (static) not found; install it with: apt-get install busybox-static"
file_is_static() { ! readelf -lW "$1" 2>/dev/null | grep INTERP >/dev/null; }
file_is_static /bin/busybox || die "/bin/busybox is dynamically linked; install busybox-static"

out=$(mkdir -p "$1" && cd "$1" && pwd)
cache=$out/cache
mkdir -p "$cache"
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- 1. The kernel package: linux-image-cloud-amd64 -> linux-image-6.1.0-N-cloud-amd64 ---
find_deb() {
	if [ -n "${KDOM_KERNEL_DEB:-}" ]; then
		[ -f "$KDOM_KERNEL_DEB" ] || die "KDOM_KERNEL_DEB=$KDOM_KERNEL_DEB does not exist"
		echo "$KDOM_KERNEL_DEB"
		return
	fi
	local pkg ver deb
	# The metapackage's first hard dependency is the versioned image package.
	pkg=$(apt-cache depends --important linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | sed -n 1p) || true
	if [ -n "$pkg" ]; then
		ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | sed -n 1p)
		deb=$cache/${pkg}_${ver//:/%3a}_amd64.deb
		# apt's own cache may already hold it (apt-get install --download-only, an earlier run).
		if [ ! -f "$deb" ] && [ -f "/var/cache/apt/archives/$(basename "$deb")" ]; then
			cp "/var/cache/apt/archives/$(basename "$deb")" "$deb.tmp" && mv "$deb.tmp" "$deb"
		fi
		if [ ! -f "$deb" ]; then
			(cd "$work" && apt-get download -q -q -o APT::Sandbox::User=root "$pkg" >"$work/apt.log" 2>&1) ||
				die "apt-get download $pkg failed (no network or stale lists? try apt-get update): $(tail -n3 "$work/apt.log")"
			mv "$work/${pkg}_"*.deb "$deb"
		fi
		echo "$deb"
		return
	fi
	# apt knows no such package (no lists): fall back to the newest cached one.
	deb=$(ls -1 "$cache"/linux-image-*-cloud-amd64_*_amd64.deb 2>/dev/null | sort -V | tail -n1) || true
	[ -n "$deb" ] || die "apt-cache cannot resolve linux-image-cloud-amd64 and nothing is cached in $cache (run apt-get update)"
	echo "$deb"
}
deb=$(find_deb)

# --- 2. Unpack it once per package version (kept under cache/, modules indexed by depmod) ---
kroot=$cache/$(basename "$deb" .deb)
if [ ! -f "$kroot/.unpacked" ]; then
	rm -rf "$kroot" "$kroot.tmp"
	dpkg-deb -x "$deb" "$kroot.tmp" || die "dpkg-deb -x $deb failed"
	kver=$(ls -1 "$kroot.tmp/lib/modules" | head -n1)
	[ -n "$kver" ] && [ -f "$kroot.tmp/boot/vmlinuz-$kver" ] || die "$deb holds no kernel image"
	depmod -b "$kroot.tmp" "$kver" || die "depmod failed on $deb"
	touch "$kroot.tmp/.unpacked"
	mv "$kroot.tmp" "$kroot"
	# Drop unpacked trees of other versions.
	for d in "$cache"/linux-image-*; do
		[ -d "$d" ] && [ "$d" != "$kroot" ] && rm -rf "$d"
	done
fi
kver=$(ls -1 "$kroot/lib/modules" | head -n1)
echo "$kver" >"$work/kernel-release"
install_if_changed "$work/kernel-release" "$out/kernel-release"

# --- 3. vmlinuz, and vmlinux cut out of it ---
bz=$kroot/boot/vmlinuz-$kver
cp "$bz" "$work/vmlinuz"
install_if_changed "$work/vmlinuz" "$out/vmlinuz"

# extract_vmlinux BZIMAGE OUT: writes the ELF kernel inside BZIMAGE to OUT and checks it has the
# Xen PVH entry note. The payload may be LZ4 (Debian's cloud flavour), XZ (the generic amd64
# flavour), gzip or zstd; each needs its own tool (lz4, xz-utils, gzip, zstd).
extract_vmlinux() {
	local bz=$1 vmlinux=$2
	local payload=$vmlinux.payload log=$vmlinux.log
	# u8/u32 little-endian fields of the bzImage header (Documentation/x86/boot.rst).
	hdr() { od -An -t"u$2" -j "$1" -N "$2" "$bz" | tr -d ' '; }
	[ "$(od -An -c -j $((0x202)) -N4 "$bz" | tr -d ' ')" = HdrS ] || die "$bz is not a bzImage"
	local setup_sects payload_offset payload_length start magic tool pkg want_size
	setup_sects=$(hdr $((0x1f1)) 1)
	[ "$setup_sects" -ne 0 ] || setup_sects=4
	payload_offset=$(hdr $((0x248)) 4)
	payload_length=$(hdr $((0x24c)) 4)
	start=$(((setup_sects + 1) * 512 + payload_offset))
	magic=$(od -An -tx1 -j "$start" -N6 "$bz" | tr -d ' ')
	case "$magic" in
	02214c18*) tool=lz4 pkg=lz4 ;;
	fd377a585a00) tool=xz pkg=xz-utils ;;
	1f8b*) tool=gzip pkg=gzip ;;
	28b52ffd*) tool=zstd pkg=zstd ;;
	*) die "bzImage payload at offset $start is compressed in a way kdom cannot unpack (magic $magic; LZ4, XZ, gzip and zstd are known)" ;;
	esac
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (the kernel is $tool-compressed); install it with: apt-get install $pkg"
	# Every compressor's payload ends with the 4-byte uncompressed size, which is not compressed data.
	dd if="$bz" of="$payload" iflag=skip_bytes,count_bytes skip="$start" \
		count=$((payload_length - 4)) bs=1M status=none
	want_size=$(od -An -tu4 -j $((start + payload_length - 4)) -N4 "$bz" | tr -d ' ')
	"$tool" -dc "$payload" >"$vmlinux" 2>"$log" ||
		die "$tool could not decompress the bzImage payload: $(cat "$log")"
	rm -f "$payload" "$log"
	[ "$(stat -c %s "$vmlinux")" -eq "$want_size" ] ||
		die "vmlinux is $(stat -c %s "$vmlinux") bytes, the bzImage says $want_size"
	[ "$(head -c4 "$vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "extracted vmlinux is not an ELF file"
	# XEN_ELFNOTE_PHYS32_ENTRY is note type 18 (0x12) with owner "Xen".
	readelf -W -n "$vmlinux" | grep -E >/dev/null '^[[:space:]]*Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+(Unknown note type: \(0x00000012\)|.*PHYS32)' ||
		die "extracted vmlinux has no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY)"
}
extract_vmlinux "$bz" "$work/vmlinux"
install_if_changed "$work/vmlinux" "$out/vmlinux"

# --- 4. The guest initramfs ---
stage=$work/guest
mkdir -p "$stage/bin" "$stage/lib/modules/$kver" "$stage/proc" "$stage/sys" "$stage/tmp" "$stage/root"
cp /bin/busybox "$stage/bin/busybox"
cc -Os -ffreestanding -fno-tree-loop-distribute-patterns -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-pie -no-pie -static -nostdlib \
	-Wl,--build-id=none -s -o "$stage/bin/kdom-outb" "$src/guest/kdom-outb.c" ||
	die "could not compile guest/kdom-outb.c"
cc -O2 -static -Wall -Wextra -Werror -s -o "$stage/bin/kdom-vsock" "$src/guest/kdom-vsock.c" ||
	die "could not compile guest/kdom-vsock.c"
cc -O2 -static -Wall -Wextra -Werror -s -o "$stage/bin/kdom-store" "$src/guest/kdom-store.c" ||
	die "could not compile guest/kdom-store.c"
install -m 0755 "$src/guest/init" "$stage/init"
# pvpanic first (ACPI QEMU0001 on an I/O port is pvpanic-mmio in 6.1), then virtio, then the
# ACPI power button and the input events it sends (kdom.action=power-button).
copy_modules "$kroot" "$kver" "$stage" "$stage/lib/modules/load-order" \
	pvpanic-mmio pvpanic-pci virtio_pci virtio_mmio virtio_blk virtio_net virtio_console \
	virtio_balloon virtio-rng vmw_vsock_virtio_transport button evdev
cp "$kroot/lib/modules/$kver/modules.order" "$kroot/lib/modules/$kver/modules.builtin" \
	"$stage/lib/modules/$kver/"
depmod -b "$stage" "$kver" 2>/dev/null || die "depmod failed on the guest's modules"
{
	cpio_console_node
	cpio_dir "$stage"
} | gzip -n -9 >"$work/initramfs.cpio.gz"
install_if_changed "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"

# --- 5. Kernel modules for the nested test host (L1), see scripts/test-host.sh ---
l1=$work/l1
mkdir -p "$l1/lib/modules/$kver"
copy_modules "$kroot" "$kver" "$l1" "$l1/lib/modules/l1-load-order" \
	kvm-amd tun tap veth bridge vsock vhost_net vhost_vsock vsock_loopback virtio_pci virtio_blk virtiofs overlay
cp "$kroot/lib/modules/$kver/modules.order" "$kroot/lib/modules/$kver/modules.builtin" \
	"$l1/lib/modules/$kver/"
depmod -b "$l1" "$kver" 2>/dev/null || die "depmod failed on the test host's modules"
cpio_dir "$l1" >"$work/l1-modules.cpio"
install_if_changed "$work/l1-modules.cpio" "$out/l1-modules.cpio"
