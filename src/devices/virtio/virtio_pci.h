// VirtioPci: the virtio 1.x modern PCI transport (virtio spec 4.1) for one VirtioDevice. It is
// a PCI function (vendor 0x1AF4, device 0x1040 + type, revision 1) with one 64-bit memory BAR
// that holds the common configuration, ISR, device configuration and notification regions
// (each named by a vendor capability, plus the PCI_CFG window) and the MSI-X table and PBA; and it is the BusDevice
// for that BAR's MMIO range (the owner registers it at bar_address(kBarIndex), and moves it
// when the BAR hook reports a new address). The transport negotiates features, keeps each
// queue's configuration, builds the Virtqueues at DRIVER_OK and raises the device's interrupts
// through MSI-X (or INTx with the ISR when MSI-X is off). A device that fails (a bad queue
// configuration, or activate() throwing) sets DEVICE_NEEDS_RESET; the VMM keeps running.
//
// BAR layout (kBarSize at least 0x8000):
//   0x0000 common configuration   0x1000 ISR status   0x2000 device configuration (4 KiB)
//   0x3000 notifications (4 bytes per queue)          0x4000 MSI-X table, then the PBA
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "devices/bus.h"
#include "devices/interrupt_line.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_device.h"
#include "devices/virtio/virtio_device.h"
#include "memory/guest_memory.h"

namespace kdom::devices::virtio {

inline constexpr uint16_t kVirtioPciVendorId = 0x1af4;
inline constexpr uint16_t kVirtioPciDeviceIdBase = 0x1040;
inline constexpr uint16_t kVirtioPciSubsystemId = 0x1100;

// Device status bits (spec 2.1).
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusDeviceNeedsReset = 0x40;
inline constexpr uint8_t kStatusFailed = 0x80;

// ISR status bits (spec 4.1.4.5).
inline constexpr uint8_t kIsrQueue = 1;
inline constexpr uint8_t kIsrConfig = 2;

// Virtio PCI capability cfg_type values (spec 4.1.4).
inline constexpr uint8_t kCapCommonCfg = 1;
inline constexpr uint8_t kCapNotifyCfg = 2;
inline constexpr uint8_t kCapIsrCfg = 3;
inline constexpr uint8_t kCapDeviceCfg = 4;
inline constexpr uint8_t kCapPciCfg = 5;

// Offsets in struct virtio_pci_common_cfg (spec 4.1.4.3).
namespace common {
inline constexpr uint32_t kDeviceFeatureSelect = 0x00;
inline constexpr uint32_t kDeviceFeature = 0x04;
inline constexpr uint32_t kDriverFeatureSelect = 0x08;
inline constexpr uint32_t kDriverFeature = 0x0c;
inline constexpr uint32_t kMsixConfig = 0x10;
inline constexpr uint32_t kNumQueues = 0x12;
inline constexpr uint32_t kDeviceStatus = 0x14;
inline constexpr uint32_t kConfigGeneration = 0x15;
inline constexpr uint32_t kQueueSelect = 0x16;
inline constexpr uint32_t kQueueSize = 0x18;
inline constexpr uint32_t kQueueMsixVector = 0x1a;
inline constexpr uint32_t kQueueEnable = 0x1c;
inline constexpr uint32_t kQueueNotifyOff = 0x1e;
inline constexpr uint32_t kQueueDesc = 0x20;
inline constexpr uint32_t kQueueDriver = 0x28;
inline constexpr uint32_t kQueueDevice = 0x30;
inline constexpr uint32_t kSize = 0x38;
}  // namespace common

class VirtioPci : public pci::PciDevice, public BusDevice {
 public:
  static constexpr int kBarIndex = 0;  // a 64-bit BAR: registers 0 and 1
  static constexpr uint64_t kCommonConfigOffset = 0x0000;
  static constexpr uint64_t kIsrOffset = 0x1000;
  static constexpr uint64_t kDeviceConfigOffset = 0x2000;
  static constexpr uint64_t kDeviceConfigSize = 0x1000;
  static constexpr uint64_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyOffMultiplier = 4;
  static constexpr uint64_t kMsixTableOffset = 0x4000;
  static constexpr uint16_t kMaxQueues = 1024;  // the notification region's 4 KiB

