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
  // The disk's name in the domain (xvda, vdb...): its id for block-detach, the store and the
  // figures. The guest names its disks itself (vda, vdb... in order of discovery). Empty: the
  // daemon picks the first free xvdX (assign_device_names).
  std::string vdev;
  bool read_only = false;  // access=ro
  bool shared = false;     // kdom's `shared` flag: other domains may write to the image too
};

// One network interface (xl-network-configuration(5)).
struct VifSpec {
  uint32_t devid = 0;              // the NIC's number in the domain (network-detach, vifN, its TAP)
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
// One item of "disks" or "vifs" (also the API's block-attach and network-attach bodies);
// `where` begins the errors. A vif without "devid" gets `default_devid`.
DiskSpec disk_spec_from_json(const nlohmann::json& json, const std::string& where);
VifSpec vif_spec_from_json(const nlohmann::json& json, const std::string& where, uint32_t default_devid);

// Checks the values (name syntax, sizes, counts, paths non-empty, maxmem >= memory, disk
// names and NIC numbers unique...); throws Error naming the first bad one.
void validate(const DomainConfig& config);

// Gives each disk without a vdev the first free xvdX (xvda, xvdb...) and each NIC without a MAC
// a random one (02:6b:64:xx:xx:xx), as the daemon does when it creates a domain or attaches a
// device.
void assign_device_names(DomainConfig& config);
// The first NIC number no NIC of `config` has.
uint32_t next_devid(const DomainConfig& config);
// The largest NIC number: the NIC's TAP, kdom<domid>.<devid>, must fit an interface name.
inline constexpr uint32_t kMaxDevid = 99;

// Checks a disk name (vdev): xvdX, hdX, sdX or vdX; throws Error naming it.
void validate_vdev(const std::string& vdev);

// Checks one MAC address: six two-digit hex bytes separated by ':', unicast (the low bit of the
// first byte clear). Throws Error naming it.
void validate_mac(const std::string& mac);

}  // namespace kdom::config
