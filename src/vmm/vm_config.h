// VmConfig: everything needed to build one domain, as plain values (from the CLI today, from
// the daemon's API later).
#pragma once

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

// A virtio-balloon device.
struct BalloonConfig {
  uint64_t target_mib = 0;      // initial balloon size: memory taken from the guest
  uint32_t stats_seconds = 0;   // how often to ask the guest for fresh statistics (0: on request)
  bool deflate_on_oom = false;  // the guest may take pages back when it runs out of memory
  bool free_page_reporting = false;
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
  std::optional<BalloonConfig> balloon;
  std::string control_path;  // a Unix socket for runtime control requests (empty: none)
};

// Parses "PATH[,ro][,serial=ID]"; throws Error naming the bad part.
DiskConfig parse_disk(const std::string& text);

// Parses "[target=MIB][,stats=SECONDS][,deflate-on-oom][,free-page-reporting][,id=ID]";
// throws Error naming the bad part.
BalloonConfig parse_balloon(const std::string& text);

// Parses "stdio", "pty", "none" or "file:PATH"; throws Error naming the bad value.
ConsoleConfig parse_console(const std::string& text);

// Checks values that need no host resources (sizes, counts); throws Error naming the first
// bad one. Host limits (memory, KVM's vCPU limit) are checked when the domain is built.
void validate(const VmConfig& config);

}  // namespace kdom::vmm
