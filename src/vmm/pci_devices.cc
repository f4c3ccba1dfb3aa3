// PCI bus wiring: BAR assignment, MMIO dispatch, ioeventfd notifications and MSI-X.
#include "vmm/pci_devices.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "base/error.h"
#include "base/eventfd.h"
#include "snapshot/state_json.h"

namespace kdom::vmm {

// MSI-X vectors of one device, each backed by a GSI with an irqfd (allocated on first use).
class PciDevices::KvmMsix : public devices::pci::MsixInterrupts {
 public:
  explicit KvmMsix(MsiRouter& router) : router_(router) {}
  void update(uint16_t vector, const devices::pci::MsixMessage& message) override {
    if (auto routed = get(vector)) router_.set_message(*routed, message.address, message.data);
  }
  void fire(uint16_t vector, const devices::pci::MsixMessage&) override {
    if (auto routed = get(vector)) routed->fire();
  }
  // The device left: every vector's GSI goes back to the router; later updates and fires are
  // dropped.
  void release_all() {
    std::lock_guard lock(mutex_);
    for (auto& [index, vector] : vectors_) router_.release(*vector);
    vectors_.clear();
    released_ = true;
  }

 private:
  std::shared_ptr<MsiRouter::Vector> get(uint16_t vector) {
    std::lock_guard lock(mutex_);
    if (released_) return nullptr;
    auto& slot = vectors_[vector];
    if (!slot) slot = router_.allocate();
    return slot;
  }
  MsiRouter& router_;
  std::mutex mutex_;
  std::map<uint16_t, std::shared_ptr<MsiRouter::Vector>> vectors_;
  bool released_ = false;
};

namespace {
constexpr uint32_t kNotifyWriteSize = 2;  // drivers write the 16-bit queue index
}  // namespace

class PciDevices::MmioWindow : public devices::BusDevice {
 public:
  explicit MmioWindow(PciDevices& owner) : owner_(owner) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    uint64_t bar_offset = 0;
    if (auto target = owner_.decoding(window_start() + offset, data.size(), bar_offset))
      target->read(bar_offset, data);
    else
      std::fill(data.begin(), data.end(), 0xff);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    uint64_t bar_offset = 0;
    if (auto target = owner_.decoding(window_start() + offset, data.size(), bar_offset)) target->write(bar_offset, data);
  }

 private:
  PciDevices& owner_;
};

std::shared_ptr<devices::virtio::VirtioPci> PciDevices::decoding(uint64_t address, uint64_t length,
                                                                uint64_t& bar_offset) const {
  std::lock_guard lock(mutex_);
  for (const auto& slot : virtio_) {
    if (!slot->visible) continue;
    auto& transport = *slot->transport;
    if (!(transport.command() & devices::pci::kCommandMemorySpace)) continue;
    uint64_t base = transport.bar_address(devices::virtio::VirtioPci::kBarIndex);
    if (base != 0 && address >= base && address - base + length <= transport.bar_size()) {
      bar_offset = address - base;
      return slot->transport;
    }
  }
  return nullptr;
}

PciDevices::PciDevices(kvm::Vm& vm, const GuestMemory& memory, EventLoop& events, MsiRouter& msi)
    : vm_(vm),
      memory_(memory),
      events_(events),
      msi_(msi),
      root_(std::make_shared<devices::pci::PciRootBus>()),
      allocator_(devices::pci::kPciMmioWindowStart, devices::pci::kPciMmioWindowEnd) {}

PciDevices::~PciDevices() {
  std::lock_guard lock(notifier_mutex_);
  for (auto& slot : virtio_) unregister_notifiers(*slot);
}

