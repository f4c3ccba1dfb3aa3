// Tests of GuestMemory: page-aligned construction, the bounds checks on every access by
// guest-physical address (region ends, gaps between regions, address + length overflow), and
// the memfd behind it (another mapping sees the guest's bytes, discard frees the file's pages,
// the size is sealed).
#include "memory/guest_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kdom {
namespace {

constexpr uint64_t kPage = 4096;

// Two regions with a gap: [0, 64 KiB) and [128 KiB, 192 KiB).
GuestMemory two_regions() { return GuestMemory({{0, 0x10000}, {0x20000, 0x10000}}); }

TEST(GuestMemory, RegionsAreMappedInOrder) {
  auto memory = two_regions();
  ASSERT_EQ(memory.regions().size(), 2u);
  EXPECT_EQ(memory.regions()[0].range.start, 0u);
  EXPECT_EQ(memory.regions()[1].range.start, 0x20000u);
  EXPECT_EQ(memory.total_size(), 0x20000u);
  EXPECT_NE(memory.regions()[0].host, memory.regions()[1].host);
}

// Guest RAM starts on a 2 MiB boundary of the host's address space, so that huge pages can
// back it from guest address 0 (and line up with the guest's own 2 MiB pages).
TEST(GuestMemory, RamStartsOnAHugePageBoundary) {
  for (int attempt = 0; attempt < 8; ++attempt) {  // whatever mmap happens to return
    GuestMemory memory({{0, 6 << 20}});
    const auto host = reinterpret_cast<uintptr_t>(memory.slice(0, 1).data());
    EXPECT_EQ(host % (2u << 20), 0u) << std::hex << host;
    memory.write_object<uint64_t>((6 << 20) - 8, 0x1234);  // the whole length is mapped
    EXPECT_EQ(memory.read_object<uint64_t>((6 << 20) - 8), 0x1234u);
  }
}

TEST(GuestMemory, ReadWriteRoundTripInBothRegions) {
  auto memory = two_regions();
  const std::array<uint8_t, 5> data{1, 2, 3, 4, 5};
  memory.write(0x1234, data.data(), data.size());
  memory.write(0x2fffb, data.data(), data.size());  // the last 5 bytes of region 2
  std::array<uint8_t, 5> back{};
  memory.read(0x1234, back.data(), back.size());
  EXPECT_EQ(back, data);
  back = {};
  memory.read(0x2fffb, back.data(), back.size());
  EXPECT_EQ(back, data);
  EXPECT_EQ(memory.regions()[1].host[0xfffb], 1);
}

TEST(GuestMemory, ObjectRoundTrip) {
  auto memory = two_regions();
  memory.write_object<uint64_t>(0x20008, 0x1122334455667788ULL);
  EXPECT_EQ(memory.read_object<uint64_t>(0x20008), 0x1122334455667788ULL);
  EXPECT_EQ(memory.read_object<uint8_t>(0x20008), 0x88);
}

TEST(GuestMemory, SliceIsTheHostViewOfTheRange) {
  auto memory = two_regions();
  auto slice = memory.slice(0x20010, 16);
  EXPECT_EQ(slice.size(), 16u);
  EXPECT_EQ(slice.data(), memory.regions()[1].host + 0x10);
}

TEST(GuestMemory, WholeRegionIsAccessible) {
  auto memory = two_regions();
  EXPECT_TRUE(memory.contains(0, 0x10000));
  EXPECT_TRUE(memory.contains(0x20000, 0x10000));
  EXPECT_NO_THROW(memory.slice(0, 0x10000));
}

TEST(GuestMemory, AddressInTheGapIsRejected) {
  auto memory = two_regions();
  uint8_t byte = 0;
  EXPECT_FALSE(memory.contains(0x18000, 1));
  EXPECT_THROW(memory.read(0x18000, &byte, 1), GuestMemoryError);
  EXPECT_THROW(memory.write(0x18000, &byte, 1), GuestMemoryError);
}

TEST(GuestMemory, AddressBeyondTheLastRegionIsRejected) {
  auto memory = two_regions();
  uint8_t byte = 0;
  EXPECT_THROW(memory.read(0x30000, &byte, 1), GuestMemoryError);
  EXPECT_THROW(memory.read(0x1000000, &byte, 1), GuestMemoryError);
}

TEST(GuestMemory, RangeCrossingARegionEndIsRejected) {
  auto memory = two_regions();
  std::array<uint8_t, 8> data{};
  EXPECT_FALSE(memory.contains(0x2fffc, 8));
  EXPECT_THROW(memory.write(0x2fffc, data.data(), data.size()), GuestMemoryError);
  EXPECT_THROW(memory.slice(0x2ffff, 2), GuestMemoryError);
}

TEST(GuestMemory, RangeCrossingFromARegionIntoTheGapIsRejected) {
  auto memory = two_regions();
  std::vector<uint8_t> data(0x12000);
  // Starts in region 1, runs through the gap and would end inside region 2.
  EXPECT_THROW(memory.write(0xf000, data.data(), 0x12000), GuestMemoryError);
  EXPECT_THROW(memory.write(0xf000, data.data(), 0x2000), GuestMemoryError);
  // Starts in the gap and ends inside region 2.
  EXPECT_THROW(memory.write(0x1f000, data.data(), 0x2000), GuestMemoryError);
}

TEST(GuestMemory, RangeCrossingIntoAnAdjacentRegionIsRejected) {
  GuestMemory memory({{0, kPage}, {kPage, kPage}});
  EXPECT_TRUE(memory.contains(0, kPage));
  EXPECT_TRUE(memory.contains(kPage, kPage));
  EXPECT_FALSE(memory.contains(kPage - 4, 8));
  EXPECT_THROW(memory.slice(kPage - 4, 8), GuestMemoryError);
}

TEST(GuestMemory, AddressPlusLengthOverflowIsRejected) {
  auto memory = two_regions();
  EXPECT_FALSE(memory.contains(UINT64_MAX - 1, 16));
  EXPECT_THROW(memory.slice(UINT64_MAX - 1, 16), GuestMemoryError);
  // A huge length from inside a region must not wrap around to look small.
  EXPECT_FALSE(memory.contains(0x100, UINT64_MAX));
  EXPECT_THROW(memory.slice(0x100, UINT64_MAX - 0xff), GuestMemoryError);
  EXPECT_THROW(memory.slice(0x20000, UINT64_MAX), GuestMemoryError);
}

TEST(GuestMemory, ZeroLengthInsideIsFineAndAtTheEndIsRejected) {
  auto memory = two_regions();
  EXPECT_TRUE(memory.contains(0x100, 0));
  EXPECT_TRUE(memory.contains(0, 0));
  EXPECT_EQ(memory.slice(0x20000, 0).size(), 0u);
  // One past the end is not an address in the region, even for an empty range.
  EXPECT_FALSE(memory.contains(0x30000, 0));
  EXPECT_THROW(memory.slice(0x30000, 0), GuestMemoryError);
  EXPECT_FALSE(memory.contains(0x18000, 0));
}

TEST(GuestMemory, ZeroLengthReadAndWriteTouchNothing) {
  auto memory = two_regions();
  uint8_t byte = 0x5a;
  EXPECT_NO_THROW(memory.write(0x100, &byte, 0));
  EXPECT_EQ(memory.read_object<uint8_t>(0x100), 0);
}

TEST(GuestMemory, ErrorMessageNamesTheRange) {
  auto memory = two_regions();
  try {
    memory.slice(0x18000, 0x10);
    FAIL() << "expected GuestMemoryError";
  } catch (const GuestMemoryError& error) {
    EXPECT_NE(std::string(error.what()).find("0x18000"), std::string::npos) << error.what();
  }
}

TEST(GuestMemory, UnalignedRangesAreRejected) {
  EXPECT_THROW(GuestMemory({{0x100, kPage}}), Error);
  EXPECT_THROW(GuestMemory({{0, kPage + 1}}), Error);
  EXPECT_THROW(GuestMemory({{0, 0x800}}), Error);
}

TEST(GuestMemory, EmptyOverlappingAndUnsortedRangesAreRejected) {
  EXPECT_THROW(GuestMemory({{0, 0}}), Error);
  EXPECT_THROW(GuestMemory(std::vector<GuestRange>{}), Error);
  EXPECT_THROW(GuestMemory({{0, 2 * kPage}, {kPage, kPage}}), Error);
  EXPECT_THROW(GuestMemory({{4 * kPage, kPage}, {0, kPage}}), Error);
}

TEST(GuestMemory, RangeWrappingPastTheTopOfTheAddressSpaceIsRejected) {
  // start + size overflows: half of this range would be unreachable, and the next range's
  // "sorted and disjoint" check would compare against a wrapped end.
  EXPECT_THROW(GuestMemory({{UINT64_MAX - kPage + 1, 2 * kPage}}), Error);
}

// What the guest writes is in the file, where another mapping (a migration's reader, say)
// finds it: the second region's bytes sit right after the first region's.
TEST(GuestMemory, AnotherMappingOfTheMemfdSeesTheGuestsBytes) {
  auto memory = two_regions();
  memory.write_object<uint64_t>(0x20008, 0x1122334455667788);
  ASSERT_EQ(memory.regions()[1].file_offset, 0x10000u);
  Mapping other = Mapping::of_fd(memory.memfd(), memory.total_size(), PROT_READ, MAP_SHARED);
  uint64_t seen = 0;
  std::memcpy(&seen, other.data() + 0x10008, sizeof(seen));
  EXPECT_EQ(seen, 0x1122334455667788u);
}

// Discarding gives the file's pages back, not just this mapping's view of them, and the range
// reads as zeros afterwards.
TEST(GuestMemory, DiscardFreesTheFilesPages) {
  auto memory = two_regions();
  std::vector<uint8_t> ones(0x10000, 1);
  memory.write(0, ones.data(), ones.size());
  struct stat before {};
  ASSERT_EQ(fstat(memory.memfd(), &before), 0);
  memory.discard(0, 0x10000);
  struct stat after {};
  ASSERT_EQ(fstat(memory.memfd(), &after), 0);
  EXPECT_EQ(before.st_blocks - after.st_blocks, 0x10000 / 512);
  EXPECT_EQ(memory.read_object<uint64_t>(0x8000), 0u);
}

// The parts of a region that hold pages, found without touching the holes.
TEST(GuestMemory, PopulatedNamesThePartsThatHoldPages) {
  auto memory = two_regions();
  EXPECT_TRUE(memory.populated(memory.regions()[0]).empty());
  memory.write_object<uint8_t>(0x3000, 1);
  memory.write_object<uint8_t>(0x4000, 1);
  memory.write_object<uint8_t>(0x2f000, 1);  // the second region's last page
  const auto first = memory.populated(memory.regions()[0]);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].start, 0x3000u);
  EXPECT_EQ(first[0].size, 0x2000u);
  const auto second = memory.populated(memory.regions()[1]);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].start, 0x2f000u);
  EXPECT_EQ(second[0].size, 0x1000u);
  memory.discard(0x3000, 0x1000);
  const auto after = memory.populated(memory.regions()[0]);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].start, 0x4000u);
}

// No holder of the fd can cut the RAM short under the guest (or grow it).
TEST(GuestMemory, TheMemfdsSizeIsSealed) {
  auto memory = two_regions();
  EXPECT_NE(ftruncate(memory.memfd(), 0x1000), 0);
  EXPECT_NE(ftruncate(memory.memfd(), 0x40000), 0);
  struct stat st {};
  ASSERT_EQ(fstat(memory.memfd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), memory.total_size());
}

}  // namespace
}  // namespace kdom
