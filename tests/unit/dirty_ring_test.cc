// Tests of KVM's dirty ring as kdom reads it, with the test playing KVM's part on rings laid
// out in memory: DirtyRing's harvest (dirty entries taken in order up to the first that is
// not, each marked harvested, across the ring's end, never more than a lap) and DirtyRingLog
// (entries to per-region bitmaps by slot and offset, the reset before the pages are handed
// out, a full ring's own harvest kept for the next take, an entry outside guest RAM refused
// by name, discard).
#include "kvm/dirty_ring.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "vmm/dirty_ring_log.h"

namespace kdom {
namespace {

using Entries = std::vector<kvm_dirty_gfn>;
using Dirty = std::vector<std::pair<uint32_t, uint64_t>>;

// KVM's side: pushes entries at its own index, and recycles the harvested ones as
// KVM_RESET_DIRTY_RINGS does (from its reset index while they are marked harvested).
struct FakeKvmRing {
  explicit FakeKvmRing(size_t size) : entries(size) {}
  void push(uint32_t slot, uint64_t offset) {
    kvm_dirty_gfn& entry = entries[pushed++ % entries.size()];
    ASSERT_EQ(entry.flags, 0u) << "KVM pushes only into an entry that was reset";
    entry.slot = slot;
    entry.offset = offset;
    entry.flags = KVM_DIRTY_GFN_F_DIRTY;
  }
  size_t reset() {
    size_t count = 0;
    while (reset_index < pushed && (entries[reset_index % entries.size()].flags & KVM_DIRTY_GFN_F_RESET)) {
      entries[reset_index++ % entries.size()].flags = 0;
      ++count;
    }
    return count;
  }
  Entries entries;
  size_t pushed = 0;
  size_t reset_index = 0;
};

Dirty harvest(kvm::DirtyRing& ring, size_t* count = nullptr) {
  Dirty dirty;
  const size_t n = ring.harvest([&](uint32_t slot, uint64_t offset) { dirty.emplace_back(slot, offset); });
  if (count) *count = n;
  return dirty;
}

std::set<uint64_t> pages_of(const std::vector<uint64_t>& words) {
  std::set<uint64_t> pages;
  for (size_t w = 0; w < words.size(); ++w)
    for (int bit = 0; bit < 64; ++bit)
      if (words[w] >> bit & 1) pages.insert(w * 64 + static_cast<uint64_t>(bit));
  return pages;
}

TEST(DirtyRing, TakesDirtyEntriesInOrderAndMarksThemHarvested) {
  FakeKvmRing kvm(8);
  kvm.push(0, 5);
  kvm.push(1, 70);
  kvm.push(0, 5);  // the same page twice: KVM may log it again after a reset elsewhere
  kvm::DirtyRing ring(kvm.entries);
  size_t count = 0;
  EXPECT_EQ(harvest(ring, &count), (Dirty{{0, 5}, {1, 70}, {0, 5}}));
  EXPECT_EQ(count, 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(kvm.entries[i].flags, KVM_DIRTY_GFN_F_RESET) << i;
  EXPECT_EQ(kvm.entries[3].flags, 0u);
  // Nothing new: nothing taken, harvested entries not taken twice before KVM resets them.
  EXPECT_TRUE(harvest(ring).empty());
  EXPECT_EQ(kvm.reset(), 3u);
  kvm.push(2, 9);
  EXPECT_EQ(harvest(ring), (Dirty{{2, 9}}));
}

TEST(DirtyRing, StopsAtTheFirstEntryNotDirty) {
  FakeKvmRing kvm(8);
  kvm.push(0, 1);
  kvm::DirtyRing ring(kvm.entries);
  // An entry past an unused one is not KVM's next (it cannot be), and is left alone.
  kvm.entries[2] = {KVM_DIRTY_GFN_F_DIRTY, 0, 3};
  EXPECT_EQ(harvest(ring), (Dirty{{0, 1}}));
  EXPECT_EQ(kvm.entries[2].flags, KVM_DIRTY_GFN_F_DIRTY);
}

TEST(DirtyRing, WrapsAroundTheEndOfTheRing) {
  FakeKvmRing kvm(4);
  kvm::DirtyRing ring(kvm.entries);
  for (uint64_t round = 0; round < 5; ++round) {
    kvm.push(0, round * 10);
    kvm.push(0, round * 10 + 1);
    kvm.push(0, round * 10 + 2);
    EXPECT_EQ(harvest(ring), (Dirty{{0, round * 10}, {0, round * 10 + 1}, {0, round * 10 + 2}})) << round;
    EXPECT_EQ(kvm.reset(), 3u);
  }
}

TEST(DirtyRing, AFullRingIsTakenOnceNotTwice) {
  FakeKvmRing kvm(4);
  for (uint64_t page = 0; page < 4; ++page) kvm.push(0, page);
  kvm::DirtyRing ring(kvm.entries);
  size_t count = 0;
  EXPECT_EQ(harvest(ring, &count).size(), 4u);
  EXPECT_EQ(count, 4u);
  EXPECT_TRUE(harvest(ring).empty());
}

TEST(DirtyRing, RefusesASizeNotAPowerOfTwo) {
  Entries entries(6);
  EXPECT_THROW(kvm::DirtyRing ring(entries), Error);
  Entries none;
  EXPECT_THROW(kvm::DirtyRing ring(none), Error);
}

// Two vCPUs' rings and two regions (slot 0: 100 pages, slot 1: 300), KVM's reset counted.
struct TwoVcpus {
  TwoVcpus() {
    std::vector<kvm::DirtyRing> rings;
    rings.emplace_back(vcpu[0].entries);
    rings.emplace_back(vcpu[1].entries);
    log.emplace(std::vector<uint64_t>{100, 300}, std::move(rings), [this] {
      ++resets;
      vcpu[0].reset();
      vcpu[1].reset();
    });
  }
  FakeKvmRing vcpu[2] = {FakeKvmRing(16), FakeKvmRing(16)};
  int resets = 0;
  std::optional<vmm::DirtyRingLog> log;
};

TEST(DirtyRingLog, GathersEveryRingIntoRegionBitmapsAndResets) {
  TwoVcpus domain;
  domain.vcpu[0].push(0, 0);
  domain.vcpu[0].push(1, 299);
  domain.vcpu[1].push(1, 64);
  domain.vcpu[1].push(0, 99);
  domain.vcpu[1].push(0, 0);
  const auto dirty = domain.log->take();
  ASSERT_EQ(dirty.size(), 2u);
  EXPECT_EQ(dirty[0].size(), 2u);  // 100 pages: two words, as KVM_GET_DIRTY_LOG gives them
  EXPECT_EQ(dirty[1].size(), 5u);
  EXPECT_EQ(pages_of(dirty[0]), (std::set<uint64_t>{0, 99}));
  EXPECT_EQ(pages_of(dirty[1]), (std::set<uint64_t>{64, 299}));
  // Reset before the take returned: every entry recycled, so KVM logs a next write anew.
  EXPECT_EQ(domain.resets, 1);
  for (const auto& kvm : domain.vcpu)
    for (const auto& entry : kvm.entries) EXPECT_EQ(entry.flags, 0u);
  // A take clears what it returns; one with nothing harvested does not call KVM.
  const auto again = domain.log->take();
  EXPECT_TRUE(pages_of(again[0]).empty());
  EXPECT_TRUE(pages_of(again[1]).empty());
  EXPECT_EQ(domain.resets, 1);
}

TEST(DirtyRingLog, AFullRingsOwnHarvestIsInTheNextTake) {
  TwoVcpus domain;
  domain.vcpu[1].push(1, 7);
  domain.vcpu[0].push(0, 3);
  domain.log->harvest_full(1);  // vCPU 1's ring only, reset at once so the vCPU can run on
  EXPECT_EQ(domain.resets, 1);
  EXPECT_EQ(domain.vcpu[1].entries[0].flags, 0u);
  EXPECT_EQ(domain.vcpu[0].entries[0].flags, KVM_DIRTY_GFN_F_DIRTY);
  EXPECT_EQ(domain.log->full_harvests(), 1u);
  domain.vcpu[1].push(1, 8);
  const auto dirty = domain.log->take();
  EXPECT_EQ(pages_of(dirty[0]), (std::set<uint64_t>{3}));
  EXPECT_EQ(pages_of(dirty[1]), (std::set<uint64_t>{7, 8}));
  EXPECT_EQ(domain.resets, 2);
}

TEST(DirtyRingLog, RefusesAnEntryOutsideGuestRamByName) {
  for (auto [slot, offset] : std::vector<std::pair<uint32_t, uint64_t>>{{2, 0}, {1, 300}, {0, 100}, {1u << 16, 0}}) {
    TwoVcpus domain;
    domain.vcpu[0].push(0, 1);
    domain.vcpu[0].push(slot, offset);
    domain.vcpu[1].push(1, 2);
    try {
      domain.log->take();
      ADD_FAILURE() << "slot " << slot << " offset " << offset << " taken";
    } catch (const vmm::DirtyRingError& error) {
      EXPECT_NE(std::string(error.what()).find("page " + std::to_string(offset) + " of memory slot"), std::string::npos)
          << error.what();
    }
    // The rings were still harvested and reset; the refusal is said once, not on every take.
    EXPECT_EQ(domain.resets, 1);
    EXPECT_NO_THROW(domain.log->take());
  }
}

TEST(DirtyRingLog, AnEntryOutsideFromAFullRingIsRefusedAtTheNextTake) {
  TwoVcpus domain;
  domain.vcpu[0].push(7, 0);
  EXPECT_NO_THROW(domain.log->harvest_full(0));  // never in the vCPU's thread: the guest runs on
  EXPECT_THROW(domain.log->take(), vmm::DirtyRingError);
}

TEST(DirtyRingLog, DiscardEmptiesTheRingsAndForgets) {
  TwoVcpus domain;
  domain.vcpu[0].push(0, 1);
  domain.log->harvest_full(0);
  domain.vcpu[1].push(1, 2);
  domain.vcpu[1].push(9, 2);
  domain.log->discard();
  EXPECT_EQ(domain.resets, 2);
  for (const auto& kvm : domain.vcpu)
    for (const auto& entry : kvm.entries) EXPECT_EQ(entry.flags, 0u);
  const auto dirty = domain.log->take();  // nothing, and no refusal of the bad entry discarded
  EXPECT_TRUE(pages_of(dirty[0]).empty());
  EXPECT_TRUE(pages_of(dirty[1]).empty());
}

TEST(DirtyRingLog, AFailedResetIsDoneAgainBeforePagesAreHandedOut) {
  FakeKvmRing kvm(8);
  std::vector<kvm::DirtyRing> rings;
  rings.emplace_back(kvm.entries);
  bool fail = true;
  int resets = 0;
  vmm::DirtyRingLog log({64}, std::move(rings), [&] {
    if (fail) throw Error("KVM_RESET_DIRTY_RINGS: no");
    ++resets;
    kvm.reset();
  });
  kvm.push(0, 4);
  EXPECT_THROW(log.take(), Error);
  fail = false;
  // Nothing new in the ring, but the page harvested before is handed out only after a reset.
  const auto dirty = log.take();
  EXPECT_EQ(resets, 1);
  EXPECT_EQ(pages_of(dirty[0]), (std::set<uint64_t>{4}));
}

}  // namespace
}  // namespace kdom
