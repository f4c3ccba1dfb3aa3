// Identity-mapped long-mode page tables for the boot vCPU (the first 4 GiB, 2 MiB pages).
#pragma once

#include "memory/guest_memory.h"

namespace kdom::x86 {

// Writes PML4, PDPT and PDs at their layout addresses; returns the value for CR3.
uint64_t write_identity_page_tables(const GuestMemory& memory);

}  // namespace kdom::x86
