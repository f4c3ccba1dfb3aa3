// PciRootBus: PCI bus 0 with 32 device slots (function 0 only), slot 0 holding the host bridge,
// whose devices may come and go while vCPUs run (hot-plug);
// PciConfigIo: the legacy configuration mechanism #1 at ports 0xCF8-0xCFF (CONFIG_ADDRESS,
// CONFIG_DATA), which also passes port 0xCF9 (the PC reset control register) to its own device;
// PciEcam: the memory-mapped enhanced configuration access (MMCONFIG) window for the same bus.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "devices/bus.h"
#include "devices/pci/pci_device.h"

namespace kdom::devices::pci {

inline constexpr int kSlotCount = 32;

// The host bridge at 00:00.0 (class 0x0600): ids of Intel's 440FX PMC, which guests know.
class PciHostBridge : public PciDevice {
 public:
  static constexpr uint16_t kVendorId = 0x8086;
  static constexpr uint16_t kDeviceId = 0x1237;
  static constexpr uint32_t kClassCode = 0x060000;
  PciHostBridge() : PciDevice(PciIds{kVendorId, kDeviceId, 0x02, kClassCode, 0, 0, 0}) {}
};

class PciRootBus {
 public:
  // Slot 0 gets a PciHostBridge.
  PciRootBus();

  // Puts `device` in the lowest free slot and returns the slot; throws Error when all are taken.
  int add(std::shared_ptr<PciDevice> device);
  // Throws Error when `slot` is out of range or taken.
  void add_at(int slot, std::shared_ptr<PciDevice> device);
  // Empties `slot` (1-31) and returns what was there (null if nothing). An access already
  // under way finishes on the device; later ones find the slot empty.
  std::shared_ptr<PciDevice> remove(int slot);
  std::shared_ptr<PciDevice> device(int slot) const;

  // A config access to bus/device/function at `offset` (< 256). Absent devices, functions
  // other than 0 and buses other than 0 read all-ones and ignore writes.
  void read_config(uint8_t bus, uint8_t slot, uint8_t function, uint32_t offset, std::span<uint8_t> data) const;
  void write_config(uint8_t bus, uint8_t slot, uint8_t function, uint32_t offset, std::span<const uint8_t> data) const;

 private:
  std::shared_ptr<PciDevice> find(uint8_t bus, uint8_t slot, uint8_t function) const;
  // Held only to look a slot up or change it, never during a device's access.
  mutable std::mutex mutex_;
  std::array<std::shared_ptr<PciDevice>, kSlotCount> slots_{};
};

class PciConfigIo : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0xcf8;
  static constexpr uint64_t kLength = 8;
  static constexpr uint32_t kEnableBit = 1u << 31;

  // `reset_control`, when given, receives 1-byte accesses to port 0xCF9 (offset 1 here).
  explicit PciConfigIo(std::shared_ptr<PciRootBus> root, std::shared_ptr<BusDevice> reset_control = nullptr)
      : root_(std::move(root)), reset_control_(std::move(reset_control)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint32_t config_address() const;

 private:
  struct DataTarget {
    uint8_t bus, slot, function;
    uint32_t reg;
  };
  // Where a data-port access at `offset` goes under the current CONFIG_ADDRESS (lock held);
  // nothing when decoding is off or the access is not wholly within 0xCFC-0xCFF.
  std::optional<DataTarget> data_target(uint64_t offset, size_t length) const;

  std::shared_ptr<PciRootBus> root_;
  std::shared_ptr<BusDevice> reset_control_;
  mutable std::mutex mutex_;
  uint32_t config_address_ = 0;
};

// ECAM (PCI Express base spec 7.2.2): 4 KiB of configuration space per function, 1 MiB per bus,
// at offset bus << 20 | device << 15 | function << 12 | register. Devices here are conventional
// PCI: their extended space (registers 0x100-0xFFF) reads zero, so there is no extended
// capability list. Absent functions read all-ones. The VMM describes the window to the guest in
// the ACPI MCFG table.
class PciEcam : public BusDevice {
 public:
  static constexpr uint64_t kBytesPerBus = 1 << 20;

  explicit PciEcam(std::shared_ptr<PciRootBus> root) : root_(std::move(root)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::shared_ptr<PciRootBus> root_;
};

}  // namespace kdom::devices::pci
