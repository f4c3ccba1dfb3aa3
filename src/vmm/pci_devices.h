// PciDevices: the domain's PCI bus as the VMM runs it: the root bus behind ports 0xCF8-0xCFF,
// virtio devices on it with BARs assigned as firmware would, MMIO in the PCI window dispatched
// to whichever device's BAR currently decodes the address, queue notifications caught by
// ioeventfds (moved when the guest moves a BAR) and handled in the event loop thread, and
// MSI-X vectors delivered through the MSI router.
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

  // Puts a virtio device on the bus; throws Error when the bus or the MMIO window is full.
  void add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device);
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
  struct VirtioSlot {
    std::shared_ptr<devices::virtio::VirtioPci> transport;
    std::vector<UniqueFd> notify_fds;  // one per queue
    uint64_t notify_base = 0;          // BAR address the ioeventfds are registered at
  };
  class MmioWindow;
  void register_notifiers(VirtioSlot& slot, uint64_t bar_address);
  void unregister_notifiers(VirtioSlot& slot);

  kvm::Vm& vm_;
  const GuestMemory& memory_;
  EventLoop& events_;
  MsiRouter& msi_;
  std::shared_ptr<devices::pci::PciRootBus> root_;
  devices::pci::PciBarAllocator allocator_;
  std::vector<std::unique_ptr<VirtioSlot>> virtio_;
};

}  // namespace kdom::vmm