int PciDevices::add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device, const std::string& id,
                           bool hot_plugged, int wanted_slot) {
  auto slot = std::make_shared<VirtioSlot>();
  slot->id = id;
  auto queue_count = device->queue_max_sizes().size();
  slot->msix = std::make_shared<KvmMsix>(msi_);
  slot->transport = std::make_shared<devices::virtio::VirtioPci>(device, memory_, slot->msix);
  std::vector<int> fds;
  for (size_t queue = 0; queue < queue_count; ++queue) {
    slot->notify_fds.emplace_back(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
    fds.push_back(slot->notify_fds.back().get());
  }
  const uint64_t address = hot_plugged ? 0 : allocator_.allocate(slot->transport->bar_size());
  if (device->waits_on_notifiers()) {
    // One thread wake-up per notification instead of two: the device's own thread waits.
    device->set_queue_notifiers(fds);
  } else {
    slot->handled_by_loop = true;
    for (size_t queue = 0; queue < queue_count; ++queue) {
      const int fd = fds[queue];
      auto* transport = slot->transport.get();
      events_.add(fd, [fd, transport, queue] {
        if (drain_eventfd(fd)) transport->notify(static_cast<uint16_t>(queue));
      });
    }
  }
  // A notification that arrives as an MMIO exit (not caught by the ioeventfd) is passed to the
  // same eventfd, so it is served where the ioeventfd's are, never in the vCPU thread.
  slot->transport->set_notify_forwarder([fds](uint16_t queue) {
    if (queue < fds.size()) signal_eventfd(fds[queue]);
  });
  if (address != 0) {
    slot->transport->set_bar_address(devices::virtio::VirtioPci::kBarIndex, address);
    std::lock_guard lock(notifier_mutex_);
    if (!notifiers_deferred_) register_notifiers(*slot, address);
  }
  std::weak_ptr<VirtioSlot> weak = slot;
  slot->transport->set_bar_hook([this, weak](int index, uint64_t old_address, uint64_t new_address) {
    auto live = weak.lock();
    if (!live || index != devices::virtio::VirtioPci::kBarIndex || old_address == new_address) return;
    std::lock_guard lock(notifier_mutex_);
    if (!live->removed && !notifiers_deferred_) move_notifiers(*live, new_address);
  });
  std::lock_guard lock(mutex_);
  try {
    if (wanted_slot == 0) {
      slot->slot = root_->add(slot->transport);
    } else {
      root_->add_at(wanted_slot, slot->transport);
      slot->slot = wanted_slot;
    }
  } catch (...) {
    {
      std::lock_guard notifiers(notifier_mutex_);
      unregister_notifiers(*slot);
      slot->removed = true;
    }
    if (slot->handled_by_loop)
      for (const auto& fd : slot->notify_fds) events_.remove(fd.get());
    throw;
  }
  virtio_.push_back(slot);
  return slot->slot;
}

bool PciDevices::hide(int slot) {
  std::lock_guard lock(mutex_);
  for (auto& entry : virtio_) {
    if (entry->slot != slot) continue;
    entry->visible = false;
    root_->remove(slot);
    return true;
  }
  return false;
}

void PciDevices::stop(int slot) {
  std::shared_ptr<devices::virtio::VirtioPci> transport;
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : virtio_)
      if (entry->slot == slot) transport = entry->transport;
  }
  if (transport) transport->unplug();
}

void PciDevices::remove(int slot) {
  std::shared_ptr<VirtioSlot> entry;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(virtio_.begin(), virtio_.end(), [&](const auto& e) { return e->slot == slot; });
    if (it == virtio_.end()) return;
    entry = *it;
    virtio_.erase(it);
    root_->remove(slot);
  }
  {
    std::lock_guard lock(notifier_mutex_);
    unregister_notifiers(*entry);
    entry->removed = true;
  }
  if (entry->handled_by_loop)
    for (const auto& fd : entry->notify_fds) events_.remove(fd.get());
  // Stops the device's threads (they wait on notify_fds) before those close.
  entry->transport->unplug();
  entry->msix->release_all();
}

std::vector<std::string> PciDevices::describe_virtio() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> lines;
  for (const auto& slot : virtio_) {
    auto device_lines = slot->transport->describe_state();
    lines.insert(lines.end(), device_lines.begin(), device_lines.end());
  }
  return lines;
}

