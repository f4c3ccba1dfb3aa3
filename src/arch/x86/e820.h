// The guest's physical memory map: RAM ranges (split around the 32-bit PCI hole) and the
// e820 table the guest is told about.
#pragma once

#include <cstdint>
#include <vector>

#include "memory/guest_memory.h"

namespace kdom::x86 {

enum class E820Type : uint32_t { kRam = 1, kReserved = 2, kAcpi = 3 };

struct E820Entry {
  uint64_t address;
  uint64_t size;
  E820Type type;
  bool operator==(const E820Entry&) const = default;
};

// The guest-physical ranges backed by RAM for a guest of `ram_bytes` (page-aligned).
std::vector<GuestRange> ram_ranges(uint64_t ram_bytes);

// The e820 map for those ranges: low RAM below the EBDA, the BIOS area (where the ACPI tables
// are) reserved, RAM from 1 MiB to the PCI hole, and the rest above 4 GiB.
std::vector<E820Entry> e820_map(uint64_t ram_bytes);

}  // namespace kdom::x86
