// Boot GDT encoding.
#include "arch/x86/gdt.h"

#include "arch/x86/layout.h"

namespace kdom::x86 {

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((static_cast<uint64_t>(base) & 0xff000000ULL) << 32) | ((static_cast<uint64_t>(flags) & 0xf0ffULL) << 40) |
         ((static_cast<uint64_t>(limit) & 0x000f0000ULL) << 32) | ((static_cast<uint64_t>(base) & 0x00ffffffULL) << 16) |
         (static_cast<uint64_t>(limit) & 0x0000ffffULL);
}

kvm_segment segment_from_gdt_entry(uint64_t entry, uint16_t selector) {
  kvm_segment segment{};
  segment.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  segment.g = (entry >> 55) & 1;
  segment.limit = segment.g ? (limit << 12) | 0xfff : limit;
  segment.selector = selector;
  segment.type = (entry >> 40) & 0xf;
  segment.s = (entry >> 44) & 1;
  segment.dpl = (entry >> 45) & 3;
  segment.present = (entry >> 47) & 1;
  segment.avl = (entry >> 52) & 1;
  segment.l = (entry >> 53) & 1;
  segment.db = (entry >> 54) & 1;
  segment.unusable = segment.present ? 0 : 1;
  return segment;
}

BootSegments write_boot_gdt(const GuestMemory& memory) {
  const uint64_t table[] = {
      0,                                  // null
      gdt_entry(0xc09b, 0, 0xfffff),      // 0x08: 32-bit flat code
      gdt_entry(0xa09b, 0, 0xfffff),      // 0x10: 64-bit code
      gdt_entry(0xc093, 0, 0xfffff),      // 0x18: flat data
      gdt_entry(0x808b, 0, 0xfffff),      // 0x20: TSS (busy)
  };
  memory.write(kGdtAddress, table, sizeof(table));
  BootSegments segments{};
  segments.code32 = segment_from_gdt_entry(table[1], kCode32Selector);
  segments.code64 = segment_from_gdt_entry(table[2], kCode64Selector);
  segments.data = segment_from_gdt_entry(table[3], kDataSelector);
  segments.tss = segment_from_gdt_entry(table[4], kTssSelector);
  segments.gdt.base = kGdtAddress;
  segments.gdt.limit = sizeof(table) - 1;
  return segments;
}

}  // namespace kdom::x86