void PciDevices::quiesce() {
  std::lock_guard lock(mutex_);
  for (const auto& slot : virtio_)
    if (slot->visible) slot->transport->quiesce();
}

void PciDevices::resume() {
  std::lock_guard lock(mutex_);
  for (const auto& slot : virtio_)
    if (slot->visible) slot->transport->resume();
}

std::vector<std::shared_ptr<PciDevices::VirtioSlot>> PciDevices::saved_slots_in_order() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<VirtioSlot>> slots = virtio_;
  std::erase_if(slots, [](const auto& slot) { return !slot->visible || slot->transport->unplugged(); });
  std::sort(slots.begin(), slots.end(), [](const auto& a, const auto& b) { return a->slot < b->slot; });
  return slots;
}

nlohmann::json PciDevices::save_state() const {
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& slot : saved_slots_in_order())
    devices.push_back({{"slot", slot->slot},
                       {"id", slot->id},
                       {"device_type", static_cast<uint16_t>(slot->transport->device().type())},
                       {"transport", slot->transport->save_state()}});
  return {{"devices", std::move(devices)}};
}

nlohmann::json PciDevices::slot_ids() const {
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& slot : saved_slots_in_order()) devices.push_back({{"slot", slot->slot}, {"id", slot->id}});
  return {{"devices", std::move(devices)}};
}

void PciDevices::load_state(const nlohmann::json& state) {
  using snapshot::StateError;
  const std::string what = "PCI bus";
  std::vector<std::shared_ptr<VirtioSlot>> slots;
  {
    std::lock_guard lock(mutex_);
    slots = virtio_;
  }
  std::erase_if(slots, [](const auto& slot) { return !slot->visible || slot->transport->unplugged(); });
  const nlohmann::json& saved = snapshot::state_array(state, "devices", what);
  // First that the bus holds what was saved, slot by slot.
  std::vector<std::pair<std::shared_ptr<VirtioSlot>, const nlohmann::json*>> loads;
  std::vector<bool> matched(slots.size(), false);
  for (size_t i = 0; i < saved.size(); ++i) {
    const std::string where = what + " device " + std::to_string(i);
    const auto number = static_cast<int>(snapshot::state_u64(saved[i], "slot", where, devices::pci::kSlotCount - 1));
    const std::string id = snapshot::state_string(saved[i], "id", where);
    const uint64_t type = snapshot::state_u64(saved[i], "device_type", where, UINT16_MAX);
    const std::string named = "PCI slot " + std::to_string(number) + (id.empty() ? "" : " ('" + id + "')");
    auto it = std::find_if(slots.begin(), slots.end(), [&](const auto& slot) { return slot->slot == number; });
    if (it == slots.end()) throw StateError("saved state of " + what + ": " + named + " has no device here");
    const size_t index = static_cast<size_t>(it - slots.begin());
    if (matched[index]) throw StateError("saved state of " + what + ": " + named + " is saved twice");
    matched[index] = true;
    const auto& slot = *it;
    if (slot->id != id)
      throw StateError("saved state of " + what + ": " + named + " holds '" + slot->id + "' here");
    const auto here = static_cast<uint16_t>(slot->transport->device().type());
    if (type != here)
      throw StateError("saved state of " + what + ": " + named + " held virtio device type " + std::to_string(type) +
                       ", here type " + std::to_string(here));
    loads.emplace_back(slot, &snapshot::state_object(saved[i], "transport", where));
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    if (!matched[i])
      throw StateError("saved state of " + what + ": PCI slot " + std::to_string(slots[i]->slot) + " ('" +
                       slots[i]->id + "') has no saved state");
  }
  for (const auto& [slot, transport_state] : loads) {
    const std::string named = "virtio-pci slot " + std::to_string(slot->slot) + (slot->id.empty() ? "" : " '" + slot->id + "'");
    slot->transport->load_state(*transport_state, named);
    {
      std::lock_guard lock(notifier_mutex_);
      if (slot->removed) continue;
      if (!notifiers_deferred_)
        move_notifiers(*slot, slot->transport->bar_address(devices::virtio::VirtioPci::kBarIndex));
    }
    if (slot->transport->active())
      for (const auto& fd : slot->notify_fds) signal_eventfd(fd.get());
  }
}

