#!/bin/bash
# Builds the Debian guest: Debian 12's own packages, with systemd as init, installed by
# debootstrap into an ext4 image that boots from its virtio disk (root=/dev/vda) with the
# default guest's kernel and initramfs (scripts/build-guest.sh, which must run first: the
# image carries that kernel's modules, and the initramfs hands over to the image's init).
#
#   scripts/build-debian-rootfs.sh OUTDIR     (OUTDIR: where build-guest.sh wrote the kernel)
#
# Produces OUTDIR/debian-rootfs.ext4 (2 GiB, sparse). It is a test image: root has no password
# (log in as root on the console), systemd-networkd configures eth0 from the kernel's ip=
# parameter, systemd-logind powers off on the ACPI power button (kdom shutdown).
# debootstrap keeps the packages it fetches in apt's own cache (/var/cache/apt/archives), so a
# rebuild, in a fresh clone too, downloads nothing; the image is only rebuilt when this script
# or the kernel changed. Set KDOM_DEBIAN_MIRROR to use another Debian mirror. Run as root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib-initramfs.sh"

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root (run scripts/setup.sh as root)"
need_tools debootstrap mkfs.ext4 chroot sha256sum
out=$(cd "$1" && pwd)
[ -f "$out/kernel-release" ] || die "$out/kernel-release is missing: run scripts/build-guest.sh $1 first"
kver=$(cat "$out/kernel-release")
modules=$(ls -d "$out"/cache/linux-image-*/lib/modules/"$kver" 2>/dev/null | head -n1)
[ -n "$modules" ] || die "the modules of kernel $kver are not under $out/cache (run scripts/build-guest.sh $1)"

suite=bookworm
mirror=${KDOM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# logind needs D-Bus; networkd and the network generator come with systemd.
packages=systemd,systemd-sysv,udev,dbus,iproute2,iputils-ping,kmod,procps
image=$out/debian-rootfs.ext4
key=$(cat "$0" "$out/kernel-release" | sha256sum | cut -d' ' -f1)
if [ -f "$image" ] && [ "$(cat "$image.key" 2>/dev/null)" = "$key" ]; then
	exit 0
fi

work=$(mktemp -d "$out/.rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p /var/cache/apt/archives
debootstrap --variant=minbase --include="$packages" --cache-dir=/var/cache/apt/archives \
	"$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	die "debootstrap $suite from $mirror failed (network? KDOM_DEBIAN_MIRROR?): $(tail -n3 "$work/debootstrap.log")"

echo kdom-debian >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tkdom-debian\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' >"$root/etc/fstab"
chroot "$root" passwd -q -d root
# eth0 from ip=ADDR::GATEWAY:NETMASK:HOST:eth0:off on the kernel command line (with
# net.ifnames=0), as a cloud image gets its address without a DHCP server on the bridge.
chroot "$root" systemctl -q enable systemd-networkd systemd-network-generator
cp -a "$modules" "$root/lib/modules/"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

mkfs.ext4 -q -F -L kdom-debian -d "$root" "$work/debian-rootfs.ext4" 2G >"$work/mkfs.log" 2>&1 ||
	die "mkfs.ext4 -d could not make the image: $(tail -n3 "$work/mkfs.log")"
mv "$work/debian-rootfs.ext4" "$image"
echo "$key" >"$image.key"
