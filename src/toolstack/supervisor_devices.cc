// Supervisor: hot-plug of a running domain's disks and NICs (xl block-attach, network-detach...).
// The VMM does the plugging (vmm/device_hotplug.h); kdomd checks the request, makes a NIC's TAP,
// keeps the domain's config and store keys in step, and publishes what happened.
#include <algorithm>
#include <chrono>
#include <optional>
#include <filesystem>
#include <thread>

#include "base/error.h"
#include "base/log.h"
#include "toolstack/supervisor.h"
#include "toolstack/tap_bridge.h"
#include "vmm/vm_config_json.h"

namespace kdom::toolstack {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// How the list shows a device the VMM reports in `state` (none: the VMM does not have it; no
// states at all: the VMM did not answer).
std::string state_name(const std::optional<std::map<std::string, std::string>>& states, const std::string& vmm_id) {
  if (!states) return "unknown";
  auto it = states->find(vmm_id);
  if (it == states->end()) return "unplugged";
  return it->second == "detaching" ? "closing" : "connected";
}

json disk_entry(const config::DiskSpec& disk, const std::string& state) {
  return {{"vdev", disk.vdev},          {"target", disk.target}, {"mode", disk.read_only ? "ro" : "rw"},
          {"shared", disk.shared},      {"state", state}};
}

json vif_entry(uint32_t domid, const config::VifSpec& vif, const std::string& state) {
  return {{"devid", vif.devid},       {"mac", vif.mac.value_or("")},       {"bridge", vif.bridge},
          {"tap", tap_name(domid, vif)}, {"rate_bytes_per_second", vif.rate_bytes_per_second}, {"state", state}};
}

}  // namespace

std::map<std::string, std::string> Supervisor::vmm_devices(Runtime& runtime) {
  std::map<std::string, std::string> states;
  const json reply = control(runtime, {{"op", "devices"}});
  for (const auto& device : reply.value("devices", json::array()))
    if (device.is_object()) states[device.value("id", "")] = device.value("state", "");
  return states;
}

// The domain's config and its running VMM's device states; no states when the VMM cannot say
// (a listing still shows the config), none at all for a domain without a VMM.
std::pair<config::DomainConfig, std::optional<std::map<std::string, std::string>>>
Supervisor::config_and_device_states(Runtime& runtime) {
  const DomainRecord record = record_of(runtime.id);
  auto config = config::domain_config_from_json(record.config);
  if (record.state != "running" && record.state != "paused") return {config, std::map<std::string, std::string>{}};
  try {
    return {config, vmm_devices(runtime)};
  } catch (const Error& error) {
    log_line("domain " + std::to_string(runtime.id) + ": its VMM did not list its devices: " + error.what());
    return {config, std::nullopt};
  }
}

json Supervisor::block_list(const std::string& dom) {
  auto runtime = runtime_of(dom);
  const auto [config, states] = config_and_device_states(*runtime);
  json disks = json::array();
  for (const auto& disk : config.disks) disks.push_back(disk_entry(disk, state_name(states, disk.vdev)));
  return {{"disks", disks}};
}

json Supervisor::network_list(const std::string& dom) {
  auto runtime = runtime_of(dom);
  const auto [config, states] = config_and_device_states(*runtime);
  json vifs = json::array();
  for (const auto& vif : config.vifs)
    vifs.push_back(vif_entry(runtime->id, vif, state_name(states, "vif" + std::to_string(vif.devid))));
  return {{"vifs", vifs}};
}

json Supervisor::block_attach(const std::string& dom, config::DiskSpec disk) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  const DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running");
  if (disk.target.empty()) throw Error("block-attach needs a target (the image's path)");
  if (!fs::exists(disk.target)) throw Error("disk '" + disk.target + "' does not exist");
  config::DomainConfig config = config::domain_config_from_json(record.config);
  std::error_code error;
  for (const auto& existing : config.disks) {
    if (!disk.vdev.empty() && existing.vdev == disk.vdev)
      throw ConflictError("domain " + dom + " already has a disk '" + disk.vdev + "'");
    if (existing.target == disk.target || fs::equivalent(existing.target, disk.target, error))
      throw ConflictError("disk '" + disk.target + "' is attached to domain " + dom + " already (as " + existing.vdev + ")");
  }
  config.disks.push_back(disk);
  config::assign_device_names(config);
  config::validate(config);
  disk = config.disks.back();
  control(*runtime, {{"op", "disk-attach"}, {"disk", vmm::to_json(vmm_disk(disk))}});
  update_config(runtime->id, [&](config::DomainConfig& changed) { changed.disks.push_back(disk); });
  store_device(runtime->id, "device/vbd/" + disk.vdev, disk_keys(disk));
  publish("device-attached", runtime->id, record.name, {{"kind", "disk"}, {"device", disk_entry(disk, "connected")}});
  return disk_entry(disk, "connected");
}

json Supervisor::network_attach(const std::string& dom, config::VifSpec vif) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  const DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running");
  config::DomainConfig config = config::domain_config_from_json(record.config);
  vif.devid = config::next_devid(config);
  if (vif.bridge.empty() && vif.tap.empty())
    throw Error("network-attach needs bridge=BRIDGE (kdomd makes the TAP) or vifname=TAP (an existing TAP)");
  for (const auto& existing : config.vifs)
    if (vif.mac && existing.mac == vif.mac) throw ConflictError("domain " + dom + " already has a NIC with MAC " + *vif.mac);
  config.vifs.push_back(vif);
  config::assign_device_names(config);
  config::validate(config);
  vif = config.vifs.back();
  const std::string tap = tap_name(runtime->id, vif);
  if (!vif.bridge.empty()) create_bridged_tap(tap, vif.bridge, vif_mac(vif));
  try {
    control(*runtime, {{"op", "net-attach"}, {"net", vmm::to_json(vmm_net(runtime->id, vif))}});
  } catch (...) {
    if (!vif.bridge.empty()) remove_tap(tap);
    throw;
  }
  update_config(runtime->id, [&](config::DomainConfig& changed) { changed.vifs.push_back(vif); });
  store_device(runtime->id, "device/vif/" + std::to_string(vif.devid), vif_keys(vif));
  publish("device-attached", runtime->id, record.name, {{"kind", "vif"}, {"device", vif_entry(runtime->id, vif, "connected")}});
  return vif_entry(runtime->id, vif, "connected");
}