std::map<std::string, int> PciDevices::saved_slots(const nlohmann::json& state) {
  using snapshot::StateError;
  const std::string what = "PCI bus";
  std::map<std::string, int> slots;
  std::vector<bool> used(devices::pci::kSlotCount, false);
  const nlohmann::json& saved = snapshot::state_array(state, "devices", what);
  for (size_t i = 0; i < saved.size(); ++i) {
    const std::string where = what + " device " + std::to_string(i);
    const auto slot = static_cast<int>(snapshot::state_u64(saved[i], "slot", where, devices::pci::kSlotCount - 1));
    const std::string id = snapshot::state_string(saved[i], "id", where);
    if (slot == 0) throw StateError("saved state of " + where + ": 'slot' is 0, the host bridge's");
    if (id.empty()) throw StateError("saved state of " + where + ": 'id' is empty");
    if (used[static_cast<size_t>(slot)]) throw StateError("saved state of " + where + ": slot " + std::to_string(slot) + " is saved twice");
    if (!slots.emplace(id, slot).second) throw StateError("saved state of " + where + ": id '" + id + "' is saved twice");
    used[static_cast<size_t>(slot)] = true;
  }
  return slots;
}

void PciDevices::defer_notifiers() {
  std::lock_guard lock(notifier_mutex_);
  notifiers_deferred_ = true;
}

void PciDevices::register_deferred_notifiers() {
  std::vector<std::shared_ptr<VirtioSlot>> slots;
  {
    std::lock_guard lock(mutex_);
    slots = virtio_;
  }
  std::lock_guard lock(notifier_mutex_);
  if (!notifiers_deferred_) return;
  notifiers_deferred_ = false;
  for (const auto& slot : slots) {
    if (slot->removed) continue;
    move_notifiers(*slot, slot->transport->bar_address(devices::virtio::VirtioPci::kBarIndex));
  }
}

void PciDevices::move_notifiers(VirtioSlot& slot, uint64_t bar_address) {
  // Taking an ioeventfd away waits for KVM's readers: a BAR that stays put keeps its own.
  if (bar_address == slot.notify_base) return;
  unregister_notifiers(slot);
  if (bar_address != 0) register_notifiers(slot, bar_address);
}

void PciDevices::register_notifiers(VirtioSlot& slot, uint64_t bar_address) {
  for (size_t queue = 0; queue < slot.notify_fds.size(); ++queue)
    vm_.register_ioeventfd(slot.notify_fds[queue].get(),
                           bar_address + devices::virtio::VirtioPci::notify_offset(static_cast<uint16_t>(queue)),
                           kNotifyWriteSize, /*port_io=*/false);
  slot.notify_base = bar_address;
}

void PciDevices::unregister_notifiers(VirtioSlot& slot) {
  if (slot.notify_base == 0) return;
  for (size_t queue = 0; queue < slot.notify_fds.size(); ++queue)
    vm_.unregister_ioeventfd(slot.notify_fds[queue].get(),
                             slot.notify_base + devices::virtio::VirtioPci::notify_offset(static_cast<uint16_t>(queue)),
                             kNotifyWriteSize, false);
  slot.notify_base = 0;
}

std::shared_ptr<devices::BusDevice> PciDevices::config_io(std::shared_ptr<devices::BusDevice> reset_control) {
  return std::make_shared<devices::pci::PciConfigIo>(root_, std::move(reset_control));
}

std::shared_ptr<devices::BusDevice> PciDevices::mmio_window() { return std::make_shared<MmioWindow>(*this); }

}  // namespace kdom::vmm
