// DomainConfig: one domain as an operator describes it (what an xl.cfg file says), before the
// daemon turns it into a VMM's VmConfig. Plain values; its JSON form is the body of the API's
// create request and what the registry keeps.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kdom::config {

// xl.cfg(5)'s on_poweroff / on_reboot / on_crash actions.
enum class LifecycleAction { kDestroy, kRestart, kPreserve, kRenameRestart };

// "destroy", "restart", "preserve", "rename-restart"; throws Error for anything else.
LifecycleAction parse_lifecycle_action(const std::string& text);
const char* lifecycle_action_name(LifecycleAction action);

// One disk (xl-disk-configuration(5)): a raw image file.
struct DiskSpec {
  std::string target;      // the image's path
  std::string vdev;        // the guest's name for it (xvda, vdb...); informational on kdom
  bool read_only = false;  // access=ro
  bool shared = false;     // kdom's `shared` flag: other domains may write to the image too
};

// One network interface (xl-network-configuration(5)).
struct VifSpec {
  std::optional<std::string> mac;  // "52:54:00:..."; none: kdom chooses
  std::string bridge;              // put the TAP on this Linux bridge (empty: none)
  std::string tap;                 // kdom extension: use this existing TAP (vifname=)
  std::string ip;                  // accepted, informational
  uint64_t rate_bytes_per_second = 0;  // rate=, 0: unlimited
};

struct DomainConfig {
  std::string name;
  std::string uuid;  // empty: the daemon makes one
  uint64_t memory_mib = 128;
  uint64_t maxmem_mib = 0;  // 0: same as memory
  uint32_t vcpus = 1;
  uint32_t maxvcpus = 0;    // 0: same as vcpus
  std::string kernel;
  std::string ramdisk;
  std::string cmdline;  // the whole command line as the guest gets it (cmdline, or root= + extra)
  LifecycleAction on_poweroff = LifecycleAction::kDestroy;
  LifecycleAction on_reboot = LifecycleAction::kRestart;
  LifecycleAction on_crash = LifecycleAction::kDestroy;
  std::vector<DiskSpec> disks;
  std::vector<VifSpec> vifs;
  bool rng = false;                   // kdom extension: a virtio-rng device
  std::optional<uint64_t> balloon_stats_seconds;  // kdom extension: balloon device present when set
  std::optional<uint64_t> vsock_cid;  // vsock=CID: a virtio-vsock device
};

// JSON both ways. from_json refuses unknown keys and wrong types with one line naming the key;
// it throws kdom::Error.
nlohmann::json to_json(const DomainConfig& config);
DomainConfig domain_config_from_json(const nlohmann::json& json);

// Checks the values (name syntax, sizes, counts, paths non-empty, maxmem >= memory...);
// throws Error naming the first bad one.
void validate(const DomainConfig& config);

// Checks one MAC address: six two-digit hex bytes separated by ':', unicast (the low bit of the
// first byte clear). Throws Error naming it.
void validate_mac(const std::string& mac);

}  // namespace kdom::config
