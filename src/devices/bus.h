// Bus: dispatches guest port I/O or MMIO accesses to the device registered for the address.
// Devices are registered before any vCPU runs; after that the bus is read-only, so lookups
// need no lock (each device locks its own state).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>

namespace kdom::devices {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the base the device was registered at.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  // Throws Error if [base, base + length) overlaps a registered range.
  void add(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device);

  // Returns false (and fills `data` with 0xff) when no device claims the address.
  bool read(uint64_t address, std::span<uint8_t> data) const;
  // Returns false when no device claims the address.
  bool write(uint64_t address, std::span<const uint8_t> data) const;

 private:
  struct Entry {
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  const std::pair<const uint64_t, Entry>* find(uint64_t address, uint64_t length) const;
  std::map<uint64_t, Entry> entries_;
};

}  // namespace kdom::devices
