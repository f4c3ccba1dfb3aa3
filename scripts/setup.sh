#!/usr/bin/env bash
# Installs everything kdom needs on Debian 12 (Debian packages via apt only), builds kdom,
# its tests and probe guests (build/), an ASan/UBSan build of kdom and its unit tests (build-asan/),
# the libFuzzer targets (build-fuzz/fuzz/), and the default Linux guest from Debian's kernel
# package and the Debian guest's root file system from Debian's packages (build/guest/). Run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev liburing-dev
  libboost-dev  # Boost.Beast (header-only): the HTTP server in kdomd and the client in the kdom CLI
  libsqlite3-dev  # kdomd's registry of domains
  zlib1g-dev  # the snapshot stream's CRC-32s
  libsystemd-dev  # kdomd tells systemd it is ready (sd_notify)
  qemu-system-x86 qemu-utils busybox-static cpio lz4 kmod binutils procps e2fsprogs
  xz-utils zstd  # build-guest.sh: the generic kernel flavours compress their vmlinux with XZ (or zstd)
  clang-14 libclang-rt-14-dev
  fio  # bench/virtio-blk.sh: a cross-check of the host read figures
  curl  # bench/daemon.sh: the API latency, measured from outside kdom
  python3  # QMP and control-socket requests in tests and benchmarks (save-restore-probe.sh, bench/save-restore.sh)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients  # bench/daemon.sh's peer: libvirtd + virsh with QEMU
  debootstrap  # build-debian-rootfs.sh: the Debian guest's root file system, from Debian's packages
  tmux iputils-ping  # tests/daemon/debian.sh: an operator's terminal on kdom console; ping over the vif
  acpica-tools  # iasl: a unit test reads kdom's DSDT back with ACPICA's disassembler
  qemu-system-common  # its virtiofsd: tests that need KVM run in the test host where /dev/kvm is missing
  prometheus  # promtool: a test checks kdomd's /metrics against Prometheus' own linter
)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKDOM_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
# The libFuzzer targets (tests/fuzz): clang, ASan/UBSan, only the sources they fuzz.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DKDOM_FUZZ=ON -DKDOM_BUILD_GUESTS=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzzers
scripts/build-guest.sh build/guest
scripts/build-debian-rootfs.sh build/guest
echo "setup done: build/kdom, build/guest/"
