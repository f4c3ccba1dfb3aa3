// Linux's boot_params ("zero page"): what kdom tells a kernel entered through the 64-bit boot
// protocol: memory map, command line, initrd and the ACPI RSDP.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "arch/x86/e820.h"

namespace kdom::x86 {

struct ZeroPageInputs {
  std::optional<setup_header> bzimage_header;  // absent for an ELF kernel
  std::vector<E820Entry> e820;
  uint64_t cmdline_address = 0;
  uint32_t cmdline_size = 0;                   // including the NUL
  uint64_t initrd_address = 0;
  uint64_t initrd_size = 0;
  uint64_t rsdp_address = 0;
};

// Throws Error if the memory map has more entries than the zero page holds.
boot_params build_zero_page(const ZeroPageInputs& inputs);

}  // namespace kdom::x86
