// Memory map computation.
#include "arch/x86/e820.h"

#include <algorithm>

#include "arch/x86/layout.h"

namespace kdom::x86 {

std::vector<GuestRange> ram_ranges(uint64_t ram_bytes) {
  std::vector<GuestRange> ranges;
  uint64_t low = std::min(ram_bytes, kPciHoleStart);
  ranges.push_back({0, low});
  if (ram_bytes > kPciHoleStart) ranges.push_back({kFourGiB, ram_bytes - kPciHoleStart});
  return ranges;
}

std::vector<E820Entry> e820_map(uint64_t ram_bytes) {
  std::vector<E820Entry> map;
  map.push_back({0, kEbdaStart, E820Type::kRam});
  map.push_back({kEbdaStart, kLowRamEnd - kEbdaStart, E820Type::kReserved});
  map.push_back({kBiosStart, kHighMemoryStart - kBiosStart, E820Type::kReserved});
  uint64_t low_end = std::min(ram_bytes, kPciHoleStart);
  if (low_end > kHighMemoryStart) map.push_back({kHighMemoryStart, low_end - kHighMemoryStart, E820Type::kRam});
  if (ram_bytes > kPciHoleStart) map.push_back({kFourGiB, ram_bytes - kPciHoleStart, E820Type::kRam});
  return map;
}

}  // namespace kdom::x86