json Supervisor::block_detach(const std::string& dom, const std::string& vdev, bool force, uint32_t wait_seconds) {
  auto runtime = runtime_of(dom);
  std::unique_lock operation(runtime->operation);
  const DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running");
  const config::DomainConfig config = config::domain_config_from_json(record.config);
  auto disk = std::find_if(config.disks.begin(), config.disks.end(), [&](const auto& d) { return d.vdev == vdev; });
  if (disk == config.disks.end()) throw NotFoundError("domain " + dom + " has no disk '" + vdev + "'");
  store_write(runtime->id, "device/vbd/" + vdev + "/state", "closing");
  detach_device(*runtime, operation, "disk " + vdev, vdev, force, wait_seconds);
  return disk_entry(*disk, "unplugged");
}

json Supervisor::network_detach(const std::string& dom, const std::string& nic, bool force, uint32_t wait_seconds) {
  auto runtime = runtime_of(dom);
  std::unique_lock operation(runtime->operation);
  const DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running");
  const config::DomainConfig config = config::domain_config_from_json(record.config);
  auto vif = std::find_if(config.vifs.begin(), config.vifs.end(), [&](const auto& v) {
    return std::to_string(v.devid) == nic || (v.mac && *v.mac == nic);
  });
  if (vif == config.vifs.end()) throw NotFoundError("domain " + dom + " has no NIC '" + nic + "' (give its devid or MAC)");
  store_write(runtime->id, "device/vif/" + std::to_string(vif->devid) + "/state", "closing");
  detach_device(*runtime, operation, "NIC " + std::to_string(vif->devid), "vif" + std::to_string(vif->devid), force,
                wait_seconds);
  return vif_entry(runtime->id, *vif, "unplugged");
}

void Supervisor::detach_device(Runtime& runtime, std::unique_lock<std::mutex>& operation, const std::string& what,
                               const std::string& vmm_id, bool force, uint32_t wait_seconds) {
  control(runtime, {{"op", "device-detach"}, {"id", vmm_id}, {"force", force}});
  // The guest takes its time: other operations on the domain (a destroy) need not wait for it.
  operation.unlock();
  // The VMM's device-detached event forgets the device; asking the VMM as well covers an
  // event stream that was cut.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_seconds);
  for (;;) {
    if (!vmm_devices(runtime).count(vmm_id)) {  // throws when the VMM has gone meanwhile
      forget_device(runtime.id, vmm_id, force ? "force" : "request");
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw TimeoutError("the guest did not let go of " + what + " within " + std::to_string(wait_seconds) +
                     " s (is its OS up, with ACPI PCI hot-plug?); the request stands; --force takes it away now");
}

void Supervisor::forget_device(uint32_t id, const std::string& vmm_id, const std::string& how) {
  std::optional<json> gone;
  std::string kind, store_key, tap;
  try {
    update_config(id, [&](config::DomainConfig& config) {
      auto disk = std::find_if(config.disks.begin(), config.disks.end(), [&](const auto& d) { return d.vdev == vmm_id; });
      if (disk != config.disks.end()) {
        gone = disk_entry(*disk, "unplugged");
        kind = "disk";
        store_key = "device/vbd/" + disk->vdev;
        config.disks.erase(disk);
        return;
      }
      auto vif = std::find_if(config.vifs.begin(), config.vifs.end(),
                              [&](const auto& v) { return "vif" + std::to_string(v.devid) == vmm_id; });
      if (vif != config.vifs.end()) {
        gone = vif_entry(id, *vif, "unplugged");
        kind = "vif";
        store_key = "device/vif/" + std::to_string(vif->devid);
        if (!vif->bridge.empty()) tap = tap_name(id, *vif);
        config.vifs.erase(vif);
      }
    });
  } catch (const NotFoundError&) {
    return;  // the domain went meanwhile
  }
  if (!gone) return;
  if (!tap.empty()) remove_tap(tap);
  try {
    if (store_.read(Store::kHost, "/local/domain/" + std::to_string(id) + "/" + store_key))
      store_.remove(Store::kHost, "/local/domain/" + std::to_string(id) + "/" + store_key);
  } catch (const std::exception& error) {
    log_line("domain " + std::to_string(id) + ": cannot remove " + store_key + " from the store: " + error.what());
  }
  if (const auto record = registry_.find(id))
    publish("device-detached", id, record->name, {{"kind", kind}, {"device", *gone}, {"by", how}});
}

void Supervisor::store_device(uint32_t id, const std::string& key,
                              const std::vector<std::pair<std::string, std::string>>& values) {
  const std::string home = "/local/domain/" + std::to_string(id) + "/" + key;
  try {
    const uint64_t t = store_.begin(Store::kHost);
    try {
      for (const auto& [name, value] : values) store_.write(Store::kHost, home + "/" + name, value, t);
    } catch (...) {
      store_.abort(Store::kHost, t);
      throw;
    }
    store_.commit(Store::kHost, t);
  } catch (const std::exception& error) {
    log_line("domain " + std::to_string(id) + ": cannot write " + key + " in the store: " + error.what());
  }
}

}  // namespace kdom::toolstack
