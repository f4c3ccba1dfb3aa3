// What a restore may change of a saved domain's config (restore_changes.h): the comparison of
// the saved config with the changed one, and the overrides applied to the saved config.
#include "config/restore_changes.h"

#include <filesystem>

#include "base/error.h"
#include "config/xl_cfg.h"

namespace kdom::config {

namespace {

[[noreturn]] void refuse(const std::string& what, const std::string& saved) {
  throw Error(what + " cannot change on a restore (" + saved + ")");
}

std::string mib(uint64_t value) { return std::to_string(value) + " MiB"; }

// "the saved domain's is '/boot/vmlinuz'", or "... has none" for an empty path.
std::string saved_text(const std::string& text) {
  return text.empty() ? "the saved domain has none" : "the saved domain's is '" + text + "'";
}

// "2: xvda, xvdb" or "none".
std::string listed(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::string text = std::to_string(names.size()) + ":";
  for (size_t i = 0; i < names.size(); ++i) text += (i ? ", " : " ") + names[i];
  return text;
}

uint64_t max_memory(const DomainConfig& config) { return config.maxmem_mib ? config.maxmem_mib : config.memory_mib; }
uint32_t max_vcpus(const DomainConfig& config) { return config.maxvcpus ? config.maxvcpus : config.vcpus; }

void check_disks(const std::vector<DiskSpec>& saved, const std::vector<DiskSpec>& changed) {
  if (saved.size() != changed.size()) {
    std::vector<std::string> names;
    for (const auto& disk : saved) names.push_back(disk.vdev);
    refuse("the number of disks (disk=)", "the saved domain has " + listed(names));
  }
  for (size_t i = 0; i < saved.size(); ++i) {
    if (changed[i].vdev != saved[i].vdev)
      refuse("a disk's vdev", "the saved domain's disk " + std::to_string(i) + " is " + saved[i].vdev + ", not " +
                                  changed[i].vdev);
    if (changed[i].read_only != saved[i].read_only)
      refuse("a disk's access", "the saved domain's " + saved[i].vdev + " is " + (saved[i].read_only ? "ro" : "rw"));
  }
}

void check_vifs(const std::vector<VifSpec>& saved, const std::vector<VifSpec>& changed) {
  if (saved.size() != changed.size()) {
    std::vector<std::string> names;
    for (const auto& vif : saved) names.push_back("devid " + std::to_string(vif.devid));
    refuse("the number of NICs (vif=)", "the saved domain has " + listed(names));
  }
  for (size_t i = 0; i < saved.size(); ++i) {
    if (changed[i].devid != saved[i].devid)
      refuse("a NIC's devid", "the saved domain's NIC " + std::to_string(i) + " is devid " +
                                  std::to_string(saved[i].devid) + ", not " + std::to_string(changed[i].devid));
    if (changed[i].mac != saved[i].mac)
      refuse("a NIC's MAC", "the saved domain's vif " + std::to_string(saved[i].devid) + " has " +
                                saved[i].mac.value_or("none") + ", not " + changed[i].mac.value_or("none"));
  }
}

}  // namespace

void check_restorable_changes(const DomainConfig& saved, const DomainConfig& changed) {
  if (changed.uuid != saved.uuid)
    throw Error("uuid cannot be set on a restore (the restored domain keeps the saved uuid, or gets a new one while "
                "the saved domain still runs)");
  if (changed.memory_mib != saved.memory_mib) refuse("memory", "the saved domain has " + mib(saved.memory_mib));
  if (max_memory(changed) != max_memory(saved)) refuse("maxmem", "the saved domain has " + mib(max_memory(saved)));
  if (changed.vcpus != saved.vcpus) refuse("vcpus", "the saved domain has " + std::to_string(saved.vcpus));
  if (max_vcpus(changed) != max_vcpus(saved))
    refuse("maxvcpus", "the saved domain has " + std::to_string(max_vcpus(saved)));
  if (changed.kernel != saved.kernel) refuse("kernel", saved_text(saved.kernel));
  if (changed.ramdisk != saved.ramdisk) refuse("ramdisk", saved_text(saved.ramdisk));
  if (changed.cmdline != saved.cmdline) refuse("cmdline", saved_text(saved.cmdline));
  if (changed.rng != saved.rng) refuse("rng", std::string("the saved domain has rng=") + (saved.rng ? "1" : "0"));
  if (changed.balloon_stats_seconds.has_value() != saved.balloon_stats_seconds.has_value())
    refuse("balloon", std::string("the saved domain has balloon=") + (saved.balloon_stats_seconds ? "1" : "0"));
  if (changed.vsock_cid != saved.vsock_cid)
    refuse("vsock", saved.vsock_cid ? "the saved domain has vsock=" + std::to_string(*saved.vsock_cid)
                                    : std::string("the saved domain has no vsock"));
  check_disks(saved.disks, changed.disks);
  check_vifs(saved.vifs, changed.vifs);
}

DomainConfig restored_config(const DomainConfig& saved, const std::vector<std::string>& overrides) {
  DomainConfig config = saved;
  apply_xl_overrides(config, overrides);
  // A disk= or vif= list's items are the saved devices again, place by place.
  if (config.disks.size() == saved.disks.size())
    for (size_t i = 0; i < saved.disks.size(); ++i)
      if (config.disks[i].vdev.empty()) config.disks[i].vdev = saved.disks[i].vdev;
  if (config.vifs.size() == saved.vifs.size()) {
    for (size_t i = 0; i < saved.vifs.size(); ++i) {
      config.vifs[i].devid = saved.vifs[i].devid;
      if (!config.vifs[i].mac) config.vifs[i].mac = saved.vifs[i].mac;
    }
  }
  validate(config);
  check_restorable_changes(saved, config);
  for (size_t i = 0; i < saved.disks.size(); ++i) {
    const std::string& target = config.disks[i].target;
    if (target != saved.disks[i].target && !std::filesystem::path(target).is_absolute())
      throw Error("disk " + config.disks[i].vdev + ": the target '" + target +
                  "' must be an absolute path on a restore (kdomd does not know the client's current directory)");
  }
  return config;
}

}  // namespace kdom::config
