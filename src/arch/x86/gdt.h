// The boot GDT and the segment registers that go with it.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "memory/guest_memory.h"

namespace kdom::x86 {

// Selectors of the boot GDT. Linux's 64-bit boot protocol wants __BOOT_CS = 0x10 and
// __BOOT_DS = 0x18.
constexpr uint16_t kCode32Selector = 0x08;
constexpr uint16_t kCode64Selector = 0x10;
constexpr uint16_t kDataSelector = 0x18;
constexpr uint16_t kTssSelector = 0x20;

// Encodes a descriptor from its flags (access byte in bits 0-7, granularity/size nibble in
// bits 12-15), base and limit.
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);
// The KVM segment register a descriptor loads into.
kvm_segment segment_from_gdt_entry(uint64_t entry, uint16_t selector);

struct BootSegments {
  kvm_segment code32, code64, data, tss;
  kvm_dtable gdt;
};

// Writes the boot GDT into guest memory and returns its segments.
BootSegments write_boot_gdt(const GuestMemory& memory);

}  // namespace kdom::x86
