// PciBarAllocator: hands out BAR addresses from a window of guest-physical (or port) space,
// each aligned to its size, as firmware would when it assigns BARs before the OS runs. For
// memory BARs kdom uses the 32-bit PCI hole below the IOAPIC: [0xC0000000, 0xFEC00000).
#pragma once

#include <cstdint>

namespace kdom::devices::pci {

inline constexpr uint64_t kPciMmioWindowStart = 0xC0000000;
inline constexpr uint64_t kPciMmioWindowEnd = 0xFEC00000;

class PciBarAllocator {
 public:
  // The window [start, end); every address handed out is aligned to max(size, min_alignment).
  PciBarAllocator(uint64_t start, uint64_t end, uint64_t min_alignment = 4096);

  // The next free address for a BAR of `size` (a power of two). Throws Error when `size` is not
  // a power of two or the window has no room left.
  uint64_t allocate(uint64_t size);

  uint64_t start() const { return start_; }
  uint64_t end() const { return end_; }
  uint64_t next() const { return next_; }

 private:
  uint64_t start_;
  uint64_t end_;
  uint64_t min_alignment_;
  uint64_t next_;
};

}  // namespace kdom::devices::pci