  // `memory` must outlive the transport. `msix` delivers MSI-X vectors; `intx`, when given,
  // is the INTx line (interrupt pin INTA#) used while MSI-X is disabled. Throws Error when the
  // device has no queues or more than kMaxQueues. The device's callbacks refer to this
  // transport: keep it alive while the device may call them (until reset() returns).
  VirtioPci(std::shared_ptr<VirtioDevice> device, const GuestMemory& memory,
            std::shared_ptr<pci::MsixInterrupts> msix, std::shared_ptr<InterruptLine> intx = nullptr);
  ~VirtioPci() override;

  // The BAR's size (a power of two) and where its regions lie.
  uint64_t bar_size() const { return bar_size_; }
  uint64_t msix_pba_offset() const { return pba_offset_; }
  // The BAR offset the driver writes to notify `queue` (for an ioeventfd).
  static uint64_t notify_offset(uint16_t queue) { return kNotifyOffset + uint64_t{queue} * kNotifyOffMultiplier; }
  uint8_t msix_capability_offset() const { return msix_capability_; }
  // The VIRTIO_PCI_CAP_PCI_CFG capability: a window onto the BAR through config space.
  uint8_t pci_cfg_capability_offset() const { return pci_cfg_capability_; }

  // The driver notified `queue` (a write to its notify address, caught by the BAR or by an
  // ioeventfd). Ignored unless DRIVER_OK is set and NEEDS_RESET is not; a device that throws
  // (its queue is broken) sets DEVICE_NEEDS_RESET and raises the config interrupt.
  void notify(uint16_t queue);
  // Where a notification caught by the BAR (an MMIO exit, in a vCPU thread) goes instead of
  // notify(): the owner passes it to the thread that serves the queue's ioeventfd, so device
  // work never runs in a vCPU thread. Set before the guest runs.
  void set_notify_forwarder(std::function<void(uint16_t queue)> forward) { notify_forwarder_ = std::move(forward); }
  // BusDevice: accesses to the BAR, `offset` relative to its base.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Lines for a debugging dump (SIGQUIT): status, each live queue's indices and MSI-X vector
  // (masked or pending), the ISR and the device's own state. Call with the vCPUs stopped
  // (their accesses hold the locks taken here); the device's own threads may still run.
  std::vector<std::string> describe_state() const;

  // The device is leaving the bus (hot-unplug): it stops as if the driver had reset it, so its
  // threads no longer call back, and it never starts again; a driver still bound may reset it
  // (a write of 0 to the status, read back as 0) but nothing more.
  void unplug();

  // Save and restore (docs/snapshot-format.md). quiesce()/resume(): the device's pause point
  // (VirtioDevice::quiesce), passed on while the device is active; in the device event loop's
  // thread, with the vCPUs stopped.
  void quiesce();
  void resume();
  // The transport's whole state, the device's own under "device" (call while quiesced or not
  // active): {"device_type", "pci": PciDevice::save_state, "msix": MsixTable::save_state,
  // "device_feature_select", "driver_feature_select", "driver_features", "msix_config",
  // "status", "config_generation", "queue_select", "isr", "queues": [{"size", "msix_vector",
  // "enabled", "desc", "driver", "device", "ring": {"next_avail", "next_used"} for a queue
  // the device serves, else null}], "device": VirtioDevice::save_state}.
  nlohmann::json save_state() const;
  // Loads a state save_state gave into a freshly built transport (never activated, status 0)
  // before the vCPUs run. Everything is checked first (ids and read-only config bits, MSI-X
  // table size, vectors against it, status bits, features against those offered, queue sizes
  // against the maxima, ring addresses against guest memory), then the device's own
  // load_state runs; a bad field throws snapshot::StateError naming `what` and the field,
  // with the transport and the device unchanged. A saved status with DRIVER_OK (and neither
  // DEVICE_NEEDS_RESET nor FAILED) then starts the device as DRIVER_OK does, its queues
  // carrying on from the saved indices. The BAR hook is not called: the owner re-registers
  // what it keeps at the BAR's address.
  void load_state(const nlohmann::json& state, const std::string& what);
  // Whether the device is serving its queues (started by DRIVER_OK or a load, not reset since).
  bool active() const;
  // Whether unplug() has come: the device is no longer the domain's.
  bool unplugged() const;

