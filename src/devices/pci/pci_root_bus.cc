// PciRootBus and PciConfigIo: configuration mechanism #1 on bus 0.
#include "devices/pci/pci_root_bus.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "base/error.h"

namespace kdom::devices::pci {

PciRootBus::PciRootBus() { slots_[0] = std::make_shared<PciHostBridge>(); }

int PciRootBus::add(std::shared_ptr<PciDevice> device) {
  if (!device) throw Error("no PCI device given");
  std::lock_guard lock(mutex_);
  for (int slot = 1; slot < kSlotCount; ++slot) {
    auto& entry = slots_[static_cast<size_t>(slot)];
    if (!entry) {
      entry = std::move(device);
      return slot;
    }
  }
  throw Error("PCI bus 0 has no free slot (31 devices at most)");
}

void PciRootBus::add_at(int slot, std::shared_ptr<PciDevice> device) {
  if (slot < 0 || slot >= kSlotCount) throw Error("PCI slot " + std::to_string(slot) + " is out of range");
  if (!device) throw Error("no PCI device given for slot " + std::to_string(slot));
  std::lock_guard lock(mutex_);
  auto& entry = slots_[static_cast<size_t>(slot)];
  if (entry) throw Error("PCI slot " + std::to_string(slot) + " is already in use");
  entry = std::move(device);
}

std::shared_ptr<PciDevice> PciRootBus::remove(int slot) {
  if (slot < 1 || slot >= kSlotCount) return nullptr;
  std::lock_guard lock(mutex_);
  return std::exchange(slots_[static_cast<size_t>(slot)], nullptr);
}

std::shared_ptr<PciDevice> PciRootBus::device(int slot) const {
  if (slot < 0 || slot >= kSlotCount) return nullptr;
  std::lock_guard lock(mutex_);
  return slots_[static_cast<size_t>(slot)];
}

std::shared_ptr<PciDevice> PciRootBus::find(uint8_t bus, uint8_t slot, uint8_t function) const {
  if (bus != 0 || function != 0 || slot >= kSlotCount) return nullptr;
  std::lock_guard lock(mutex_);
  return slots_[slot];
}

void PciRootBus::read_config(uint8_t bus, uint8_t slot, uint8_t function, uint32_t offset,
                             std::span<uint8_t> data) const {
  auto device = find(bus, slot, function);
  if (!device || offset >= kConfigSpaceSize || data.size() > kConfigSpaceSize - offset) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  device->read_config(offset, data);
}

void PciRootBus::write_config(uint8_t bus, uint8_t slot, uint8_t function, uint32_t offset,
                              std::span<const uint8_t> data) const {
  auto device = find(bus, slot, function);
  if (!device || offset >= kConfigSpaceSize || data.size() > kConfigSpaceSize - offset) return;
  device->write_config(offset, data);
}

uint32_t PciConfigIo::config_address() const {
  std::lock_guard lock(mutex_);
  return config_address_;
}

void PciConfigIo::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (offset == 1 && data.size() == 1) {
    if (reset_control_) reset_control_->read(0, data);
    return;
  }
  if (offset == 0 && data.size() == 4) {
    const uint32_t value = config_address();
    for (size_t i = 0; i < 4; ++i) data[i] = static_cast<uint8_t>(value >> (8 * i));
    return;
  }
  // Holding the lock keeps CONFIG_ADDRESS and the data access together.
  std::lock_guard lock(mutex_);
  if (auto target = data_target(offset, data.size()))
    root_->read_config(target->bus, target->slot, target->function, target->reg, data);
}

std::optional<PciConfigIo::DataTarget> PciConfigIo::data_target(uint64_t offset, size_t length) const {
  if (offset < 4 || offset + length > kLength || length == 0) return std::nullopt;
  const uint32_t address = config_address_;
  if (!(address & kEnableBit)) return std::nullopt;
  return DataTarget{static_cast<uint8_t>(address >> 16), static_cast<uint8_t>((address >> 11) & 0x1f),
                    static_cast<uint8_t>((address >> 8) & 0x7),
                    (address & 0xfc) + static_cast<uint32_t>(offset - 4)};
}

void PciConfigIo::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 1 && data.size() == 1) {
    if (reset_control_) reset_control_->write(0, data);
    return;
  }
  if (offset == 0 && data.size() == 4) {
    std::lock_guard lock(mutex_);
    // Bits 1:0 are reserved (read as 0); bits 30:24 are reserved too.
    config_address_ = (uint32_t{data[0]} | uint32_t{data[1]} << 8 | uint32_t{data[2]} << 16 |
                       uint32_t{data[3]} << 24) & 0x80fffffc;
    return;
  }
  std::lock_guard lock(mutex_);
  if (auto target = data_target(offset, data.size()))
    root_->write_config(target->bus, target->slot, target->function, target->reg, data);
}

namespace {

struct EcamAddress {
  uint8_t bus;
  uint8_t slot;
  uint8_t function;
  uint32_t reg;
};

// Accesses of 1, 2 or 4 bytes that stay within one dword, as the spec allows.
std::optional<EcamAddress> decode_ecam(uint64_t offset, size_t size) {
  if ((size != 1 && size != 2 && size != 4) || (offset % 4) + size > 4) return std::nullopt;
  if ((offset >> 20) > 0xff) return std::nullopt;
  return EcamAddress{static_cast<uint8_t>(offset >> 20), static_cast<uint8_t>((offset >> 15) & 0x1f),
                     static_cast<uint8_t>((offset >> 12) & 0x7), static_cast<uint32_t>(offset & 0xfff)};
}

}  // namespace

void PciEcam::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  const auto address = decode_ecam(offset, data.size());
  if (!address) return;
  if (address->reg >= kConfigSpaceSize) {
    if (address->bus == 0 && address->function == 0 && root_->device(address->slot)) {
      std::fill(data.begin(), data.end(), 0);
    }
    return;
  }
  root_->read_config(address->bus, address->slot, address->function, address->reg, data);
}

void PciEcam::write(uint64_t offset, std::span<const uint8_t> data) {
  const auto address = decode_ecam(offset, data.size());
  if (!address || address->reg >= kConfigSpaceSize) return;
  root_->write_config(address->bus, address->slot, address->function, address->reg, data);
}

}  // namespace kdom::devices::pci
