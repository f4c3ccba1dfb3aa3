// PCI bus wiring: BAR assignment, MMIO dispatch, ioeventfd notifications and MSI-X.
#include "vmm/pci_devices.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <map>

#include "base/error.h"
#include "base/eventfd.h"

namespace kdom::vmm {

namespace {

// MSI-X vectors of one device, each backed by a GSI with an irqfd (allocated on first use).
class KvmMsix : public devices::pci::MsixInterrupts {
 public:
  explicit KvmMsix(MsiRouter& router) : router_(router) {}
  void update(uint16_t vector, const devices::pci::MsixMessage& message) override {
    router_.set_message(*get(vector), message.address, message.data);
  }
  void fire(uint16_t vector, const devices::pci::MsixMessage&) override { get(vector)->fire(); }

 private:
  std::shared_ptr<MsiRouter::Vector> get(uint16_t vector) {
    std::lock_guard lock(mutex_);
    auto& slot = vectors_[vector];
    if (!slot) slot = router_.allocate();
    return slot;
  }
  MsiRouter& router_;
  std::mutex mutex_;
  std::map<uint16_t, std::shared_ptr<MsiRouter::Vector>> vectors_;
};

constexpr uint32_t kNotifyWriteSize = 2;  // drivers write the 16-bit queue index

}  // namespace

class PciDevices::MmioWindow : public devices::BusDevice {
 public:
  explicit MmioWindow(PciDevices& owner) : owner_(owner) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    if (auto* target = find(offset, data.size(), offset))
      target->read(offset, data);
    else
      std::fill(data.begin(), data.end(), 0xff);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (auto* target = find(offset, data.size(), offset)) target->write(offset, data);
  }

 private:
  // The device whose memory BAR decodes window offset `offset`; `bar_offset` gets the offset
  // within that BAR.
  devices::virtio::VirtioPci* find(uint64_t offset, uint64_t length, uint64_t& bar_offset) const {
    uint64_t address = window_start() + offset;
    for (const auto& slot : owner_.virtio_) {
      auto& transport = *slot->transport;
      if (!(transport.command() & devices::pci::kCommandMemorySpace)) continue;
      uint64_t base = transport.bar_address(devices::virtio::VirtioPci::kBarIndex);
      if (base != 0 && address >= base && address - base + length <= transport.bar_size()) {
        bar_offset = address - base;
        return &transport;
      }
    }
    return nullptr;
  }
  PciDevices& owner_;
};

PciDevices::PciDevices(kvm::Vm& vm, const GuestMemory& memory, EventLoop& events, MsiRouter& msi)
    : vm_(vm),
      memory_(memory),
      events_(events),
      msi_(msi),
      root_(std::make_shared<devices::pci::PciRootBus>()),
      allocator_(devices::pci::kPciMmioWindowStart, devices::pci::kPciMmioWindowEnd) {}

PciDevices::~PciDevices() {
  for (auto& slot : virtio_) unregister_notifiers(*slot);
}

void PciDevices::add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device) {
  auto slot = std::make_unique<VirtioSlot>();
  auto queue_count = device->queue_max_sizes().size();
  slot->transport = std::make_shared<devices::virtio::VirtioPci>(device, memory_, std::make_shared<KvmMsix>(msi_));
  std::vector<int> fds;
  for (size_t queue = 0; queue < queue_count; ++queue) {
    slot->notify_fds.emplace_back(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
    fds.push_back(slot->notify_fds.back().get());
  }
  if (device->waits_on_notifiers()) {
    // One thread wake-up per notification instead of two: the device's own thread waits.
    device->set_queue_notifiers(fds);
  } else {
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
  uint64_t address = allocator_.allocate(slot->transport->bar_size());
  slot->transport->set_bar_address(devices::virtio::VirtioPci::kBarIndex, address);
  register_notifiers(*slot, address);
  VirtioSlot* raw = slot.get();
  slot->transport->set_bar_hook([this, raw](int index, uint64_t old_address, uint64_t new_address) {
    if (index != devices::virtio::VirtioPci::kBarIndex || old_address == new_address) return;
    unregister_notifiers(*raw);
    if (new_address != 0) register_notifiers(*raw, new_address);
  });
  root_->add(slot->transport);
  virtio_.push_back(std::move(slot));
}

std::vector<std::string> PciDevices::describe_virtio() const {
  std::vector<std::string> lines;
  for (const auto& slot : virtio_) {
    auto device_lines = slot->transport->describe_state();
    lines.insert(lines.end(), device_lines.begin(), device_lines.end());
  }
  return lines;
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
