// VmConfig: everything needed to build one domain, as plain values (from the CLI today, from
// the daemon's API later).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kdom::vmm {

enum class ConsoleKind { kStdio, kPty, kFile, kNone };

struct ConsoleConfig {
  ConsoleKind kind = ConsoleKind::kStdio;
  std::string path;  // for kFile
};

// A virtio-blk disk: a raw image file.
struct DiskConfig {
  std::string path;
  bool read_only = false;
  std::string serial;  // what the guest reads as the disk's id (at most 20 bytes)
};

// A virtio-net interface on a TAP device: by name, or an already open TAP fd.
struct NetConfig {
  std::string tap;  // interface name, or empty when fd is given
  int fd = -1;      // an open TAP fd (inherited from the caller), or -1
  std::optional<std::array<uint8_t, 6>> mac;  // none: kdom's default for the device's index
  std::string id;
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
  std::vector<NetConfig> nets;
};

// Parses "PATH[,ro][,serial=ID]"; throws Error naming the bad part.
DiskConfig parse_disk(const std::string& text);

// Parses "tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,id=ID]"; throws Error naming the bad part.
NetConfig parse_net(const std::string& text);
// Parses "52:54:00:12:34:56" (unicast: the low bit of the first byte clear); throws Error.
std::array<uint8_t, 6> parse_mac(const std::string& text);

// Parses "stdio", "pty", "none" or "file:PATH"; throws Error naming the bad value.
ConsoleConfig parse_console(const std::string& text);

// Checks values that need no host resources (sizes, counts); throws Error naming the first
// bad one. Host limits (memory, KVM's vCPU limit) are checked when the domain is built.
void validate(const VmConfig& config);

}  // namespace kdom::vmm
