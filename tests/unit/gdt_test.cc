// Tests of the boot GDT: descriptor encoding, decoding into KVM segments, and the table
// written at kGdtAddress with the selectors Linux's boot protocol expects.
#include "arch/x86/gdt.h"

#include <gtest/gtest.h>

#include "arch/x86/layout.h"

namespace kdom::x86 {
namespace {

TEST(Gdt, EncodesTheKnownFlatDescriptors) {
  // The classic values: 64-bit code, 32-bit code and data, each base 0 limit 4 GiB.
  EXPECT_EQ(gdt_entry(0xa09b, 0, 0xfffff), 0x00af9b000000ffffULL);
  EXPECT_EQ(gdt_entry(0xc09b, 0, 0xfffff), 0x00cf9b000000ffffULL);
  EXPECT_EQ(gdt_entry(0xc093, 0, 0xfffff), 0x00cf93000000ffffULL);
}

TEST(Gdt, EncodesBaseAndLimitIntoTheirSplitFields) {
  EXPECT_EQ(gdt_entry(0x0093, 0x12345678, 0xabcde), 0x120a93345678bcdeULL);
}

TEST(Gdt, Code64RoundTrip) {
  auto s = segment_from_gdt_entry(gdt_entry(0xa09b, 0, 0xfffff), kCode64Selector);
  EXPECT_EQ(s.selector, kCode64Selector);
  EXPECT_EQ(s.base, 0u);
  EXPECT_EQ(s.limit, 0xffffffffu);
  EXPECT_EQ(s.type, 0xb);  // execute/read, accessed
  EXPECT_EQ(s.s, 1);
  EXPECT_EQ(s.dpl, 0);
  EXPECT_EQ(s.present, 1);
  EXPECT_EQ(s.l, 1);
  EXPECT_EQ(s.db, 0);
  EXPECT_EQ(s.g, 1);
  EXPECT_EQ(s.unusable, 0);
}

TEST(Gdt, Code32RoundTrip) {
  auto s = segment_from_gdt_entry(gdt_entry(0xc09b, 0, 0xfffff), kCode32Selector);
  EXPECT_EQ(s.type, 0xb);
  EXPECT_EQ(s.l, 0);
  EXPECT_EQ(s.db, 1);
  EXPECT_EQ(s.g, 1);
  EXPECT_EQ(s.limit, 0xffffffffu);
}

TEST(Gdt, DataRoundTrip) {
  auto s = segment_from_gdt_entry(gdt_entry(0xc093, 0, 0xfffff), kDataSelector);
  EXPECT_EQ(s.type, 0x3);  // read/write, accessed
  EXPECT_EQ(s.s, 1);
  EXPECT_EQ(s.db, 1);
  EXPECT_EQ(s.l, 0);
  EXPECT_EQ(s.present, 1);
}

TEST(Gdt, TssRoundTrip) {
  auto s = segment_from_gdt_entry(gdt_entry(0x808b, 0, 0xfffff), kTssSelector);
  EXPECT_EQ(s.type, 0xb);  // busy 32/64-bit TSS
  EXPECT_EQ(s.s, 0);       // system segment
  EXPECT_EQ(s.present, 1);
  EXPECT_EQ(s.g, 1);
  EXPECT_EQ(s.limit, 0xffffffffu);
}

TEST(Gdt, BaseAndUnscaledLimitRoundTrip) {
  auto s = segment_from_gdt_entry(gdt_entry(0x00f3, 0x89abcdef, 0x12345), 0x2b);
  EXPECT_EQ(s.base, 0x89abcdefu);
  EXPECT_EQ(s.limit, 0x12345u);  // G=0: byte granular
  EXPECT_EQ(s.g, 0);
  EXPECT_EQ(s.dpl, 3);
  EXPECT_EQ(s.selector, 0x2b);
}

TEST(Gdt, LimitIsScaledByGranularity) {
  auto s = segment_from_gdt_entry(gdt_entry(0x8093, 0, 0x1), kDataSelector);
  EXPECT_EQ(s.g, 1);
  EXPECT_EQ(s.limit, 0x1fffu);  // (1 << 12) | 0xfff
}

TEST(Gdt, NotPresentSegmentIsUnusable) {
  auto s = segment_from_gdt_entry(gdt_entry(0x0013, 0, 0xffff), kDataSelector);
  EXPECT_EQ(s.present, 0);
  EXPECT_EQ(s.unusable, 1);
}

TEST(Gdt, SelectorsMatchLinuxBootProtocol) {
  EXPECT_EQ(kCode32Selector, 0x08);
  EXPECT_EQ(kCode64Selector, 0x10);  // __BOOT_CS
  EXPECT_EQ(kDataSelector, 0x18);    // __BOOT_DS
  EXPECT_EQ(kTssSelector, 0x20);
}

TEST(Gdt, BootGdtIsWrittenAtItsAddressWithFiveEntries) {
  GuestMemory memory({{0, 1 * kMiB}});
  // Poison the area after the table to see it is left alone.
  memory.write_object<uint64_t>(kGdtAddress + 5 * 8, 0xdeadbeefdeadbeefULL);
  auto segments = write_boot_gdt(memory);
  EXPECT_EQ(segments.gdt.base, kGdtAddress);
  EXPECT_EQ(segments.gdt.limit, 5 * 8 - 1);
  EXPECT_EQ(memory.read_object<uint64_t>(kGdtAddress), 0u);
  EXPECT_EQ(memory.read_object<uint64_t>(kGdtAddress + kCode32Selector), gdt_entry(0xc09b, 0, 0xfffff));
  EXPECT_EQ(memory.read_object<uint64_t>(kGdtAddress + kCode64Selector), gdt_entry(0xa09b, 0, 0xfffff));
  EXPECT_EQ(memory.read_object<uint64_t>(kGdtAddress + kDataSelector), gdt_entry(0xc093, 0, 0xfffff));
  EXPECT_EQ(memory.read_object<uint64_t>(kGdtAddress + kTssSelector), gdt_entry(0x808b, 0, 0xfffff));
  EXPECT_EQ(memory.read_object<uint64_t>(kGdtAddress + 5 * 8), 0xdeadbeefdeadbeefULL);
}

TEST(Gdt, BootSegmentsMatchTheTableInMemory) {
  GuestMemory memory({{0, 1 * kMiB}});
  auto segments = write_boot_gdt(memory);
  auto check = [&](const kvm_segment& s, uint16_t selector) {
    auto from_table = segment_from_gdt_entry(memory.read_object<uint64_t>(kGdtAddress + selector), selector);
    EXPECT_EQ(s.selector, selector);
    EXPECT_EQ(s.base, from_table.base);
    EXPECT_EQ(s.limit, from_table.limit);
    EXPECT_EQ(s.type, from_table.type);
    EXPECT_EQ(s.l, from_table.l);
    EXPECT_EQ(s.db, from_table.db);
    EXPECT_EQ(s.s, from_table.s);
    EXPECT_EQ(s.present, 1);
  };
  check(segments.code32, kCode32Selector);
  check(segments.code64, kCode64Selector);
  check(segments.data, kDataSelector);
  check(segments.tss, kTssSelector);
  EXPECT_EQ(segments.code64.l, 1);
  EXPECT_EQ(segments.code32.db, 1);
}

}  // namespace
}  // namespace kdom::x86
