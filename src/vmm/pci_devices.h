// PciDevices: the domain's PCI bus as the VMM runs it: the root bus behind ports 0xCF8-0xCFF,
// virtio devices on it with BARs assigned as firmware would, MMIO in the PCI window dispatched
// to whichever device's BAR currently decodes the address, queue notifications caught by
// ioeventfds (moved when the guest moves a BAR) and handled in the event loop thread, and
// MSI-X vectors delivered through the MSI router. Devices may be added and removed while the
// vCPUs run (hot-plug): a vCPU's access to a device that is leaving finishes on it, later ones
// find its slot empty.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

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
  // window is full. Before the vCPUs run, or in the event loop's thread. A device there at boot
  // gets its BAR assigned, as firmware would; a hot-plugged one (`hot_plugged`) starts with its
  // BAR at 0, as hardware does, and the guest's OS assigns it.
  int add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device, bool hot_plugged = false);
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
  // With notifier_mutex_ held.
  void register_notifiers(VirtioSlot& slot, uint64_t bar_address);
  void unregister_notifiers(VirtioSlot& slot);
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
};

}  // namespace kdom::vmm
