# shellcheck shell=bash
# Shell helpers shared by scripts/build-guest.sh and scripts/test-host.sh: writing
# initramfs (newc cpio) archives, copying kernel modules with their dependencies.
# Source it; it defines functions only.

# die MESSAGE...: print "<script>: error: MESSAGE" to stderr and exit 1.
die() {
	echo "${0##*/}: error: $*" >&2
	exit 1
}

# need_tools TOOL...: fail with the Debian package to install when a tool is missing.
need_tools() {
	local t pkg
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 && continue
		case "$t" in
		cpio) pkg=cpio ;;
		lz4) pkg=lz4 ;;
		depmod | modprobe) pkg=kmod ;;
		readelf) pkg=binutils ;;
		cc) pkg=gcc ;;
		gzip) pkg=gzip ;;
		apt-get | apt-cache) pkg=apt ;;
		dpkg-deb) pkg=dpkg ;;
		qemu-system-x86_64) pkg=qemu-system-x86 ;;
		timeout) pkg=coreutils ;;
		*) pkg="(the package providing $t)" ;;
		esac
		die "'$t' not found; install it with: apt-get install $pkg"
	done
}

# _newc_header NAME MODE(number) FILESIZE RDEVMAJOR RDEVMINOR: one newc header + name + padding.
_newc_header() {
	local name=$1 mode=$2 size=$3 rmaj=$4 rmin=$5
	local namesize=$((${#name} + 1))
	# magic ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		0 "$mode" 0 0 1 0 "$size" 0 0 "$rmaj" "$rmin" "$namesize" 0
	printf '%s\0' "$name"
	local pad=$(((4 - (110 + namesize) % 4) % 4))
	[ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}

# cpio_console_node: a tiny archive with /dev and the /dev/console character device (5,1),
# which the kernel opens for init's stdin/stdout before any devtmpfs is mounted. Written
# by hand so that building needs no mknod (works unprivileged and in containers).
cpio_console_node() {
	_newc_header dev $((0040755)) 0 0 0
	_newc_header dev/console $((0020600)) 0 5 1
	_newc_header 'TRAILER!!!' 0 0 0 0
}

# cpio_dir DIR: the whole tree under DIR as a newc archive on stdout, owned by root.
# Resets every mtime under DIR to 0 first, so the same content gives the same bytes.
cpio_dir() {
	find "$1" -mindepth 1 -exec touch -h -d @0 {} +
	(cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet)
}

# install_if_changed SRC DEST: move SRC to DEST unless identical (keeps DEST's mtime stable).
install_if_changed() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		rm -f "$1"
	else
		mv -f "$1" "$2"
	fi
}

# copy_modules KROOT KVER STAGE LISTFILE MODULE...: copy MODULE... and everything they
# depend on (per KROOT's modules.dep, made by depmod -b) from the extracted kernel
# package KROOT into STAGE/lib/modules/KVER, decompressing .ko.xz/.ko.zst/.ko.gz, and
# append their guest-side paths to LISTFILE in load order (each module once).
copy_modules() {
	local kroot=$1 kver=$2 stage=$3 list=$4 line path rel dest
	shift 4
	touch "$list"
	for m in "$@"; do
		modprobe -d "$kroot" -S "$kver" --show-depends "$m" >"$stage/.deps" 2>/dev/null ||
			die "kernel module '$m' not found in $kroot (kernel $kver)"
		while read -r line; do
			case "$line" in
			builtin\ *) continue ;;
			insmod\ *) path=${line#insmod } && path=${path%% *} ;;
			*) continue ;;
			esac
			rel=${path#*/lib/modules/"$kver"/}
			dest=$stage/lib/modules/$kver/${rel%.xz}
			dest=${dest%.zst}
			dest=${dest%.gz}
			grep -qxF "/lib/modules/$kver/${dest#"$stage"/lib/modules/"$kver"/}" "$list" && continue
			mkdir -p "${dest%/*}"
			case "$path" in
			*.ko) cp "$path" "$dest" ;;
			*.ko.xz) xz -dc "$path" >"$dest" ;;
			*.ko.zst) zstd -qdc "$path" >"$dest" ;;
			*.ko.gz) gzip -dc "$path" >"$dest" ;;
			*) die "unexpected module file $path" ;;
			esac
			echo "/lib/modules/$kver/${dest#"$stage"/lib/modules/"$kver"/}" >>"$list"
		done <"$stage/.deps"
	done
	rm -f "$stage/.deps"
}
