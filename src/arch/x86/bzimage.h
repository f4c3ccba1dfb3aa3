// bzImage kernels: the setup header (Linux x86 boot protocol) and loading the protected-mode
// part for the 64-bit entry.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <span>

#include "memory/guest_memory.h"

namespace kdom::x86 {

bool looks_like_bzimage(std::span<const uint8_t> file);

struct BzImage {
  setup_header header{};        // as found in the file (fields past its version are zero)
  uint64_t kernel_offset = 0;   // where the protected-mode kernel starts in the file
  uint64_t kernel_size = 0;
};

// Validates the header: boot protocol 2.12 or later, 64-bit entry supported; throws Error.
BzImage parse_bzimage(std::span<const uint8_t> file);

struct LoadedBzImage {
  uint64_t load_address = 0;
  uint64_t entry_64 = 0;        // load_address + 0x200
  uint64_t end_address = 0;     // end of what the kernel occupies once decompressed: keep clear
};

LoadedBzImage load_bzimage(const GuestMemory& memory, std::span<const uint8_t> file, const BzImage& image);

}  // namespace kdom::x86
