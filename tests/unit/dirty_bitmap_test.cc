// Tests of the VMM's dirty log: DirtyBitmap's marks (across words, past the end, from many
// threads at once) and takes (each clears what it returns), and GuestMemory's log around it
// (nothing kept while off, pages of every region marked by guest-physical address, outside
// RAM ignored, a discarded range marked, the log cleared when it stops and starts).
#include "memory/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "memory/guest_memory.h"

namespace kdom {
namespace {

constexpr uint64_t kPage = 4096;

// The set bits of bitmap words, as page numbers.
std::set<uint64_t> pages_of(const std::vector<uint64_t>& words) {
  std::set<uint64_t> pages;
  for (size_t w = 0; w < words.size(); ++w)
    for (int bit = 0; bit < 64; ++bit)
      if (words[w] >> bit & 1) pages.insert(w * 64 + static_cast<uint64_t>(bit));
  return pages;
}

std::set<uint64_t> range(uint64_t first, uint64_t count) {
  std::set<uint64_t> pages;
  for (uint64_t p = first; p < first + count; ++p) pages.insert(p);
  return pages;
}

TEST(DirtyBitmap, MarksAcrossWordsAndTakeClears) {
  DirtyBitmap bitmap(200);
  EXPECT_EQ(bitmap.take().size(), 4u);  // 200 pages: four words
  bitmap.mark(60, 10);
  bitmap.mark(128, 64);
  bitmap.mark(3, 1);
  std::set<uint64_t> want = range(60, 10);
  want.merge(range(128, 64));
  want.insert(3);
  EXPECT_EQ(pages_of(bitmap.take()), want);
  EXPECT_TRUE(pages_of(bitmap.take()).empty());
}

TEST(DirtyBitmap, PagesPastTheEndAreIgnored) {
  DirtyBitmap bitmap(70);
  bitmap.mark(65, 100);
  bitmap.mark(70, 1);
  bitmap.mark(~uint64_t{0}, 2);
  bitmap.mark(10, 0);
  EXPECT_EQ(pages_of(bitmap.take()), range(65, 5));
}

TEST(DirtyBitmap, MarksFromManyThreadsAreAllTaken) {
  constexpr uint64_t kPages = 4096;
  DirtyBitmap bitmap(kPages);
  std::set<uint64_t> taken;
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t)
    threads.emplace_back([&bitmap, t] {
      for (uint64_t page = t; page < kPages; page += 4) bitmap.mark(page, 1);
    });
  // Takes while they mark: every mark lands in one take or a later one.
  for (int i = 0; i < 50; ++i) taken.merge(pages_of(bitmap.take()));
  for (auto& thread : threads) thread.join();
  taken.merge(pages_of(bitmap.take()));
  EXPECT_EQ(taken, range(0, kPages));
}

// Two regions with a gap, as a domain with a PCI hole: 64 pages at 0, 32 at 1 MiB.
GuestMemory two_regions() { return GuestMemory({{0, 64 * kPage}, {0x100000, 32 * kPage}}); }

TEST(GuestMemoryDirtyLog, NothingIsKeptWhileTheLogIsOff) {
  auto memory = two_regions();
  EXPECT_FALSE(memory.dirty_logging());
  memory.mark_dirty(0, 64 * kPage);
  memory.start_dirty_log();
  EXPECT_TRUE(memory.dirty_logging());
  EXPECT_TRUE(pages_of(memory.take_dirty(0)).empty());
  EXPECT_TRUE(pages_of(memory.take_dirty(1)).empty());
}

TEST(GuestMemoryDirtyLog, MarksThePagesOfEachRegionByAddress) {
  auto memory = two_regions();
  memory.start_dirty_log();
  memory.mark_dirty(kPage - 1, 2);                  // the end of page 0 and the start of page 1
  memory.mark_dirty(10 * kPage + 5, 1);             // a byte of page 10
  memory.mark_dirty(62 * kPage, 0x103000 - 62 * kPage);  // pages 62-63, the gap (ignored), region 1's pages 0-2
  memory.mark_dirty(0x100000 + 31 * kPage, kPage);  // region 1's last page
  memory.mark_dirty(0x100000 + 32 * kPage, kPage);  // past the end: ignored
  memory.mark_dirty(5 * kPage, 0);                  // nothing
  EXPECT_EQ(pages_of(memory.take_dirty(0)), (std::set<uint64_t>{0, 1, 10, 62, 63}));
  EXPECT_EQ(pages_of(memory.take_dirty(1)), (std::set<uint64_t>{0, 1, 2, 31}));
  EXPECT_TRUE(pages_of(memory.take_dirty(0)).empty());
  EXPECT_THROW(memory.take_dirty(2), GuestMemoryError);
}

TEST(GuestMemoryDirtyLog, DiscardMarksThePagesItGivesBack) {
  auto memory = two_regions();
  memory.write_object<uint64_t>(4 * kPage, 7);
  memory.start_dirty_log();
  memory.discard(4 * kPage, 3 * kPage);
  EXPECT_EQ(pages_of(memory.take_dirty(0)), range(4, 3));
  EXPECT_EQ(memory.read_object<uint64_t>(4 * kPage), 0u);
}

TEST(GuestMemoryDirtyLog, StoppingAndStartingAgainClearsTheLog) {
  auto memory = two_regions();
  memory.start_dirty_log();
  memory.mark_dirty(0, kPage);
  memory.stop_dirty_log();
  memory.mark_dirty(kPage, kPage);  // off: not kept
  memory.start_dirty_log();
  EXPECT_TRUE(pages_of(memory.take_dirty(0)).empty());
}

}  // namespace
}  // namespace kdom
