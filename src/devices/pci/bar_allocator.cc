// PciBarAllocator: a bump allocator of size-aligned BAR addresses in a window.
#include "devices/pci/bar_allocator.h"

#include <algorithm>
#include <bit>
#include <string>

#include "base/error.h"

namespace kdom::devices::pci {

PciBarAllocator::PciBarAllocator(uint64_t start, uint64_t end, uint64_t min_alignment)
    : start_(start), end_(end), min_alignment_(min_alignment), next_(start) {
  if (end < start || !std::has_single_bit(min_alignment)) throw Error("invalid PCI BAR window");
}

uint64_t PciBarAllocator::allocate(uint64_t size) {
  if (!std::has_single_bit(size)) throw Error("PCI BAR size " + std::to_string(size) + " is not a power of two");
  const uint64_t alignment = std::max(size, min_alignment_);
  const uint64_t address = (next_ + alignment - 1) & ~(alignment - 1);
  if (address < next_ || address > end_ || end_ - address < size) {
    throw Error("the PCI BAR window has no room for a BAR of " + std::to_string(size) + " bytes");
  }
  next_ = address + size;
  return address;
}

}  // namespace kdom::devices::pci