  uint8_t device_status() const { return status_.load(); }
  uint64_t driver_features() const;
  const pci::MsixTable& msix() const { return msix_; }
  VirtioDevice& device() const { return *device_; }

 protected:
  void config_written(uint32_t offset, uint32_t length) override;
  void config_before_read(uint32_t offset, uint32_t length) override;

 private:
  struct Queue {
    uint16_t max_size = 0;
    uint16_t size = 0;
    std::atomic<uint16_t> msix_vector{pci::kMsixNoVector};
    bool enabled = false;
    uint64_t desc = 0;
    uint64_t driver = 0;
    uint64_t device = 0;
  };

  void add_capabilities();
  // The BAR access the PCI_CFG capability describes, when valid (config lock held).
  std::optional<std::pair<uint64_t, uint32_t>> pci_cfg_access() const;
  void read_common(uint64_t offset, std::span<uint8_t> data);
  void write_common(uint64_t offset, std::span<const uint8_t> data);
  void common_image(uint8_t (&image)[common::kSize]) const;
  void set_status(uint8_t value);
  bool features_acceptable() const;
  void activate();
  // The end of activation, shared by DRIVER_OK and a load: hands the built queues to the
  // device (mutex_ held).
  void start_device(std::vector<std::shared_ptr<Virtqueue>> queues);
  void fail(const std::string& reason);
  void reset_locked();
  uint16_t checked_vector(uint16_t vector) const;
  Queue* selected_queue();
  // Interrupts, from any thread.
  void queue_interrupt(uint16_t queue);
  void config_interrupt();
  void signal(uint16_t vector, uint8_t isr_bit);

  std::shared_ptr<VirtioDevice> device_;
  std::function<void(uint16_t)> notify_forwarder_;
  const GuestMemory& memory_;
  std::shared_ptr<InterruptLine> intx_;
  const uint64_t offered_features_;
  const uint16_t num_queues_;
  pci::MsixTable msix_;
  uint64_t pba_offset_ = 0;
  uint64_t bar_size_ = 0;
  uint8_t msix_capability_ = 0;
  uint8_t pci_cfg_capability_ = 0;
  // A driver can break its queues, reset and break them again, as often as it likes.
  CappedLog failure_log_{"virtio-pci: device needs reset", 10};

  // Common configuration state, under mutex_.
  mutable std::mutex mutex_;
  uint32_t device_feature_select_ = 0;
  uint32_t driver_feature_select_ = 0;
  uint64_t driver_features_ = 0;
  std::atomic<uint16_t> msix_config_{pci::kMsixNoVector};
  std::atomic<uint8_t> status_{0};
  std::atomic<uint8_t> config_generation_{0};
  uint16_t queue_select_ = 0;
  std::vector<Queue> queues_;
  // Set at DRIVER_OK before activate() and cleared after the device's reset() returns; the
  // device only calls back in between, so queue_interrupt reads it without mutex_.
  std::vector<std::shared_ptr<Virtqueue>> active_queues_;
  bool activated_ = false;
  bool unplugged_ = false;  // under mutex_: unplug() came, activation is refused

  // ISR status and the INTx level, under irq_mutex_ (taken after mutex_, never before).
  mutable std::mutex irq_mutex_;
  uint8_t isr_ = 0;
};

}  // namespace kdom::devices::virtio
