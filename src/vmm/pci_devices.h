// PciDevices: the domain's PCI bus as the VMM runs it: the root bus behind ports 0xCF8-0xCFF,
// virtio devices on it with BARs assigned as firmware would, MMIO in the PCI window dispatched
// to whichever device's BAR currently decodes the address, queue notifications caught by
// ioeventfds (moved when the guest moves a BAR) and handled in the event loop thread, and
// MSI-X vectors delivered through the MSI router. Devices may be added and removed while the
// vCPUs run (hot-plug): a vCPU's access to a device that is leaving finishes on it, later ones
// find its slot empty.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "devices/bus.h"
#include "devices/pci/bar_allocator.h"
#include "devices/pci/pci_root_bus.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtio_pci.h"
#include "kvm/vm.h"
#include "memory/guest_memory.h"
#include "vmm/event_loop.h"
#include "vmm/msi_router.h"

namespace kdom::vmm {

class PciDevices {
 public:
  PciDevices(kvm::Vm& vm, const GuestMemory& memory, EventLoop& events, MsiRouter& msi);
  ~PciDevices();

  // Puts a virtio device on the bus and returns its slot; throws Error when the bus or the MMIO
  // window is full. Before the vCPUs run, or in the event loop's thread. `id` is the domain's
  // name for the device (VirtioDevices'), kept for save and restore. A device there at boot
  // gets its BAR assigned, as firmware would; a hot-plugged one (`hot_plugged`) starts with its
  // BAR at 0, as hardware does, and the guest's OS assigns it. `slot` 0 takes the lowest free
  // slot; 1-31 that slot (a restore puts each device where it was), Error if it is taken.
  int add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device, const std::string& id,
                 bool hot_plugged = false, int slot = 0);
  // Takes the device in `slot` off the bus (config space and MMIO) at once, from any thread (a
  // vCPU's eject); false when the slot has no virtio device. remove() must follow.
  bool hide(int slot);
  // Stops the device in `slot` (as a reset would) for good but leaves it on the bus, so that a
  // driver still bound can reset it before the guest ejects it (a forced removal); in the
  // event loop's thread. remove() follows once the guest has.
  void stop(int slot);
  // Takes the device in `slot` off the bus if it is still there, stops it (as a reset would),
  // and frees its notifiers, MSI-X vectors and BAR; in the event loop's thread (whose handlers
  // use the device). Nothing happens for an empty slot.
  void remove(int slot);
  // Each virtio device's state for a debugging dump (VirtioPci::describe_state).
  std::vector<std::string> describe_virtio() const;

  // Save and restore, in the event loop's thread (or before it runs) with the vCPUs stopped.
  // quiesce()/resume(): every virtio device's pause point (VirtioPci::quiesce).
  void quiesce();
  void resume();
  // {"devices": [{"slot", "id", "device_type", "transport": VirtioPci::save_state}]}, each
  // virtio device on the bus by slot. A device that has left the domain (stopped by a forced
  // removal, or ejected by the guest and not yet removed) is not saved: the restored guest
  // finds its slot empty.
  nlohmann::json save_state() const;
  // Loads save_state's document into a bus built for the restore (the same devices with the
  // same ids in the same slots: VirtioDevices::attach with slots), before the vCPUs run. A
  // saved slot with no device here, a device here with no saved slot, or a different id or
  // kind of device, is refused (snapshot::StateError) before any device is changed; then each
  // device's state is loaded (a bad one throws naming its slot and id: the bus is then partly
  // loaded and the domain must be thrown away). Afterwards MMIO and the queue notifiers
  // (ioeventfds) work at the loaded BAR addresses, the MSI-X vectors that can deliver are
  // routed, and every queue of a started device is notified once, since a notification the
  // driver gave just before the save may not have been served.
  void load_state(const nlohmann::json& state);
  // The slot of each id in save_state's document, for VirtioDevices::attach on a restore.
  // Throws snapshot::StateError for a malformed document, an empty id, or an id or slot (1-31)
  // saved twice.
  static std::map<std::string, int> saved_slots(const nlohmann::json& state);
  // save_state's document with only each device's slot and id: what saved_slots reads, small
  // enough for a stream's config record, so a restore can place the devices before the rest.
  nlohmann::json slot_ids() const;
  // For a restore: from defer_notifiers() on, no queue notifier (ioeventfd) is registered, since
  // each registration waits for KVM's readers (milliseconds, in a migration's pause); the
  // guest's notifications come as MMIO exits, forwarded to the same eventfds, until
  // register_deferred_notifiers() (once the vCPUs run, from any thread) puts every device's
  // ioeventfds at its BAR.
  void defer_notifiers();
  void register_deferred_notifiers();

  // The BusDevice for ports 0xCF8-0xCFF (forwarding 0xCF9 to `reset_control`).
  std::shared_ptr<devices::BusDevice> config_io(std::shared_ptr<devices::BusDevice> reset_control);
  // The BusDevice for the PCI MMIO window, to register at kPciMmioWindowStart.
  std::shared_ptr<devices::BusDevice> mmio_window();
  static constexpr uint64_t window_start() { return devices::pci::kPciMmioWindowStart; }
  static constexpr uint64_t window_size() {
    return devices::pci::kPciMmioWindowEnd - devices::pci::kPciMmioWindowStart;
  }

 private:
  class KvmMsix;
  struct VirtioSlot {
    int slot = 0;
    std::string id;
    std::shared_ptr<devices::virtio::VirtioPci> transport;
    std::shared_ptr<KvmMsix> msix;
    std::vector<UniqueFd> notify_fds;  // one per queue
    bool handled_by_loop = false;      // notify_fds are the loop's, not the device's own threads'
    // Under notifier_mutex_: the BAR address the ioeventfds are registered at, and whether the
    // device has been removed (a late BAR move must not register them again).
    uint64_t notify_base = 0;
    bool removed = false;
    bool visible = true;  // under mutex_: MMIO accesses reach it
  };
  class MmioWindow;
  // The slots a save keeps (visible, not unplugged), by slot number.
  std::vector<std::shared_ptr<VirtioSlot>> saved_slots_in_order() const;
  // With notifier_mutex_ held.
  void register_notifiers(VirtioSlot& slot, uint64_t bar_address);
  void unregister_notifiers(VirtioSlot& slot);
  // The notifiers at `bar_address` (none at 0), unless they are there already.
  void move_notifiers(VirtioSlot& slot, uint64_t bar_address);
  // The device whose memory BAR decodes `address`, with the offset within that BAR.
  std::shared_ptr<devices::virtio::VirtioPci> decoding(uint64_t address, uint64_t length, uint64_t& bar_offset) const;

  kvm::Vm& vm_;
  const GuestMemory& memory_;
  EventLoop& events_;
  MsiRouter& msi_;
  std::shared_ptr<devices::pci::PciRootBus> root_;
  devices::pci::PciBarAllocator allocator_;
  mutable std::mutex mutex_;  // virtio_ and each slot's `visible`
  std::vector<std::shared_ptr<VirtioSlot>> virtio_;
  std::mutex notifier_mutex_;
  bool notifiers_deferred_ = false;  // under notifier_mutex_
};

}  // namespace kdom::vmm
