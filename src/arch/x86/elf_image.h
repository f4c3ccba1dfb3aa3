// ELF64 kernels (vmlinux, probe guests): validation, loading of PT_LOAD segments into guest
// memory, and the Xen PVH entry note.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "memory/guest_memory.h"

namespace kdom::x86 {

bool looks_like_elf(std::span<const uint8_t> file);

struct LoadedElf {
  uint64_t entry = 0;                    // e_entry
  std::optional<uint32_t> pvh_entry;     // XEN_ELFNOTE_PHYS32_ENTRY, if the image has one
  uint64_t lowest_address = 0;           // of the loaded segments
  uint64_t end_address = 0;              // one past the highest loaded byte
};

// Finds the PVH entry note without loading anything; throws Error on a malformed file.
std::optional<uint32_t> find_pvh_entry(std::span<const uint8_t> file);

// Loads every PT_LOAD segment at its physical address; throws Error naming the problem when
// the file is malformed or a segment does not fit in guest RAM.
LoadedElf load_elf(const GuestMemory& memory, std::span<const uint8_t> file);

}  // namespace kdom::x86
