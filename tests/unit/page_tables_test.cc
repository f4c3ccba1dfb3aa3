// Tests of the boot vCPU's identity-mapped page tables: PML4 -> one PDPT -> four PDs of
// 2 MiB pages covering the first 4 GiB.
#include "arch/x86/page_tables.h"

#include <gtest/gtest.h>

#include "arch/x86/layout.h"

namespace kdom::x86 {
namespace {

constexpr uint64_t kPresent = 1ULL << 0;
constexpr uint64_t kWritable = 1ULL << 1;
constexpr uint64_t kLargePage = 1ULL << 7;
constexpr uint64_t kAddressMask = 0x000ffffffffff000ULL;

class PageTables : public ::testing::Test {
 protected:
  GuestMemory memory_{{{0, 1 * kMiB}}};
  uint64_t cr3_ = write_identity_page_tables(memory_);

  uint64_t entry(uint64_t table, uint64_t index) const { return memory_.read_object<uint64_t>(table + index * 8); }
  // Walks the tables for a virtual address; returns the physical address it maps to.
  uint64_t translate(uint64_t virt) const {
    uint64_t pml4e = entry(cr3_ & kAddressMask, (virt >> 39) & 0x1ff);
    EXPECT_TRUE(pml4e & kPresent);
    uint64_t pdpte = entry(pml4e & kAddressMask, (virt >> 30) & 0x1ff);
    EXPECT_TRUE(pdpte & kPresent);
    EXPECT_FALSE(pdpte & kLargePage);
    uint64_t pde = entry(pdpte & kAddressMask, (virt >> 21) & 0x1ff);
    EXPECT_TRUE(pde & kPresent);
    EXPECT_TRUE(pde & kLargePage);
    return (pde & 0x000fffffffe00000ULL) | (virt & (2 * kMiB - 1));
  }
};

TEST_F(PageTables, Cr3IsThePml4) { EXPECT_EQ(cr3_, kPml4Address); }

TEST_F(PageTables, Pml4FirstEntryPointsToThePdpt) {
  EXPECT_EQ(entry(kPml4Address, 0), kPdptAddress | kPresent | kWritable);
  for (uint64_t i = 1; i < 512; ++i) ASSERT_EQ(entry(kPml4Address, i), 0u) << "PML4 entry " << i;
}

TEST_F(PageTables, PdptHasFourEntriesPointingToConsecutivePds) {
  for (uint64_t i = 0; i < 4; ++i)
    EXPECT_EQ(entry(kPdptAddress, i), (kPdAddress + i * 0x1000) | kPresent | kWritable) << "PDPT entry " << i;
  for (uint64_t i = 4; i < 512; ++i) ASSERT_EQ(entry(kPdptAddress, i), 0u) << "PDPT entry " << i;
}

TEST_F(PageTables, EveryPdEntryIsAnIdentityMapped2MiBPage) {
  for (uint64_t pd = 0; pd < 4; ++pd) {
    for (uint64_t i = 0; i < 512; ++i) {
      uint64_t physical = (pd * 512 + i) * 2 * kMiB;
      ASSERT_EQ(entry(kPdAddress + pd * 0x1000, i), physical | kPresent | kWritable | kLargePage)
          << "PD " << pd << " entry " << i;
    }
  }
}

TEST_F(PageTables, ThreeGiBPageIsFirstEntryOfTheFourthPd) {
  EXPECT_EQ(entry(kPdAddress + 3 * 0x1000, 0), 0xC0000000ULL | 0x83);
  EXPECT_EQ(entry(kPdAddress + 3 * 0x1000, 511), 0xFFE00000ULL | 0x83);
}

TEST_F(PageTables, WalkTranslatesAddressesToThemselves) {
  for (uint64_t virt : {0x0ULL, 0x1234ULL, 0x100200ULL, 0x3fffffffULL, 0x40000000ULL, 0xC0000000ULL + 0x1234,
                        0xFEE00000ULL, 0xFFFFFFFFULL})
    EXPECT_EQ(translate(virt), virt) << std::hex << virt;
}

TEST_F(PageTables, TablesFitBelowTheCmdlineAndDoNotOverlapBootStructures) {
  EXPECT_GE(kPml4Address, kZeroPageAddress + 0x1000);
  EXPECT_EQ(kPdptAddress, kPml4Address + 0x1000);
  EXPECT_EQ(kPdAddress, kPdptAddress + 0x1000);
  EXPECT_LE(kPdAddress + 4 * 0x1000, kCmdlineAddress);
}

}  // namespace
}  // namespace kdom::x86
