// The PVH boot ABI's hvm_start_info: what kdom tells a kernel entered at its
// XEN_ELFNOTE_PHYS32_ENTRY (memory map, command line, initrd module, ACPI RSDP).
#pragma once

#include <cstdint>
#include <vector>

#include "arch/x86/e820.h"
#include "memory/guest_memory.h"

namespace kdom::x86 {

constexpr uint32_t kHvmStartMagic = 0x336ec578;

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

struct PvhInputs {
  std::vector<E820Entry> e820;
  uint64_t cmdline_address = 0;
  uint64_t initrd_address = 0;
  uint64_t initrd_size = 0;  // 0: no initrd module
  uint64_t rsdp_address = 0;
};

// Writes start_info, its module list and memory map at kPvhStartInfoAddress; returns the
// address of start_info (for EBX).
uint64_t write_pvh_start_info(const GuestMemory& memory, const PvhInputs& inputs);

}  // namespace kdom::x86
