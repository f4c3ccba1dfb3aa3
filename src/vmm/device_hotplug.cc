// Hot-plug of disks and NICs on a running domain.
#include "vmm/device_hotplug.h"

#include <sys/eventfd.h>

#include <algorithm>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "snapshot/state_json.h"
#include "vmm/vm_config_json.h"

namespace kdom::vmm {

DeviceHotplug::DeviceHotplug(PciDevices& pci, VirtioDevices& virtio, EventLoop& events,
                             std::shared_ptr<devices::InterruptLine> line, Publish publish)
    : pci_(pci),
      virtio_(virtio),
      events_(events),
      publish_(std::move(publish)),
      controller_(std::make_shared<devices::pci::PciHotplugController>(std::move(line),
                                                                     [this](int slot) { on_eject(slot); })),
      ejected_fd_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {
  events_.add(ejected_fd_.get(), [this] {
    if (drain_eventfd(ejected_fd_.get())) finish_ejects();
  });
}

DeviceHotplug::~DeviceHotplug() { events_.remove(ejected_fd_.get()); }

nlohmann::json DeviceHotplug::handle(const std::string& op, const nlohmann::json& request) {
  if (op == "disk-attach") return attach("disk", request);
  if (op == "net-attach") return attach("net", request);
  if (op == "devices") return list();
  if (op == "device-detach") {
    auto id = request.find("id");
    if (id == request.end() || !id->is_string()) throw Error("device-detach needs \"id\", the device's id");
    bool force = false;
    if (auto flag = request.find("force"); flag != request.end()) {
      if (!flag->is_boolean()) throw Error("device-detach: \"force\" must be true or false");
      force = flag->get<bool>();
    }
    return detach(id->get<std::string>(), force);
  }
  throw Error("unknown device op '" + op + "'");
}

nlohmann::json DeviceHotplug::attach(const std::string& kind, const nlohmann::json& request) {
  auto spec = request.find(kind);
  if (spec == request.end()) throw Error(kind + "-attach needs \"" + kind + "\", the device's description");
  int slot = 0;
  std::string id;
  if (kind == "disk") {
    const DiskConfig disk = disk_config_from_json(*spec, kind);
    id = disk.id;
    slot = virtio_.plug_disk(disk, pci_);
  } else {
    const NetConfig net = net_config_from_json(*spec, kind);
    id = net.id;
    slot = virtio_.plug_net(net, pci_);
  }
  controller_->announce_added(slot);
  log_line("hot-plug: " + kind + " '" + id + "' added in PCI slot " + std::to_string(slot));
  publish_("device-attached", {{"id", id}, {"kind", kind}, {"slot", slot}});
  return {{"ok", true}, {"id", id}, {"slot", slot}};
}

nlohmann::json DeviceHotplug::detach(const std::string& id, bool force) {
  const auto devices = virtio_.plugged();
  auto it = std::find_if(devices.begin(), devices.end(), [&](const auto& d) { return d.id == id; });
  if (it == devices.end()) throw Error("the domain has no disk or NIC with id '" + id + "'");
  const int slot = it->slot;
  if (force) {
    // The device stops serving now and is no longer the domain's; it stays in its slot, dead,
    // until the guest has let go (its driver resets it on the way out, which must see a
    // device answer), and the guest is asked to.
    pci_.stop(slot);
    virtio_.forget(id);
    detaching_.insert(slot);
    controller_->request_removal(slot);
    log_line("hot-plug: " + it->kind + " '" + id + "' stopped at once (forced); PCI slot " + std::to_string(slot) +
             " is freed when the guest ejects it");
    publish_("device-detached", {{"id", id}, {"kind", it->kind}, {"slot", slot}, {"by", "force"}});
    return {{"ok", true}, {"id", id}, {"state", "detached"}};
  }
  detaching_.insert(slot);
  controller_->request_removal(slot);
  log_line("hot-plug: the guest is asked to let go of '" + id + "' (PCI slot " + std::to_string(slot) + ")");
  return {{"ok", true}, {"id", id}, {"state", "detaching"}};
}

nlohmann::json DeviceHotplug::list() const {
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& device : virtio_.plugged())
    devices.push_back({{"id", device.id},
                       {"kind", device.kind},
                       {"slot", device.slot},
                       {"state", detaching_.count(device.slot) ? "detaching" : "attached"}});
  return {{"ok", true}, {"devices", devices}};
}

nlohmann::json DeviceHotplug::save_state() {
  finish_ejects();
  return {{"registers", controller_->save_state()}, {"detaching", detaching_}};
}

void DeviceHotplug::load_state(const nlohmann::json& state) {
  const std::string what = "PCI hot-plug";
  const nlohmann::json& registers = snapshot::state_object(state, "registers", what);
  const nlohmann::json& slots = snapshot::state_array(state, "detaching", what);
  std::set<int> detaching;
  for (const auto& slot : slots) {
    if (!slot.is_number_unsigned() || slot.get<uint64_t>() < 1 || slot.get<uint64_t>() > 31)
      throw snapshot::StateError("saved state of " + what + ": 'detaching' holds " + slot.dump() + ", not a slot 1-31");
    detaching.insert(slot.get<int>());
  }
  controller_->load_state(registers);
  detaching_ = std::move(detaching);
}

void DeviceHotplug::on_eject(int slot) {
  if (!pci_.hide(slot)) return;  // nothing there (a forced removal the guest caught up with)
  {
    std::lock_guard lock(mutex_);
    ejected_.push_back(slot);
  }
  signal_eventfd(ejected_fd_.get());
}

void DeviceHotplug::finish_ejects() {
  std::vector<int> slots;
  {
    std::lock_guard lock(mutex_);
    slots.swap(ejected_);
  }
  for (int slot : slots) finish(slot, detaching_.count(slot) ? "request" : "guest");
}

void DeviceHotplug::finish(int slot, const std::string& how) {
  const auto devices = virtio_.plugged();
  auto it = std::find_if(devices.begin(), devices.end(), [&](const auto& d) { return d.slot == slot; });
  pci_.remove(slot);
  detaching_.erase(slot);
  if (it == devices.end()) {
    log_line("hot-plug: the guest ejected the device in PCI slot " + std::to_string(slot));
    return;
  }
  virtio_.forget(it->id);
  log_line("hot-plug: " + it->kind + " '" + it->id + "' removed from PCI slot " + std::to_string(slot) + " (" + how + ")");
  publish_("device-detached", {{"id", it->id}, {"kind", it->kind}, {"slot", slot}, {"by", how}});
}

}  // namespace kdom::vmm
