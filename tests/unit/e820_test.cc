// Tests of the guest memory map: RAM ranges around the PCI hole and the e820 entries.
#include "arch/x86/e820.h"

#include <gtest/gtest.h>

#include "arch/x86/layout.h"

namespace kdom::x86 {
namespace {

uint64_t ram_in_map(const std::vector<E820Entry>& map) {
  uint64_t total = 0;
  for (const auto& entry : map)
    if (entry.type == E820Type::kRam) total += entry.size;
  return total;
}

TEST(E820, SmallGuestIsOneRange) {
  auto ranges = ram_ranges(256 * kMiB);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].start, 0u);
  EXPECT_EQ(ranges[0].size, 256 * kMiB);
}

TEST(E820, LargeGuestIsSplitAroundThePciHole) {
  auto ranges = ram_ranges(4 * kGiB);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].end(), kPciHoleStart);
  EXPECT_EQ(ranges[1].start, kFourGiB);
  EXPECT_EQ(ranges[1].size, 1 * kGiB);
}

TEST(E820, MapReservesEbdaAndBiosAndCountsAllUsableRam) {
  auto map = e820_map(256 * kMiB);
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(map[0], (E820Entry{0, kEbdaStart, E820Type::kRam}));
  EXPECT_EQ(map[1].type, E820Type::kReserved);
  EXPECT_EQ(map[2], (E820Entry{kBiosStart, kHighMemoryStart - kBiosStart, E820Type::kReserved}));
  EXPECT_EQ(map[3], (E820Entry{kHighMemoryStart, 255 * kMiB, E820Type::kRam}));
  EXPECT_EQ(ram_in_map(map), 256 * kMiB - (kHighMemoryStart - kEbdaStart));
}

TEST(E820, MapForLargeGuestHasRamAboveFourGiB) {
  auto map = e820_map(6 * kGiB);
  ASSERT_EQ(map.size(), 5u);
  EXPECT_EQ(map[3].address + map[3].size, kPciHoleStart);
  EXPECT_EQ(map[4], (E820Entry{kFourGiB, 3 * kGiB, E820Type::kRam}));
}

}  // namespace
}  // namespace kdom::x86
