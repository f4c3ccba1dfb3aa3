// VmConfig: everything needed to build one domain, as plain values (from the CLI today, from
// the daemon's API later).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/rate_limiter.h"

namespace kdom::vmm {

// kSocket: a Unix socket kdom listens on; one client at a time is the console (vmm::Console).
enum class ConsoleKind { kStdio, kPty, kFile, kNone, kSocket };

struct ConsoleConfig {
  ConsoleKind kind = ConsoleKind::kStdio;
  std::string path;  // for kFile and kSocket
};

// A virtio-console device (the guest's hvc0) and its host side.
struct VirtioConsoleConfig {
  ConsoleConfig backend;
  std::string id;
};

// A virtio-vsock device whose host side is a Unix socket (Firecracker's "hybrid vsock"):
// host processes connect to `socket_path` and say "CONNECT <port>"; guest connections to
// the host (CID 2) port P reach the Unix socket "<socket_path>_P".
struct VsockConfig {
  uint64_t guest_cid = 0;
  std::string socket_path;
  std::string id;
};

// How long a disk queue's worker polls for more work, at most, unless `poll=` says otherwise:
// QEMU's default for its I/O threads.
inline constexpr uint32_t kDefaultDiskPollMicros = 32;

// A virtio-blk disk: a raw image file.
struct DiskConfig {
  std::string path;
  bool read_only = false;
  std::string serial;  // what the guest reads as the disk's id (at most 20 bytes)
  std::string id;      // the user's name for the device (unique in the domain)
  uint16_t queues = 1;
  devices::RateLimit rate_limit;  // per queue
  uint32_t poll_us = kDefaultDiskPollMicros;  // longest adaptive poll window per queue; 0: off
  bool shared = false;  // others may write to the image too (its lock shares write)
};

// A virtio-balloon device.
struct BalloonConfig {
  uint64_t target_mib = 0;      // initial balloon size: memory taken from the guest
  uint32_t stats_seconds = 0;   // how often to ask the guest for fresh statistics (0: on request)
  bool deflate_on_oom = false;  // the guest may take pages back when it runs out of memory
  bool free_page_reporting = false;
  std::string id;
};

// A virtio-net interface on a TAP device: by name, or an already open TAP fd.
struct NetConfig {
  std::string tap;  // interface name, or empty when fd is given
  int fd = -1;      // an open TAP fd (inherited from the caller), or -1
  std::optional<std::array<uint8_t, 6>> mac;  // none: kdom's default for the device's index
  std::string id;
  devices::RateLimit rate_limit;  // each direction: bytes (bw=) and frames (pps=) per second
};

struct VmConfig {
  std::string kernel_path;
  std::optional<std::string> initrd_path;
  std::string cmdline;
  uint64_t memory_mib = 256;
  uint32_t vcpus = 1;
  ConsoleConfig console;
  std::vector<DiskConfig> disks;
  bool entropy = false;  // a virtio-rng device
  std::optional<VirtioConsoleConfig> hvc;
  std::optional<VsockConfig> vsock;
  std::optional<BalloonConfig> balloon;
  std::string control_path;  // a Unix socket for runtime control requests (empty: none)
  std::vector<NetConfig> nets;
};

// Parses "PATH[,ro][,serial=ID][,id=ID][,queues=N][,bw=BYTES][,iops=N]"; throws Error naming the bad part.
DiskConfig parse_disk(const std::string& text);

// Parses "[target=MIB][,stats=SECONDS][,deflate-on-oom][,free-page-reporting][,id=ID]";
// throws Error naming the bad part.
BalloonConfig parse_balloon(const std::string& text);
// Parses "tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,id=ID][,bw=BYTES][,pps=N]"; throws Error naming the bad part.
NetConfig parse_net(const std::string& text);
// Parses "52:54:00:12:34:56" (unicast: the low bit of the first byte clear); throws Error.
std::array<uint8_t, 6> parse_mac(const std::string& text);

// Parses "stdio", "pty", "none", "file:PATH" or "socket:PATH"; throws Error naming the bad value.
ConsoleConfig parse_console(const std::string& text);

// Parses "stdio", "pty", "none" or "file:PATH", each optionally followed by ",id=NAME".
VirtioConsoleConfig parse_hvc(const std::string& text);

// Parses "cid=N,socket=PATH[,id=ID]"; throws Error naming the bad part. The guest CID must be
// 3..2^32-2 (0-2 and 2^32-1 are reserved).
VsockConfig parse_vsock(const std::string& text);

// Checks values that need no host resources (sizes, counts); throws Error naming the first
// bad one. Host limits (memory, KVM's vCPU limit) are checked when the domain is built.
void validate(const VmConfig& config);
// Throws Error if two devices, of any kind, have the same user-given id.
void check_device_ids(const VmConfig& config);

}  // namespace kdom::vmm
